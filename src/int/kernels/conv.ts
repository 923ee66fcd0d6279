// ConvInteger and QLinearConv: 1-D, 2-D and 3-D, group, strides, pads, dilations, auto_pad,
// per-output-channel weight zero points and scales, int32 bias.
// Stride-1 1-D/2-D convolutions with 4+ output channels per group run im2row-free as shifted GEMMs in wasm
// (wasm_gemm.ts conv); the rest lower to im2row (each output position's receptive field, zero-point shifted,
// K contiguous) and the GEMM. Accumulators then go through one drain (requantization) per (image, group).
import { type DType, type Node, type TensorData, GraphError, attrInt, attrInts } from '../../graph/ir.js';
import type { IntKernel, KernelContext } from '../registry.js';
import { checkDType, floatValues, numArray, outputTensor, requireInput, scalar } from '../tensor.js';
import {
  type FixedMultipliers, type IntArray, type Sink, type Window, drain, drainScratch, fixedMultipliers, memo, outRange, requantMode,
  requantTable, to2d, to3d, windowGeometry,
} from './common.js';
import { type IntGemmProvider, type PackedB, type RequantSpec, gemmBuffers, intGemmProvider, padK, wasmRegions } from './gemm.js';
import { wasmGemm } from './wasm_gemm.js';

const Q8 = ['int8', 'uint8'] as const;

/** Weights shifted by their (per-output-channel) zero point, [OC, Kp]: K = C/group * kernel volume, zero-padded to Kp. */
function packWeights(w: TensorData, wzp: TensorData | undefined, node: Node): Int16Array {
  const ws = numArray(w, node, 'w');
  const OC = w.dims[0];
  const K = ws.length / OC;
  const Kp = padK(K);
  const z = wzp ? numArray(wzp, node, 'w_zero_point') : undefined;
  if (z && z.length !== 1 && z.length !== OC)
    throw new GraphError(`w_zero_point must be a scalar or have ${OC} values (one per output channel), got ${z.length}`, node);
  const out = new Int16Array(OC * Kp);
  for (let oc = 0; oc < OC; oc++) {
    const zp = z ? (z.length === 1 ? z[0] : z[oc]) : 0;
    for (let k = 0; k < K; k++) out[oc * Kp + k] = ws[oc * K + k] - zp;
  }
  return out;
}

interface ConvShape {
  N: number; C: number; OC: number; group: number; Cg: number; OCg: number;
  win: Window; K: number; P: number; outDims: number[];
}

function convShape(node: Node, x: TensorData, w: TensorData): ConvShape {
  const r = x.dims.length - 2;
  if (r < 1 || r > 3) throw new GraphError(`input must be 3-D to 5-D (N, C, spatial...), got rank ${x.dims.length}`, node);
  if (w.dims.length !== x.dims.length) throw new GraphError(`weight rank ${w.dims.length} differs from input rank ${x.dims.length}`, node);
  const [N, C] = x.dims;
  const OC = w.dims[0];
  const group = attrInt(node, 'group', 1);
  const Cg = C / group;
  if (!Number.isInteger(Cg) || w.dims[1] !== Cg || OC % group !== 0)
    throw new GraphError(`channels: input ${C}, group ${group}, weight [${w.dims.join(', ')}] do not agree`, node);
  const kernel = attrInts(node, 'kernel_shape', w.dims.slice(2));
  if (kernel.some((k, i) => k !== w.dims[2 + i]))
    throw new GraphError(`kernel_shape [${kernel.join(', ')}] differs from weight shape [${w.dims.join(', ')}]`, node);
  const win = windowGeometry(node, x.dims.slice(2), kernel);
  const K = Cg * kernel.reduce((a, b) => a * b, 1);
  const P = win.outSize.reduce((a, b) => a * b, 1);
  return { N, C, OC, group, Cg, OCg: OC / group, win, K, P, outDims: [N, OC, ...win.outSize] };
}

