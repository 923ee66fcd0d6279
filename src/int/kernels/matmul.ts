// MatMulInteger and QLinearMatMul: numpy matmul broadcasting (1-D operands, batch dims), zero points and
// scales per tensor, per row of a ([M] or [..., M, 1]) and per column of b ([N] or [..., 1, N]).
import { type Node, type TensorData, GraphError, elementCount } from '../../graph/ir.js';
import { type IntKernel, type KernelContext, isFixedPoint } from '../registry.js';
import { quantizeMultiplier } from '../fixedpoint.js';
import {
  broadcastIndex, broadcastShape, checkDType, floatValues, newTensor, numArray, requireInput, rint, scalar,
} from '../tensor.js';
import { type IntArray, requantFixed, requantFloat, memo, outRange } from './common.js';
import { type IntGemmProvider, type PackedB, asU8, gemmBuffers, intGemmProvider, padK } from './gemm.js';

const Q8 = ['int8', 'uint8'] as const;

interface MatShape {
  M: number; K: number; N: number;
  batchA: number[]; batchB: number[]; batch: number[];
  /** per output batch: which batch of a and of b it reads */
  aIdx: Int32Array; bIdx: Int32Array;
  outDims: number[];
}

function matShape(node: Node, a: TensorData, b: TensorData): MatShape {
  if (a.dims.length === 0 || b.dims.length === 0) throw new GraphError('matmul operands must have rank >= 1', node);
  const ad = a.dims.length === 1 ? [1, a.dims[0]] : a.dims;
  const bd = b.dims.length === 1 ? [b.dims[0], 1] : b.dims;
  const M = ad[ad.length - 2];
  const K = ad[ad.length - 1];
  const N = bd[bd.length - 1];
  if (bd[bd.length - 2] !== K) throw new GraphError(`inner dims differ: a [${a.dims.join(', ')}], b [${b.dims.join(', ')}]`, node);
  const batchA = ad.slice(0, -2);
  const batchB = bd.slice(0, -2);
  const batch = broadcastShape(batchA, batchB, node);
  const outDims = [...batch];
  if (a.dims.length > 1) outDims.push(M);
  if (b.dims.length > 1) outDims.push(N);
  return { M, K, N, batchA, batchB, batch, aIdx: broadcastIndex(batchA, batch), bIdx: broadcastIndex(batchB, batch), outDims };
}

/**
 * A per-row (side 'a') or per-column (side 'b') parameter broadcast to one value per (batch, row|col):
 * a scalar, a 1-D vector over the rows/columns, or [..., M, 1] / [..., 1, N].
 */
function perLine(t: TensorData | undefined, vals: ArrayLike<number> | undefined, batchDims: number[], L: number, side: 'a' | 'b', node: Node, what: string): Float64Array {
  const nb = elementCount(batchDims);
  const out = new Float64Array(nb * L);
  if (!t || !vals) return out;
  if (vals.length === 1) return out.fill(vals[0]);
  let dims = t.dims;
  if (dims.length === 1) dims = side === 'a' ? [dims[0], 1] : [1, dims[0]];
  const lineAxis = side === 'a' ? dims.length - 2 : dims.length - 1;
  const other = side === 'a' ? dims.length - 1 : dims.length - 2;
  if (dims[lineAxis] !== L || dims[other] !== 1)
    throw new GraphError(`${what} of shape [${t.dims.join(', ')}] is neither a scalar nor per ${side === 'a' ? 'row' : 'column'} (${L})`, node);
  const idx = broadcastIndex(dims.filter((_, i) => i !== other), [...batchDims, L]);
  for (let i = 0; i < out.length; i++) out[i] = vals[idx[i]];
  return out;
}

/** a minus its zero point, [batchA, M, Kp] as int16, K zero-padded to Kp. */
function packA(a: TensorData, zp: Float64Array, s: MatShape, node: Node): Int16Array {
  const as = numArray(a, node, 'a');
  const { K } = s;
  const Kp = padK(K);
  const out = new Int16Array(zp.length * Kp);
  for (let r = 0; r < zp.length; r++) {
    const z = zp[r];
    for (let k = 0; k < K; k++) out[r * Kp + k] = as[r * K + k] - z;
  }
  return out;
}

