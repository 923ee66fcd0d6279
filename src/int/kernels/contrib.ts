// com.microsoft QLinearAdd and QLinearGlobalAveragePool with ONNX Runtime's contrib semantics.
// 'float' reproduces ONNX Runtime's x86 MLAS kernels (AVX2 QLinearAdd with fused multiply-adds);
// 'fixedpoint' is TFLite's integer-only Add and an int32 multiplier for the mean ('fixedpoint-single': rounded once).
import { type TensorData, GraphError, attrInt, elementCount } from '../../graph/ir.js';
import { type IntKernel, type KernelContext, isFixedPoint } from '../registry.js';
import {
  type QuantizedMultiplier, multiplyByQuantizedMultiplier, multiplyByQuantizedMultiplierSingle, quantizeMultiplier,
} from '../fixedpoint.js';
import {
  broadcastIndex, broadcastShape, checkDType, numArray, outputTensor, requireInput, rint, scalar,
} from '../tensor.js';
import { type IntArray, memo, outRange, requantFixed, requantFloat, requantMode, requantTable } from './common.js';
import { intGemmProvider } from './gemm.js';

const MS = 'com.microsoft';
const Q8 = ['int8', 'uint8'] as const;

/** float32 fused multiply-add a*b + c with one rounding: exact in double for these operand sizes (8-bit * float32 + float32). */
const fmaf = (a: number, b: number, c: number): number => Math.fround(a * b + c);

/** Which input is constant along the innermost non-trivial output axis (ONNX Runtime then takes its scalar path). */
function scalarSide(a: TensorData, b: TensorData, out: number[]): 'a' | 'b' | 'none' {
  if (elementCount(a.dims) === 1) return 'a';
  if (elementCount(b.dims) === 1) return 'b';
  let d = out.length - 1;
  while (d >= 0 && out[d] === 1) d--;
  if (d < 0) return 'none';
  const dimAt = (t: TensorData): number => t.dims[t.dims.length - (out.length - d)] ?? 1;
  if (dimAt(a) === 1) return 'a';
  if (dimAt(b) === 1) return 'b';
  return 'none';
}

/** One output of QLinearAdd for integer inputs a, b, given the side ONNX Runtime treats as a scalar. */
type AddFn = (a: number, b: number) => number;

interface AddParams { sA: number; zA: number; sB: number; zB: number; sC: number; zC: number; qmin: number; qmax: number }

/** The constants of a QLinearAdd's arithmetic: TFLite's integer Add, or ONNX Runtime's float32 (MLAS AVX2). */
type AddArith =
  | { single: boolean; qa: QuantizedMultiplier; qb: QuantizedMultiplier; qo: QuantizedMultiplier }
  | { rA: number; rB: number; fixed: number };

// TFLite reference Add: both inputs to a common scale 2*max(sA, sB) with 20 bits of headroom
const ADD_LEFT_SHIFT = 20;

function addArith(p: AddParams, requant: KernelContext['requant']): AddArith {
  const { sA, zA, sB, zB, sC, zC } = p;
  if (isFixedPoint(requant)) {
    const twiceMax = 2 * Math.max(sA, sB);
    return {
      single: requant === 'fixedpoint-single',
      qa: quantizeMultiplier(sA / twiceMax),
      qb: quantizeMultiplier(sB / twiceMax),
      qo: quantizeMultiplier(twiceMax / (2 ** ADD_LEFT_SHIFT * sC)),
    };
  }
  // MLAS AVX2: r = zC - (rA*zA + rB*zB) + b*rB + a*rA in float32 with FMAs, converted round-half-even, saturated
  const rA = Math.fround(sA / sC);
  const rB = Math.fround(sB / sC);
  return { rA, rB, fixed: Math.fround(zC - Math.fround(Math.fround(rA * zA) + Math.fround(rB * zB))) };
}