/**
 * im2row for one image and one group: rows[p * stride + k] = x + add at the input position that output p's window
 * reads for k = (c, kd, kh, kw), or `pad` in the padding; k from K to stride is `pad` too.
 * The QLinear path takes x - x_zero_point with pad 0 (Int16Array); the GEMM provider takes x + 128 for int8 inputs
 * (making them uint8) with the equally offset zero point as pad (Uint8Array).
 */
function im2rowInto(xs: IntArray, xOff: number, add: number, pad: number, s: ConvShape, rows: Int16Array | Uint8Array, stride: number): void {
  const [ID, IH, IW] = to3d(s.win.inSize, 1);
  const [KD, KH, KW] = to3d(s.win.kernel, 1);
  const [SD, SH, SW] = to3d(s.win.strides, 1);
  const [DD, DH, DW] = to3d(s.win.dilations, 1);
  const [PD, PH, PW] = to3d(s.win.padBegin, 0);
  const [OD, OH, OW] = to3d(s.win.outSize, 1);
  const { Cg, K } = s;
  const plane = ID * IH * IW;
  let p = 0;
  for (let od = 0; od < OD; od++)
    for (let oh = 0; oh < OH; oh++)
      for (let ow = 0; ow < OW; ow++, p++) {
        let r = p * stride;
        for (let c = 0; c < Cg; c++) {
          const cOff = xOff + c * plane;
          for (let kd = 0; kd < KD; kd++) {
            const id = od * SD - PD + kd * DD;
            const dIn = id >= 0 && id < ID;
            for (let kh = 0; kh < KH; kh++) {
              const ih = oh * SH - PH + kh * DH;
              if (!dIn || ih < 0 || ih >= IH) {
                rows.fill(pad, r, r + KW);
                r += KW;
                continue;
              }
              const rowOff = cOff + (id * IH + ih) * IW;
              let iw = ow * SW - PW;
              if (DW === 1 && iw >= 0 && iw + KW <= IW) {
                const src = rowOff + iw;
                for (let kw = 0; kw < KW; kw++) rows[r++] = xs[src + kw] + add;
              } else {
                for (let kw = 0; kw < KW; kw++, iw += DW) rows[r++] = iw >= 0 && iw < IW ? xs[rowOff + iw] + add : pad;
              }
            }
          }
        }
        if (stride > K) rows.fill(pad, p * stride + K, (p + 1) * stride);
      }
}

/** Geometry of the im2row-free path: a stride-1 1-D/2-D convolution as shifted GEMMs over a padded input. */
interface ShiftPlan {
  IH: number; IW: number; KH: number; KW: number; DH: number; DW: number; PH: number; PW: number;
  Hp: number; Wp: number; OH: number; OW: number;
  CP: number; OCp: number; Pp: number; Lp: number;
}

function shiftPlan(s: ConvShape): ShiftPlan | undefined {
  const r = s.win.inSize.length;
  if (r > 2 || s.win.strides.some((v) => v !== 1) || s.OCg < 4 || !wasmGemm()) return undefined;
  const [IH, IW] = to2d(s.win.inSize, 1);
  const [KH, KW] = to2d(s.win.kernel, 1);
  const [DH, DW] = to2d(s.win.dilations, 1);
  const [PH, PW] = to2d(s.win.padBegin, 0);
  const [PHe, PWe] = to2d(s.win.padEnd, 0);
  const [OH, OW] = to2d(s.win.outSize, 1);
  const Hp = IH + PH + PHe;
  const Wp = IW + PW + PWe;
  // outputs are computed on the padded width (columns past OW are discarded), reads run (KW-1)*DW past the plane
  return {
    IH, IW, KH, KW, DH, DW, PH, PW, Hp, Wp, OH, OW,
    CP: (s.Cg + 1) >> 1, OCp: (s.OCg + 3) & ~3, Pp: (OH * Wp + 7) & ~7, Lp: Hp * Wp + (KW - 1) * DW + 8,
  };
}

