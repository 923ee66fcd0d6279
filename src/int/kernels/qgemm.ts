// com.microsoft QGemm: Y = alpha * (A - a_zp) x (B - b_zp) + C, int32 accumulation with an int32 bias C at scale
// alpha * a_scale * b_scale, then either requantized to 8 bits (y_scale given) or scaled to float32 (no y_scale).
// b_scale / b_zero_point per tensor or per column (N). ONNX Runtime's arithmetic: multiplier
// float32(float32(alpha * a_scale) * b_scale) [/ y_scale], the bias added to the accumulator before conversion.
// The converter (convert.ts) lowers a quantized Gemm to this: per-channel weights and an int32 bias in one op.
import { type TensorData, GraphError, attrFloat, attrInt } from '../../graph/ir.js';
import type { IntKernel, KernelContext } from '../registry.js';
import { checkDType, floatValues, numArray, outputTensor, requireInput, rint, scalar } from '../tensor.js';
import { type IntArray, fixedMultipliers, memo, outRange, requantFixed, requantMode, requantTable } from './common.js';
import { asU8, gemmBuffers, intGemmProvider, padK } from './gemm.js';

const Q8 = ['int8', 'uint8'] as const;

/** One value per column from a scalar or an N-vector. */
function perColumn(vals: ArrayLike<number>, N: number, ctx: KernelContext, what: string): Float64Array {
  if (vals.length !== 1 && vals.length !== N)
    throw new GraphError(`${what} must be a scalar or have ${N} values (one per column), got ${vals.length}`, ctx.node);
  return Float64Array.from({ length: N }, (_, n) => vals[vals.length === 1 ? 0 : n]);
}