function addFn(p: AddParams, ar: AddArith, side: 'a' | 'b' | 'none'): AddFn {
  const { zA, zB, zC, qmin, qmax } = p;
  if ('qa' in ar) {
    const mbqm = ar.single ? multiplyByQuantizedMultiplierSingle : multiplyByQuantizedMultiplier;
    const { qa, qb, qo } = ar;
    return (a, b) => {
      const sum = mbqm((a - zA) << ADD_LEFT_SHIFT, qa.multiplier, qa.shift) + mbqm((b - zB) << ADD_LEFT_SHIFT, qb.multiplier, qb.shift);
      return Math.min(Math.max(mbqm(sum, qo.multiplier, qo.shift) + zC, qmin), qmax);
    };
  }
  const { rA, rB, fixed } = ar;
  const clamp = (v: number): number => Math.min(Math.max(rint(v), qmin), qmax);
  // a scalar side is folded into the constant first, without an FMA
  if (side === 'b') return (a, b) => clamp(fmaf(a, rA, Math.fround(fixed + Math.fround(b * rB))));
  if (side === 'a') return (a, b) => clamp(fmaf(b, rB, Math.fround(fixed + Math.fround(a * rA))));
  return (a, b) => clamp(fmaf(a, rA, fmaf(b, rB, fixed)));
}

/** The provider's qadd parameters: mode, zA, zB, zC, qmin, qmax, rA, rB, fixed, then multiplier and shift of a, b, output. */
function addSpec(p: AddParams, ar: AddArith): Float64Array {
  const head = [p.zA, p.zB, p.zC, p.qmin, p.qmax];
  if ('qa' in ar)
    return Float64Array.from([ar.single ? 2 : 1, ...head, 0, 0, 0, ar.qa.multiplier, ar.qa.shift, ar.qb.multiplier, ar.qb.shift, ar.qo.multiplier, ar.qo.shift]);
  return Float64Array.from([0, ...head, ar.rA, ar.rB, ar.fixed, 0, 0, 0, 0, 0, 0]);
}

/** Every output of an 8-bit add as a 256 x 256 table indexed by the inputs' bytes: built once per session. */
function addTable(f: AddFn, signed: boolean): Int8Array | Uint8Array {
  const t = signed ? new Int8Array(65536) : new Uint8Array(65536);
  for (let i = 0; i < 256; i++) {
    const a = signed && i > 127 ? i - 256 : i;
    for (let j = 0; j < 256; j++) t[(i << 8) | j] = f(a, signed && j > 127 ? j - 256 : j);
  }
  return t;
}

function qlinearAdd(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const a = requireInput(inputs, 0, node, 'A');
  const b = requireInput(inputs, 3, node, 'B');
  checkDType(a, Q8, node, 'A');
  if (b.dtype !== a.dtype) throw new GraphError(`B dtype ${b.dtype} differs from A dtype ${a.dtype}`, node);
  const p: AddParams = {
    sA: scalar(requireInput(inputs, 1, node, 'A_scale'), node, 'A_scale'),
    zA: inputs[2] ? scalar(inputs[2], node, 'A_zero_point') : 0,
    sB: scalar(requireInput(inputs, 4, node, 'B_scale'), node, 'B_scale'),
    zB: inputs[5] ? scalar(inputs[5], node, 'B_zero_point') : 0,
    sC: scalar(requireInput(inputs, 6, node, 'C_scale'), node, 'C_scale'),
    zC: inputs[7] ? scalar(inputs[7], node, 'C_zero_point') : 0,
    ...outRange(a.dtype, ctx),
  };
  const outDims = broadcastShape(a.dims, b.dims, node);
  const out = outputTensor(a.dtype, outDims);
  const y = out.data as IntArray;
  const av = numArray(a, node, 'A');
  const bv = numArray(b, node, 'B');
  const n = y.length;
  const same = (t: TensorData): boolean => t.dims.length === outDims.length && t.dims.every((d, i) => d === outDims[i]);
  const ia = same(a) ? undefined : broadcastIndex(a.dims, outDims);
  const ib = same(b) ? undefined : broadcastIndex(b.dims, outDims);
  const side = scalarSide(a, b, outDims);
  const params = [1, 2, 4, 5, 6, 7];
  const qadd = intGemmProvider()?.qadd;
  if (qadd && !ia && !ib && side === 'none' && (av instanceof Int8Array || av instanceof Uint8Array)) {
    qadd(av, bv as typeof av, memo(ctx, 'qadd', params, () => addSpec(p, addArith(p, ctx.requant))), y as Int8Array | Uint8Array);
    return out;
  }
  if (params.every((i) => ctx.isConst(i)) || n >= 65536) {
    const t = memo(ctx, `table_${side}_${a.dtype}`, params, () => addTable(addFn(p, addArith(p, ctx.requant), side), a.dtype === 'int8'));
    if (!ia && !ib) for (let i = 0; i < n; i++) y[i] = t[((av[i] & 255) << 8) | (bv[i] & 255)];
    else for (let i = 0; i < n; i++) y[i] = t[((av[ia ? ia[i] : i] & 255) << 8) | (bv[ib ? ib[i] : i] & 255)];
    return out;
  }
  const f = addFn(p, addArith(p, ctx.requant), side);
  for (let i = 0; i < n; i++) y[i] = f(av[ia ? ia[i] : i], bv[ib ? ib[i] : i]);
  return out;
}