/** Weights for the shifted path: [group][OCp][KH][KW][CP][2] int16, zero point subtracted, padding zero. */
function packWeightsShift(w: TensorData, wzp: TensorData | undefined, s: ConvShape, pl: ShiftPlan, node: Node): Int16Array {
  const ws = numArray(w, node, 'w');
  const z = wzp ? numArray(wzp, node, 'w_zero_point') : undefined;
  const T = pl.KH * pl.KW;
  const out = new Int16Array(s.group * pl.OCp * T * pl.CP * 2);
  for (let g = 0; g < s.group; g++)
    for (let o = 0; o < s.OCg; o++) {
      const oc = g * s.OCg + o;
      const zp = z ? (z.length === 1 ? z[0] : z[oc]) : 0;
      const row = (g * pl.OCp + o) * T * pl.CP * 2;
      for (let c = 0; c < s.Cg; c++)
        for (let t = 0; t < T; t++) out[row + (t * pl.CP + (c >> 1)) * 2 + (c & 1)] = ws[(oc * s.Cg + c) * T + t] - zp;
    }
  return out;
}

/**
 * Geometry for the provider's fused conv, reused: a fresh small typed array per call would be allocated on the V8
 * heap and have its buffer materialized by the addon each time (measured: GC took most of a batch-1 run).
 */
const GEO = new Int32Array(32);

/**
 * The zero-point-shifted convolution, one (image, group) at a time, its int32 accumulators drained into `sink`.
 * Stride-1 convolutions with 4+ output channels per group take the im2row-free wasm path.
 */