function qgemm(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const a = requireInput(inputs, 0, node, 'A');
  const b = requireInput(inputs, 3, node, 'B');
  checkDType(a, Q8, node, 'A');
  checkDType(b, Q8, node, 'B');
  if (a.dims.length !== 2 || b.dims.length !== 2)
    throw new GraphError(`A and B must be 2-D, got [${a.dims.join(', ')}] and [${b.dims.join(', ')}]`, node);
  const transA = attrInt(node, 'transA', 0) !== 0;
  const transB = attrInt(node, 'transB', 0) !== 0;
  const alpha = attrFloat(node, 'alpha', 1);
  const [M, K] = transA ? [a.dims[1], a.dims[0]] : a.dims;
  const [Kb, N] = transB ? [b.dims[1], b.dims[0]] : b.dims;
  if (K !== Kb) throw new GraphError(`inner dims differ: A [${a.dims.join(', ')}]${transA ? 'ᵀ' : ''}, B [${b.dims.join(', ')}]${transB ? 'ᵀ' : ''}`, node);
  const aScale = scalar(requireInput(inputs, 1, node, 'a_scale'), node, 'a_scale');
  const azp = inputs[2] ? scalar(inputs[2], node, 'a_zero_point') : 0;
  const bScale = memo(ctx, 'bscale', [4], () => perColumn(floatValues(requireInput(inputs, 4, node, 'b_scale'), node, 'b_scale'), N, ctx, 'b_scale'));
  const Kp = padK(K);
  // B - b_zp as [N, Kp] int16 (the gemm's NT form), cached while B and its zero point are constants
  const Bp = memo(ctx, 'b', [3, 5], () => {
    const bs = numArray(b, node, 'B');
    const z = inputs[5] ? perColumn(numArray(inputs[5], node, 'b_zero_point'), N, ctx, 'b_zero_point') : new Float64Array(N);
    const out = new Int16Array(N * Kp);
    for (let n = 0; n < N; n++)
      for (let k = 0; k < K; k++) out[n * Kp + k] = bs[transB ? n * K + k : k * N + n] - z[n];
    return out;
  });
  let bias: Int32Array | undefined;
  let biasRows = 1;
  let biasCols = 1;
  if (inputs[6]) {
    const c = inputs[6];
    checkDType(c, ['int32'], node, 'C');
    bias = c.data as Int32Array;
    const d = c.dims;
    // unidirectional broadcast to [M, N]: scalar, [N], [1, N], [M, 1] or [M, N]
    biasCols = d.length === 0 ? 1 : d[d.length - 1];
    biasRows = d.length === 2 ? d[0] : 1;
    const ok = bias.length === biasRows * biasCols && (biasCols === 1 || biasCols === N) && (biasRows === 1 || biasRows === M);
    if (!ok) throw new GraphError(`C of shape [${d.join(', ')}] does not broadcast to [${M}, ${N}]`, node);
  }

  const as = numArray(a, node, 'A');
  const prov = intGemmProvider();
  let C: Int32Array;
  let ldc: number;
  if (prov) {
    const Bn = memo(ctx, `bnat:${prov.name}`, [3, 5], () => prov.packB(Bp, 0, Kp, N, K));
    const d = a.dtype === 'int8' ? 128 : 0;
    let A: Uint8Array;
    if (transA) {
      A = new Uint8Array(M * K);
      for (let m = 0; m < M; m++) for (let k = 0; k < K; k++) A[m * K + k] = as[k * M + m] + d;
    } else A = asU8(as, d !== 0);
    C = new Int32Array(M * N);
    ldc = N;
    prov.gemmU8(M, N, K, A, K, azp + d, Bn, C, ldc, false);
  } else {
    const buf = gemmBuffers(M, N, K);
    for (let m = 0; m < M; m++) {
      const row = m * Kp;
      for (let k = 0; k < K; k++) buf.A[row + k] = as[transA ? k * M + m : m * K + k] - azp;
      buf.A.fill(0, row + K, row + Kp);
      buf.C.fill(0, m * buf.ldc, m * buf.ldc + N);
    }
    buf.B.set(Bp);
    buf.run();
    C = buf.C;
    ldc = buf.ldc;
  }
  const yScaleT = inputs[7];
  // a per-column bias goes into the provider's requantization table instead
  const colBias = biasRows === 1 && yScaleT && prov?.requant ? bias : undefined;
  if (bias && !colBias)
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++)
        C[m * ldc + n] = (C[m * ldc + n] + bias[(biasRows === 1 ? 0 : m) * biasCols + (biasCols === 1 ? 0 : n)]) | 0;

  const ab = Math.fround(alpha * aScale);
  if (!yScaleT) {
    // float output: float32(acc + C) * float32(alpha * a_scale * b_scale)
    const y = new Float32Array(M * N);
    for (let n = 0; n < N; n++) {
      const s = Math.fround(ab * bScale[n]);
      for (let m = 0; m < M; m++) y[m * N + n] = Math.fround(Math.fround(C[m * ldc + n]) * s);
    }
    return { dtype: 'float32', dims: [M, N], data: y };
  }
  const yScale = scalar(yScaleT, node, 'y_scale');
  const yzpT = inputs[8];
  const yzp = yzpT ? scalar(yzpT, node, 'y_zero_point') : 0;
  const dtype = yzpT ? yzpT.dtype : a.dtype;
  const { qmin, qmax } = outRange(dtype, ctx);
  const params = memo(ctx, 'mult', [1, 4, 7], () => ({
    mult: Float32Array.from(bScale, (bs) => Math.fround(Math.fround(ab * bs) / yScale)),
    fixed: fixedMultipliers(ctx, Array.from(bScale, (bs) => (alpha * aScale * bs) / yScale)),
  }));
  const out = outputTensor(dtype, [M, N]);
  const y = out.data as IntArray;
  if (prov?.requant) {
    const table = memo(ctx, 'rq', [1, 4, 6, 7], () =>
      requantTable(N, params.mult, colBias && Int32Array.from({ length: N }, (_, n) => colBias[biasCols === 1 ? 0 : n]), params.fixed));
    prov.requant(C, M, N, ldc, { table, mode: requantMode(params.fixed), zp: yzp, qmin, qmax }, y as Int8Array | Uint8Array);
    return out;
  }
  const lo = qmin - yzp;
  const hi = qmax - yzp;
  for (let m = 0; m < M; m++) {
    const src = m * ldc;
    const dst = m * N;
    if (params.fixed)
      for (let n = 0; n < N; n++)
        requantFixed(C, src + n, 1, params.fixed.multiplier[n], params.fixed.shift[n], yzp, qmin, qmax, y, dst + n, 0, params.fixed.single);
    else
      for (let n = 0; n < N; n++) y[dst + n] = rint(Math.min(Math.max(Math.fround(Math.fround(C[src + n]) * params.mult[n]), lo), hi)) + yzp;
  }
  return out;
}

export const qgemmKernels: IntKernel[] = [
  { op: 'QGemm', domain: 'com.microsoft', clampable: true, run: (inputs, ctx) => [qgemm(inputs, ctx)] },
];