function qlinearGlobalAveragePool(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const x = requireInput(inputs, 0, node, 'X');
  checkDType(x, Q8, node, 'X');
  if (x.dims.length < 3) throw new GraphError(`X must have rank >= 3, got [${x.dims.join(', ')}]`, node);
  const channelsLast = attrInt(node, 'channels_last', 0) !== 0;
  const xScale = scalar(requireInput(inputs, 1, node, 'x_scale'), node, 'x_scale');
  const xzp = inputs[2] ? scalar(inputs[2], node, 'x_zero_point') : 0;
  const yScale = scalar(requireInput(inputs, 3, node, 'y_scale'), node, 'y_scale');
  const yzpT = inputs[4];
  const yzp = yzpT ? scalar(yzpT, node, 'y_zero_point') : 0;
  const dtype = yzpT ? yzpT.dtype : x.dtype;
  const { qmin, qmax } = outRange(dtype, ctx);
  const r = x.dims.length;
  const N = x.dims[0];
  const C = channelsLast ? x.dims[r - 1] : x.dims[1];
  const spatial = channelsLast ? x.dims.slice(1, r - 1) : x.dims.slice(2);
  const S = elementCount(spatial);
  const outDims = channelsLast ? [N, ...spatial.map(() => 1), C] : [N, C, ...spatial.map(() => 1)];
  const xs = numArray(x, node, 'X');
  const out = outputTensor(dtype, outDims);
  const y = out.data as IntArray;
  const q = isFixedPoint(ctx.requant) ? quantizeMultiplier(xScale / (yScale * S)) : undefined;
  // MLAS: x_scale / (y_scale * image_size) in float32
  const mult = (): number => Math.fround(xScale / Math.fround(yScale * S));
  const prov = intGemmProvider();
  if (prov?.planeSums && prov.requant && !channelsLast && S > 0 && (xs instanceof Int8Array || xs instanceof Uint8Array)) {
    const acc = new Int32Array(N * C);
    prov.planeSums(xs, S, acc);
    // the table depends on the scales, x's zero point and the plane size
    const rq = memo(ctx, `rq:${S}`, [1, 2, 3], () => {
      const fm = q && { multiplier: Int32Array.of(q.multiplier), shift: Int32Array.of(q.shift), single: ctx.requant === 'fixedpoint-single' };
      return { table: requantTable(1, [q ? 0 : mult()], [-xzp * S], fm), mode: requantMode(fm) };
    });
    prov.requant(acc, 1, N * C, N * C, { ...rq, zp: yzp, qmin, qmax }, y as Int8Array | Uint8Array);
    return out;
  }
  const acc = new Int32Array(N * C).fill(-xzp * S);
  for (let n = 0; n < N; n++) {
    if (channelsLast) {
      for (let p = 0; p < S; p++) {
        const off = (n * S + p) * C;
        for (let c = 0; c < C; c++) acc[n * C + c] += xs[off + c];
      }
    } else {
      for (let c = 0; c < C; c++) {
        const off = (n * C + c) * S;
        let s = 0;
        for (let p = 0; p < S; p++) s += xs[off + p];
        acc[n * C + c] += s;
      }
    }
  }
  if (q) requantFixed(acc, 0, N * C, q.multiplier, q.shift, yzp, qmin, qmax, y, 0, 0, ctx.requant === 'fixedpoint-single');
  else requantFloat(acc, 0, N * C, mult(), yzp, qmin, qmax, y, 0);
  return out;
}

export const contribKernels: IntKernel[] = [
  { op: 'QLinearAdd', domain: MS, clampable: true, run: (inputs, ctx) => [qlinearAdd(inputs, ctx)] },
  { op: 'QLinearGlobalAveragePool', domain: MS, clampable: true, run: (inputs, ctx) => [qlinearGlobalAveragePool(inputs, ctx)] },
];