function convEach(
  s: ConvShape, xs: IntArray, xzp: number,
  packed: { rows: Int16Array } | { shift: Int16Array; plan: ShiftPlan } | { nat: PackedB[] }, sink: Sink,
): void {
  const { N, C, OC, group, Cg, OCg, K, P } = s;
  const plane = s.win.inSize.reduce((a, b) => a * b, 1);
  const OW = s.win.outSize[s.win.outSize.length - 1];
  const prov = intGemmProvider();
  if ('nat' in packed && prov) {
    // GEMM provider: uint8 im2row [P, K] x packed weights, accumulators written transposed ([OCg, P]) into wasm
    // memory when there is some, so that the drain requantizes there as on the wasm path
    const d = xs instanceof Int8Array ? 128 : 0;
    const zpU8 = xzp + d;
    const reg = wasmRegions([OCg * P * 4, ...drainScratch(OCg, P)]);
    const cOff = reg ? reg.offsets[0] : -1;
    const scratch = reg ? reg.offsets.slice(1) : undefined;
    const Cm = reg ? new Int32Array(reg.memory, cOff, OCg * P) : new Int32Array(OCg * P);
    // 1-D and 2-D over 8-bit typed input: the provider's fused conv (no im2row buffer), else im2row + GEMM
    const r = s.win.inSize.length;
    const fused = prov.conv2dU8 && r <= 2 && (xs instanceof Uint8Array || xs instanceof Int8Array) ? prov.conv2dU8 : undefined;
    let geo: Int32Array | undefined;
    if (fused) {
      geo = GEO;
      geo.set([Cg, ...to2d(s.win.inSize, 1), ...to2d(s.win.kernel, 1), ...to2d(s.win.strides, 1),
        ...to2d(s.win.padBegin, 0), ...to2d(s.win.dilations, 1), ...to2d(s.win.outSize, 1)]);
    }
    const rows = fused ? undefined : new Uint8Array(P * K);
    for (let n = 0; n < N; n++)
      for (let g = 0; g < group; g++) {
        const x0 = (n * C + g * Cg) * plane;
        if (fused && geo) fused(xs.subarray(x0, x0 + Cg * plane) as Uint8Array | Int8Array, zpU8, geo, packed.nat[g], Cm, P);
        else if (rows) {
          im2rowInto(xs, x0, d, zpU8, s, rows, s.K);
          prov.gemmU8(P, OCg, K, rows, K, zpU8, packed.nat[g], Cm, P, true);
        }
        drain(sink, Cm, cOff, P, P, OCg, 1, P, g * OCg, (n * OC + g * OCg) * P, scratch);
      }
    return;
  }
  if ('nat' in packed) throw new Error('GEMM provider removed during a run');
  if ('shift' in packed) {
    const pl = packed.plan;
    const T = pl.KH * pl.KW;
    const wLen = pl.OCp * T * pl.CP * 2;
    const reg = wasmRegions([wLen * 2, pl.CP * pl.Lp * 4, pl.OCp * pl.Pp * 4, ...drainScratch(OCg, P)]);
    const wasm = wasmGemm();
    if (!reg || !wasm) throw new Error('wasm unavailable');
    const [wOff, xOff, cOff, ...scratch] = reg.offsets;
    const W = new Int16Array(reg.memory, wOff, wLen);
    const X = new Int16Array(reg.memory, xOff, pl.CP * pl.Lp * 2);
    const Cm = new Int32Array(reg.memory, cOff, pl.OCp * pl.Pp);
    const { IH, IW, Wp, Lp, PH, PW } = pl;
    // the padding border stays zero across images: only the interior is rewritten
    X.fill(0);
    for (let n = 0; n < N; n++)
      for (let g = 0; g < group; g++) {
        if (n === 0 || group > 1) W.set(packed.shift.subarray(g * wLen, (g + 1) * wLen));
        for (let c = 0; c < Cg; c++) {
          const src = (n * C + g * Cg + c) * plane;
          const dst0 = (c >> 1) * Lp;
          const e = c & 1;
          for (let h = 0; h < IH; h++) {
            let d = (dst0 + (h + PH) * Wp + PW) * 2 + e;
            const srow = src + h * IW;
            for (let w = 0; w < IW; w++, d += 2) X[d] = xs[srow + w] - xzp;
          }
        }
        wasm.conv(pl.OCp, pl.Pp, pl.CP, pl.KH, pl.KW, pl.DH * Wp * 4, pl.DW * 4, Lp * 4, wOff, xOff, cOff, pl.Pp);
        drain(sink, Cm, cOff, pl.Pp, Wp, OCg, pl.OH, OW, g * OCg, (n * OC + g * OCg) * P, scratch);
      }
    return;
  }
  const buf = gemmBuffers(OCg, P, K, drainScratch(OCg, P));
  const { Kp, ldc } = buf;
  for (let n = 0; n < N; n++)
    for (let g = 0; g < group; g++) {
      buf.A.set(packed.rows.subarray(g * OCg * Kp, (g + 1) * OCg * Kp));
      im2rowInto(xs, (n * C + g * Cg) * plane, -xzp, 0, s, buf.B, Kp);
      for (let oc = 0; oc < OCg; oc++) buf.C.fill(0, oc * ldc, oc * ldc + P);
      buf.run();
      drain(sink, buf.C, buf.cOff, ldc, P, OCg, 1, P, g * OCg, (n * OC + g * OCg) * P, buf.extra);
    }
}

/** The provider's fused convolution applies: 1-D / 2-D over 8-bit typed input. */
type Fused = Required<Pick<IntGemmProvider, 'packConv' | 'qconv'>> & IntGemmProvider;

function fusedProvider(s: ConvShape, xs: IntArray): Fused | undefined {
  const prov = intGemmProvider();
  if (!prov?.qconv || !prov.packConv || s.win.inSize.length > 2 || !(xs instanceof Uint8Array || xs instanceof Int8Array)) return undefined;
  if (s.N * s.Cg * s.OCg === 0) return undefined; // nothing to compute: the plain path handles empty tensors
  return prov as Fused;
}

/**
 * The whole convolution through the provider's fused kernel, one call per group: direct convolution and
 * requantization (rq) into y, every image at once. Returns the call for inputs of this shape.
 */