/** b minus its zero point, transposed to [batchB, N, Kp] so that the gemm reads K contiguously. */
function packB(b: TensorData, zp: Float64Array, s: MatShape, node: Node): Int16Array {
  const bs = numArray(b, node, 'b');
  const { K, N } = s;
  const Kp = padK(K);
  const nb = elementCount(s.batchB);
  const out = new Int16Array(nb * N * Kp);
  for (let q = 0; q < nb; q++) {
    const src = q * K * N;
    const dst = q * N * Kp;
    for (let k = 0; k < K; k++)
      for (let n = 0; n < N; n++) out[dst + n * Kp + k] = bs[src + k * N + n] - zp[q * N + n];
  }
  return out;
}

/** For each output batch q, `emit(q, C, ldc)` receives the [M, N] int32 accumulators as rows of C. */
function accumulateEach(s: MatShape, A: Int16Array, B: Int16Array, emit: (q: number, C: Int32Array, ldc: number) => void): void {
  const { M, K, N } = s;
  const buf = gemmBuffers(M, N, K);
  const { Kp, ldc } = buf;
  for (let q = 0; q < s.aIdx.length; q++) {
    const a = s.aIdx[q] * M * Kp;
    const b = s.bIdx[q] * N * Kp;
    buf.A.set(A.subarray(a, a + M * Kp));
    buf.B.set(B.subarray(b, b + N * Kp));
    for (let m = 0; m < M; m++) buf.C.fill(0, m * ldc, m * ldc + N);
    buf.run();
    emit(q, buf.C, ldc);
  }
}

/** accumulateEach through the GEMM provider: a as uint8 (int8 offset by 128) with per-row zero points, B packed per batch. */
function accumulateNative(
  prov: IntGemmProvider, s: MatShape, a: TensorData, azp: Float64Array, B: PackedB[], node: Node,
  emit: (q: number, C: Int32Array, ldc: number) => void,
): void {
  const { M, K, N } = s;
  const int8 = a.dtype === 'int8';
  const A = asU8(numArray(a, node, 'a'), int8);
  const zp = Int32Array.from(azp, (z) => z + (int8 ? 128 : 0));
  // one zero point: pass the number (a fresh 1-element typed array would be materialized by the addon per call)
  const single = zp.every((z) => z === zp[0]) ? zp[0] : undefined;
  const C = new Int32Array(M * N);
  for (let q = 0; q < s.aIdx.length; q++) {
    const ai = s.aIdx[q];
    prov.gemmU8(M, N, K, A.subarray(ai * M * K, (ai + 1) * M * K), K, single ?? zp.subarray(ai * M, (ai + 1) * M), B[s.bIdx[q]], C, N, false);
    emit(q, C, N);
  }
}

/** packB's [batchB, N, Kp] panels for the provider, one per batch of b. */
function packNative(prov: IntGemmProvider, B: Int16Array, s: MatShape): PackedB[] {
  const Kp = padK(s.K);
  return Array.from({ length: elementCount(s.batchB) }, (_, q) => prov.packB(B, q * s.N * Kp, Kp, s.N, s.K));
}

function matmulInteger(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const a = requireInput(inputs, 0, node, 'A');
  const b = requireInput(inputs, 1, node, 'B');
  checkDType(a, Q8, node, 'A');
  checkDType(b, Q8, node, 'B');
  const s = matShape(node, a, b);
  const zpVals = (i: number, what: string) => (inputs[i] ? numArray(inputs[i], node, what) : undefined);
  const azp = perLine(inputs[2], zpVals(2, 'a_zero_point'), s.batchA, s.M, 'a', node, 'a_zero_point');
  const packBoth = () => packB(b, perLine(inputs[3], zpVals(3, 'b_zero_point'), s.batchB, s.N, 'b', node, 'b_zero_point'), s, node);
  const { M, N } = s;
  const out = new Int32Array(s.aIdx.length * M * N);
  const emit = (q: number, C: Int32Array, ldc: number) => {
    for (let m = 0; m < M; m++) out.set(C.subarray(m * ldc, m * ldc + N), (q * M + m) * N);
  };
  const prov = intGemmProvider();
  if (prov) accumulateNative(prov, s, a, azp, memo(ctx, `bnat:${prov.name}`, [1, 3], () => packNative(prov, packBoth(), s)), node, emit);
  else accumulateEach(s, packA(a, azp, s, node), memo(ctx, 'b', [1, 3], packBoth), emit);
  return { dtype: 'int32', dims: s.outDims, data: out };
}

