// Model size as a packed deployment would store it. The QDQ file keeps 2..8-bit weights in int8 containers, so its
// size hardly changes with the bit width; the Pareto plot needs the size the bits buy.
import { elementCount, QATKIT_DOMAIN, type Graph } from '../graph/ir.js';

const DTYPE_BYTES: Record<string, number> = { float32: 4, float64: 8, int64: 8, int32: 4, int16: 2, uint16: 2, int8: 1, uint8: 1, bool: 1 };

/**
 * Bytes of the parameters: a weight that a FakeQuant node quantizes counts bits/8 per element (rounded up per
 * tensor), its zero point one container byte per element; every other initializer (biases, scales, float weights)
 * counts as stored. Initializers no node reads are not counted.
 */
export function packedBytes(g: Graph): number {
  const bitsOf = new Map<string, number>();
  const zeroPoints = new Map<string, number>();
  const used = new Set<string>();
  for (const n of g.nodes) {
    for (const i of n.inputs) used.add(i);
    if (n.op !== 'FakeQuant' || n.domain !== QATKIT_DOMAIN) continue;
    const bits = n.attrs.bits;
    if (bits?.type !== 'int') continue;
    const [x, , zp] = n.inputs;
    if (g.initializers.has(x)) bitsOf.set(x, bits.value);
    if (zp) zeroPoints.set(zp, Math.ceil(bits.value / 8));
  }
  let total = 0;
  for (const [name, t] of g.initializers) {
    if (!used.has(name)) continue;
    const n = elementCount(t.dims);
    const bits = bitsOf.get(name);
    if (bits !== undefined) total += Math.ceil((n * bits) / 8);
    else if (zeroPoints.has(name)) total += n * zeroPoints.get(name)!;
    else total += n * (DTYPE_BYTES[t.dtype] ?? 4);
  }
  return total;
}