function convFused(prov: Fused, ctx: KernelContext, s: ConvShape, xs: Uint8Array | Int8Array, xzp: number,
  w: TensorData, wzp: TensorData | undefined, deps: number[], rq: RequantSpec): FusedCall {
  const [KH, KW] = to2d(s.win.kernel, 1);
  const W = memo(ctx, `wq:${prov.name}`, deps, () => {
    const rows = packWeights(w, wzp, ctx.node);
    const Kp = padK(s.K);
    return Array.from({ length: s.group }, (_, g) => prov.packConv(rows, g * s.OCg * Kp, Kp, s.OCg, s.Cg, KH, KW));
  });
  // one geometry array per group, kept with the call (no small typed array per run: see GEO)
  const geo = Array.from({ length: s.group }, (_, g) => Int32Array.from([s.N, s.C, ...to2d(s.win.inSize, 1), KH, KW,
    ...to2d(s.win.strides, 1), ...to2d(s.win.padBegin, 0), ...to2d(s.win.padEnd, 0), ...to2d(s.win.dilations, 1),
    ...to2d(s.win.outSize, 1), s.group, s.OC, g]));
  const zpU8 = xzp + (xs instanceof Int8Array ? 128 : 0);
  return (x, y) => {
    for (let g = 0; g < s.group; g++) prov.qconv(x, zpU8, geo[g], W[g], rq, y);
  };
}

type FusedCall = (x: Uint8Array | Int8Array, y: Int8Array | Uint8Array | Int32Array) => void;

/** A fused convolution ready to run again: kept while the node's other inputs are constants. */
interface FusedPlan { dims: readonly number[]; dtype: string; prov: IntGemmProvider; run(x: TensorData): TensorData }

function cachedPlan(ctx: KernelContext, x: TensorData): FusedPlan | undefined {
  const p = ctx.cache.get('plan') as FusedPlan | undefined;
  if (!p || p.prov !== intGemmProvider() || p.dtype !== x.dtype || p.dims.length !== x.dims.length) return undefined;
  for (let i = 0; i < p.dims.length; i++) if (p.dims[i] !== x.dims[i]) return undefined;
  return p;
}

/** Output of a fused call on x (and the plan kept for the next run when only x can change). */
function runFused(ctx: KernelContext, x: TensorData, prov: IntGemmProvider, call: FusedCall, dtype: DType, dims: number[]): TensorData {
  const run = (t: TensorData): TensorData => {
    const out = outputTensor(dtype, dims);
    call(t.data as Uint8Array | Int8Array, out.data as Int8Array | Uint8Array | Int32Array);
    return out;
  };
  if (ctx.node.inputs.every((_, i) => i === 0 || ctx.isConst(i))) ctx.cache.set('plan', { dims: [...x.dims], dtype: x.dtype, prov, run });
  return run(x);
}

/** Packed weights for whichever path the shape takes, cached across runs when w and its zero point are constant. */
function packFor(ctx: KernelContext, s: ConvShape, w: TensorData, wzp: TensorData | undefined, deps: number[]) {
  const prov = intGemmProvider();
  if (prov) {
    const nat = memo(ctx, `wnat:${prov.name}`, deps, () => {
      const rows = packWeights(w, wzp, ctx.node);
      const Kp = padK(s.K);
      return Array.from({ length: s.group }, (_, g) => prov.packB(rows, g * s.OCg * Kp, Kp, s.OCg, s.K));
    });
    return { nat };
  }
  const plan = shiftPlan(s);
  if (plan) return { shift: memo(ctx, 'wshift', deps, () => packWeightsShift(w, wzp, s, plan, ctx.node)), plan };
  return { rows: memo(ctx, 'w', deps, () => packWeights(w, wzp, ctx.node)) };
}