function qlinearMatMul(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const a = requireInput(inputs, 0, node, 'a');
  const b = requireInput(inputs, 3, node, 'b');
  checkDType(a, Q8, node, 'a');
  checkDType(b, Q8, node, 'b');
  const s = matShape(node, a, b);
  const { M, N } = s;
  const line = (i: number, L: number, batch: number[], side: 'a' | 'b', what: string, isScale: boolean): Float64Array => {
    const t = inputs[i];
    if (!t) {
      if (isScale) throw new GraphError(`missing required input ${i} (${what})`, node);
      return new Float64Array(elementCount(batch) * L);
    }
    return perLine(t, isScale ? floatValues(t, node, what) : numArray(t, node, what), batch, L, side, node, what);
  };
  const aScale = line(1, M, s.batchA, 'a', 'a_scale', true);
  const azp = line(2, M, s.batchA, 'a', 'a_zero_point', false);
  const bScale = memo(ctx, 'bscale', [4], () => line(4, N, s.batchB, 'b', 'b_scale', true));
  const packBoth = () => packB(b, line(5, N, s.batchB, 'b', 'b_zero_point', false), s, node);
  const yScale = scalar(requireInput(inputs, 6, node, 'y_scale'), node, 'y_scale');
  const yzpT = inputs[7];
  const yzp = yzpT ? scalar(yzpT, node, 'y_zero_point') : 0;
  const dtype = yzpT ? yzpT.dtype : a.dtype;
  const { qmin, qmax } = outRange(dtype, ctx);
  const lo = qmin - yzp;
  const hi = qmax - yzp;
  const out = newTensor(dtype, s.outDims);
  const y = out.data as IntArray;
  // one multiplier per column, recomputed only when the row's scale or b's batch changes
  const mult = new Float32Array(N);
  const fm = new Int32Array(N);
  const fs = new Int32Array(N);
  let lastAs = NaN;
  let lastB = -1;
  const perTensorB = bScale.every((v) => v === bScale[0]);
  const fixed = isFixedPoint(ctx.requant);
  const single = ctx.requant === 'fixedpoint-single';
  const prov = intGemmProvider();
  const each = (emit: (q: number, C: Int32Array, ldc: number) => void): void => {
    if (prov) accumulateNative(prov, s, a, azp, memo(ctx, `bnat:${prov.name}`, [3, 5], () => packNative(prov, packBoth(), s)), node, emit);
    else accumulateEach(s, packA(a, azp, s, node), memo(ctx, 'b', [3, 5], packBoth), emit);
  };
  each((q, C, ldc) => {
    for (let m = 0; m < M; m++) {
      const as = aScale[s.aIdx[q] * M + m];
      const bOff = s.bIdx[q] * N;
      if (as !== lastAs || bOff !== lastB) {
        lastAs = as;
        lastB = bOff;
        for (let n = 0; n < N; n++) {
          const bsc = bScale[bOff + n];
          // ONNX Runtime: float32 a_scale * b_scale / y_scale; fixed point from the exact double product
          mult[n] = Math.fround(Math.fround(as * bsc) / yScale);
          if (fixed) {
            const qm = quantizeMultiplier((as * bsc) / yScale);
            fm[n] = qm.multiplier;
            fs[n] = qm.shift;
          }
        }
      }
      const off = (q * M + m) * N;
      if (perTensorB) {
        // one multiplier for the row
        if (fixed) requantFixed(C, m * ldc, N, fm[0], fs[0], yzp, qmin, qmax, y, off, 0, single);
        else requantFloat(C, m * ldc, N, mult[0], yzp, qmin, qmax, y, off);
        continue;
      }
      if (fixed)
        for (let n = 0; n < N; n++) requantFixed(C, m * ldc + n, 1, fm[n], fs[n], yzp, qmin, qmax, y, off + n, 0, single);
      else
        for (let n = 0; n < N; n++) y[off + n] = rint(Math.min(Math.max(Math.fround(Math.fround(C[m * ldc + n]) * mult[n]), lo), hi)) + yzp;
    }
  });
  return out;
}

export const matmulKernels: IntKernel[] = [
  { op: 'MatMulInteger', run: (inputs, ctx) => [matmulInteger(inputs, ctx)] },
  { op: 'QLinearMatMul', clampable: true, run: (inputs, ctx) => [qlinearMatMul(inputs, ctx)] },
];
