// The last step of PTQ and QAT: quantizer parameters in the exact form the exporters take, biases on the int32 grid.
import { attrInt, cloneGraph, QATKIT_DOMAIN, type Graph } from '../graph/ir.js';
import { withIntegerBiases } from '../int/convert.js';
import { roundHalfEven } from '../quant/qparams.js';

/**
 * The quantizer parameters of a trained graph in the form the QDQ export takes, computing the same function:
 * - zero points as the forward uses them, rounded half to even and clamped to the grid (fakequant.ts
 *   effectiveZeroPoint): LSQ trains them as floats, so they drift off the integers;
 * - a negative scale on a symmetric grid (qmin = -qmax) with zero point 0 made positive: round is odd-symmetric
 *   and the clamp symmetric, so q(-s) = -q(s) and the dequantized values are equal. LSQ can drive a scale through
 *   zero; any other negative or zero scale is left for the export to reject.
 * (QAT with LSQ also clamps scales to a small positive minimum after every step, as PyTorch's _LearnableFakeQuantize.)
 */
export function canonicalQParams(src: Graph): Graph {
  const g = cloneGraph(src);
  for (const n of g.nodes) {
    if (n.op !== 'FakeQuant' || n.domain !== QATKIT_DOMAIN) continue;
    const [, sName, zName] = n.inputs;
    const s = g.initializers.get(sName);
    const z = g.initializers.get(zName);
    const qmin = attrInt(n, 'qmin');
    const qmax = attrInt(n, 'qmax');
    if (!s || !z || s.dtype !== 'float32' || z.dtype !== 'float32' || qmin === undefined || qmax === undefined) continue;
    const zp = (z.data as Float32Array).map((v) => Math.min(qmax, Math.max(qmin, roundHalfEven(v))) + 0); // + 0: no -0
    const scale = (s.data as Float32Array).map((v, i) => (v < 0 && qmin === -qmax && zp[zp.length === 1 ? 0 : i] === 0 ? -v : v));
    g.initializers.set(zName, { ...z, data: zp });
    g.initializers.set(sName, { ...s, data: scale });
  }
  return g;
}

/** canonicalQParams, then biases snapped to s_x * s_w (what the integer model adds): the simulation is the deployment. */
export function finalizeQuantized(g: Graph): Graph {
  return withIntegerBiases(canonicalQParams(g));
}