function convInteger(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const x = requireInput(inputs, 0, node, 'x');
  const w = requireInput(inputs, 1, node, 'w');
  checkDType(x, Q8, node, 'x');
  checkDType(w, Q8, node, 'w');
  const plan = cachedPlan(ctx, x);
  if (plan) return plan.run(x);
  const s = convShape(node, x, w);
  const xzp = inputs[2] ? scalar(inputs[2], node, 'x_zero_point') : 0;
  const xs = numArray(x, node, 'x') as IntArray;
  const fused = fusedProvider(s, xs);
  if (fused) {
    const rq = { table: new Int32Array(4 * s.OC), mode: 3, zp: 0, qmin: 0, qmax: 0 };
    return runFused(ctx, x, fused, convFused(fused, ctx, s, xs as Uint8Array | Int8Array, xzp, w, inputs[3], [1, 3], rq), 'int32', s.outDims);
  }
  const res = outputTensor('int32', s.outDims);
  convEach(s, xs, xzp, packFor(ctx, s, w, inputs[3], [1, 3]), { kind: 'int32', out: res.data as Int32Array });
  return res;
}

interface QConvParams { mult: Float32Array; fixed: FixedMultipliers | undefined }

function qlinearConv(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const x = requireInput(inputs, 0, node, 'x');
  const w = requireInput(inputs, 3, node, 'w');
  checkDType(x, Q8, node, 'x');
  checkDType(w, Q8, node, 'w');
  const plan = cachedPlan(ctx, x);
  if (plan) return plan.run(x);
  const yzpT = inputs[7];
  const s = convShape(node, x, w);
  const xScale = scalar(requireInput(inputs, 1, node, 'x_scale'), node, 'x_scale');
  const xzp = inputs[2] ? scalar(inputs[2], node, 'x_zero_point') : 0;
  const yScale = scalar(requireInput(inputs, 6, node, 'y_scale'), node, 'y_scale');
  const yzp = yzpT ? scalar(yzpT, node, 'y_zero_point') : 0;
  const dtype = yzpT ? yzpT.dtype : x.dtype;
  const { qmin, qmax } = outRange(dtype, ctx);
  const params = memo(ctx, 'scales', [1, 4, 6], (): QConvParams => {
    const ws = floatValues(requireInput(inputs, 4, node, 'w_scale'), node, 'w_scale');
    if (ws.length !== 1 && ws.length !== s.OC)
      throw new GraphError(`w_scale must be a scalar or have ${s.OC} values (one per output channel), got ${ws.length}`, node);
    const mult = new Float32Array(s.OC);
    // ONNX Runtime: float32 x_scale * w_scale / y_scale
    for (let oc = 0; oc < s.OC; oc++) mult[oc] = Math.fround(Math.fround(xScale * ws[ws.length === 1 ? 0 : oc]) / yScale);
    const real = Array.from({ length: s.OC }, (_, oc) => (xScale * ws[ws.length === 1 ? 0 : oc]) / yScale);
    return { mult, fixed: fixedMultipliers(ctx, real) };
  });
  let bias: Int32Array | undefined;
  if (inputs[8]) {
    const b = inputs[8];
    checkDType(b, ['int32'], node, 'B');
    bias = b.data as Int32Array;
    if (bias.length !== s.OC) throw new GraphError(`bias must have ${s.OC} values, got ${bias.length}`, node);
  }
  const xs = numArray(x, node, 'x') as IntArray;
  const fused = fusedProvider(s, xs);
  if (fused) {
    const rq = { table: requantTable(s.OC, params.mult, bias, params.fixed), mode: requantMode(params.fixed), zp: yzp, qmin, qmax };
    return runFused(ctx, x, fused, convFused(fused, ctx, s, xs as Uint8Array | Int8Array, xzp, w, inputs[5], [3, 5], rq), dtype, s.outDims);
  }
  const out = outputTensor(dtype, s.outDims);
  const y = out.data as IntArray;
  convEach(s, xs, xzp, packFor(ctx, s, w, inputs[5], [3, 5]), {
    kind: 'q8', y, mult: params.mult, bias, fixed: params.fixed, zp: yzp, qmin, qmax,
  });
  return out;
}

export const convKernels: IntKernel[] = [
  { op: 'ConvInteger', run: (inputs, ctx) => [convInteger(inputs, ctx)] },
  { op: 'QLinearConv', clampable: true, run: (inputs, ctx) => [qlinearConv(inputs, ctx)] },
];
