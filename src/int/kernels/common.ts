// Shared pieces of the integer kernels: requantization loops, window geometry, caching of constant-derived data.
import { type DType, type Node, type TensorData, GraphError, attrInts, attrString } from '../../graph/ir.js';
import { type KernelContext, isFixedPoint } from '../registry.js';
import { multiplyByQuantizedMultiplier, multiplyByQuantizedMultiplierSingle, quantizeMultipliers } from '../fixedpoint.js';
import { wasmGemm } from './wasm_gemm.js';
import { intRange, rint } from '../tensor.js';

/** The range a requantizing kernel saturates to: the output dtype's, narrowed by a Clip folded into the node. */
export function outRange(dtype: DType, ctx: KernelContext): { qmin: number; qmax: number } {
  const r = intRange(dtype, ctx.node);
  const c = ctx.clamp;
  return c ? { qmin: Math.max(r.qmin, c.qmin), qmax: Math.min(r.qmax, c.qmax) } : r;
}

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
 * float32(acc + bias) * float32 multiplier, clamp to the output range less the zero point, round half to even, add it.
 */
export function requantFloat(
  acc: Int32Array, accOff: number, n: number, mult: number, zp: number, qmin: number, qmax: number,
  out: IntArray, outOff: number, bias = 0,
): void {
  const lo = qmin - zp;
  const hi = qmax - zp;
  // no NaN can reach here (integer accumulators, finite multiplier): Math.min/max clamp without branches
  for (let i = 0; i < n; i++) out[outOff + i] = rint(Math.min(Math.max(Math.fround(Math.fround((acc[accOff + i] + bias) | 0) * mult), lo), hi)) + zp;
}

/**
 * gemmlowp/TFLite requantization: MultiplyByQuantizedMultiplier (rounded twice as gemmlowp, or once when `single`),
 * add the zero point, saturate.
 */
export function requantFixed(
  acc: Int32Array, accOff: number, n: number, multiplier: number, shift: number, zp: number, qmin: number, qmax: number,
  out: IntArray, outOff: number, bias = 0, single = false,
): void {
  const mul = single ? multiplyByQuantizedMultiplierSingle : multiplyByQuantizedMultiplier;
  for (let i = 0; i < n; i++)
    out[outOff + i] = Math.min(Math.max(mul((acc[accOff + i] + bias) | 0, multiplier, shift) + zp, qmin), qmax);
}

/** Per-channel fixed-point multipliers for the session's mode, or undefined for float requantization. */
export function fixedMultipliers(ctx: KernelContext, reals: ArrayLike<number>): FixedMultipliers | undefined {
  if (!isFixedPoint(ctx.requant)) return undefined;
  return { ...quantizeMultipliers(reals), single: ctx.requant === 'fixedpoint-single' };
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

/** A 1-D or 2-D window parameter as [h, w] (a 1-D one gets h = fill), as to3d. */
export function to2d(v: number[], fill: number): [number, number] {
  return v.length === 2 ? [v[0], v[1]] : [fill, v[0]];
}

// ---- draining accumulator blocks: int32 copy, or requantization (in wasm when C lives there) ----------

export interface FixedMultipliers {
  multiplier: Int32Array;
  shift: Int32Array;
  /** one rounding of the product ('fixedpoint-single') instead of gemmlowp's two */
  single?: boolean;
}

/** Where int32 accumulator rows go: an int32 tensor (ConvInteger) or requantized 8-bit outputs, per output channel. */
export type Sink =
  | { kind: 'int32'; out: Int32Array }
  | {
      kind: 'q8'; y: IntArray; mult: Float32Array; bias: Int32Array | undefined; fixed: FixedMultipliers | undefined;
      zp: number; qmin: number; qmax: number;
    };

/** The wasm / native requantization mode of a set of multipliers: 0 float32, 1 gemmlowp, 2 rounded once. */
export const requantMode = (fixed: FixedMultipliers | undefined): number => (fixed ? (fixed.single ? 2 : 1) : 0);

/**
 * A RequantSpec table for n lanes (structure of arrays: float32 multiplier bits, bias, Q31 multiplier, shift); mult,
 * bias and the fixed-point multipliers each have n values (bias may be absent: zeros).
 */
export function requantTable(n: number, mult: ArrayLike<number>, bias?: ArrayLike<number>, fixed?: FixedMultipliers): Int32Array {
  const t = new Int32Array(4 * n);
  new Float32Array(t.buffer, 0, n).set(mult);
  if (bias) t.set(bias, n);
  if (fixed) {
    t.set(fixed.multiplier, 2 * n);
    t.set(fixed.shift, 3 * n);
  }
  return t;
}

/** Bytes of wasm scratch `drain` needs for a block of `rows` channels of `len` outputs: the table, then the outputs. */
export const drainScratch = (rows: number, len: number): number[] => [rows * 16, rows * len + 16];

/**
 * Drain a block: output channels ch0 .. ch0+rows-1, each OH rows of OW accumulators at C[o*ldc + oh*wp + ow],
 * to outputs dst0 + o*OH*OW + oh*OW + ow. When C lives in wasm memory (cOff >= 0) an 8-bit sink is requantized
 * there, with `scratch` = [table, out] byte offsets from drainScratch.
 */
export function drain(
  sink: Sink, C: Int32Array, cOff: number, ldc: number, wp: number,
  rows: number, OH: number, OW: number, ch0: number, dst0: number, scratch: number[] | undefined,
): void {
  const w = wasmGemm();
  if (sink.kind === 'q8' && cOff >= 0 && scratch && w) {
    const mem = w.memory.buffer;
    const [tab, outOff] = scratch;
    const tf = new Float32Array(mem, tab, rows * 4);
    const ti = new Int32Array(mem, tab, rows * 4);
    for (let o = 0; o < rows; o++) {
      const oc = ch0 + o;
      tf[o * 4] = sink.mult[oc];
      ti[o * 4 + 1] = sink.bias ? sink.bias[oc] : 0;
      ti[o * 4 + 2] = sink.fixed ? sink.fixed.multiplier[oc] : 0;
      ti[o * 4 + 3] = sink.fixed ? sink.fixed.shift[oc] : 0;
    }
    w.requant(cOff, ldc, rows, OH, OW, wp, tab, outOff, sink.zp, sink.qmin, sink.qmax, requantMode(sink.fixed));
    const n = rows * OH * OW;
    sink.y.set(sink.y instanceof Int8Array ? new Int8Array(mem, outOff, n) : new Uint8Array(mem, outOff, n), dst0);
    return;
  }
  for (let o = 0; o < rows; o++) {
    const oc = ch0 + o;
    for (let oh = 0; oh < OH; oh++) {
      const src = o * ldc + oh * wp;
      const dst = dst0 + (o * OH + oh) * OW;
      if (sink.kind === 'int32') sink.out.set(C.subarray(src, src + OW), dst);
      else if (sink.fixed)
        requantFixed(C, src, OW, sink.fixed.multiplier[oc], sink.fixed.shift[oc], sink.zp, sink.qmin, sink.qmax, sink.y, dst, sink.bias ? sink.bias[oc] : 0, sink.fixed.single);
      else requantFloat(C, src, OW, sink.mult[oc], sink.zp, sink.qmin, sink.qmax, sink.y, dst, sink.bias ? sink.bias[oc] : 0);
    }
  }
}
