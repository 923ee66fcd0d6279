// Shared pieces of the integer kernels: requantization loops, window geometry, caching of constant-derived data.
import { type Node, type TensorData, GraphError, attrInts, attrString } from '../../graph/ir.js';
import type { KernelContext } from '../registry.js';
import { multiplyByQuantizedMultiplier } from '../fixedpoint.js';
import { rint } from '../tensor.js';

export type IntArray = Int8Array | Uint8Array | Int16Array | Uint16Array | Int32Array | Uint32Array;

/**
 * Data derived only from the inputs `deps` (e.g. packed weights) is computed once per session when
 * all of them are constants, else on every run.
 */
export function memo<T>(ctx: KernelContext, key: string, deps: number[], fn: () => T): T {
  if (!deps.every((i) => ctx.isConst(i))) return fn();
  if (ctx.cache.has(key)) return ctx.cache.get(key) as T;
  const v = fn();
  ctx.cache.set(key, v);
  return v;
}

/**
 * ONNX Runtime (MLAS) float requantization of n accumulators sharing one multiplier:
 * float32(acc) * float32 multiplier, clamp to the output range less the zero point, round half to even, add it.
 * A NaN clamps to the low end, as MAXPS does.
 */
export function requantFloat(
  acc: Int32Array, accOff: number, n: number, mult: number, zp: number, qmin: number, qmax: number,
  out: IntArray, outOff: number,
): void {
  const lo = qmin - zp;
  const hi = qmax - zp;
  for (let i = 0; i < n; i++) {
    let v = Math.fround(Math.fround(acc[accOff + i]) * mult);
    if (!(v >= lo)) v = lo;
    else if (v > hi) v = hi;
    out[outOff + i] = rint(v) + zp;
  }
}

/** gemmlowp/TFLite requantization: MultiplyByQuantizedMultiplier, add the zero point, saturate. */
export function requantFixed(
  acc: Int32Array, accOff: number, n: number, multiplier: number, shift: number, zp: number, qmin: number, qmax: number,
  out: IntArray, outOff: number,
): void {
  for (let i = 0; i < n; i++) {
    let v = multiplyByQuantizedMultiplier(acc[accOff + i], multiplier, shift) + zp;
    if (v < qmin) v = qmin;
    else if (v > qmax) v = qmax;
    out[outOff + i] = v;
  }
}

// ---- sliding-window geometry (Conv, ConvInteger, QLinearConv, MaxPool) --------------------------

export interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  padBegin: number[];
  padEnd: number[];
  inSize: number[];
  outSize: number[];
}

/** Output size and pads from ONNX attributes (auto_pad, pads, strides, dilations, ceil_mode). */
export function windowGeometry(node: Node, inSize: number[], kernel: number[], ceilMode = false): Window {
  const r = inSize.length;
  const strides = attrInts(node, 'strides', new Array(r).fill(1));
  const dilations = attrInts(node, 'dilations', new Array(r).fill(1));
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  const pads = attrInts(node, 'pads', new Array(2 * r).fill(0));
  if (strides.length !== r || dilations.length !== r || pads.length !== 2 * r)
    throw new GraphError(`strides/dilations need ${r} values and pads ${2 * r} for ${r} spatial dims`, node);
  if (strides.some((s) => s < 1) || dilations.some((d) => d < 1)) throw new GraphError('strides and dilations must be >= 1', node);
  const padBegin = pads.slice(0, r);
  const padEnd = pads.slice(r);
  const outSize = new Array<number>(r);
  for (let i = 0; i < r; i++) {
    const ek = (kernel[i] - 1) * dilations[i] + 1;
    if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
      outSize[i] = Math.ceil(inSize[i] / strides[i]);
      const total = Math.max(0, (outSize[i] - 1) * strides[i] + ek - inSize[i]);
      padBegin[i] = autoPad === 'SAME_UPPER' ? Math.floor(total / 2) : Math.ceil(total / 2);
      padEnd[i] = total - padBegin[i];
    } else if (autoPad === 'VALID') {
      padBegin[i] = padEnd[i] = 0;
      outSize[i] = Math.floor((inSize[i] - ek) / strides[i]) + 1;
    } else if (autoPad === 'NOTSET') {
      const span = inSize[i] + padBegin[i] + padEnd[i] - ek;
      outSize[i] = (ceilMode ? Math.ceil(span / strides[i]) : Math.floor(span / strides[i])) + 1;
      // ceil_mode: a window that would start inside the end padding is dropped
      if (ceilMode && (outSize[i] - 1) * strides[i] >= inSize[i] + padBegin[i]) outSize[i]--;
    } else {
      throw new GraphError(`unknown auto_pad '${autoPad}'`, node);
    }
    if (outSize[i] < 1) throw new GraphError(`window of ${ek} does not fit input size ${inSize[i]} (pads ${padBegin[i]}, ${padEnd[i]})`, node);
  }
  return { kernel, strides, dilations, padBegin, padEnd, inSize, outSize };
}

/** Spatial dims padded in front to 3 (D, H, W), so one loop nest serves 1-D, 2-D and 3-D windows. */
export function to3d(v: number[], fill: number): [number, number, number] {
  const p = [fill, fill, fill, ...v].slice(-3);
  return [p[0], p[1], p[2]];
}

export function outDType(zp: TensorData | undefined, fallback: TensorData): TensorData['dtype'] {
  return zp ? zp.dtype : fallback.dtype;
}
