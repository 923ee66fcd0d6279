// Loads build/Release/qatkit_native.node (built by scripts/build-native.mjs).
// QATKIT_NATIVE_PATH points at another build of it.
import type { TensorInfo } from '@tensorflow/tfjs-core';
import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

type F32 = Float32Array;
type F32n = Float32Array | null;

export interface NativeAddon {
  info(): { isa: string; bestIsa: string; threads: number };
  setIsa(isa: 'avx512' | 'avx2' | 'generic'): string;
  setThreads(n: number): void;
  matmul(a: F32, b: F32, c: F32, batch: number, m: number, n: number, k: number, transA: boolean, transB: boolean,
    strideA: number, strideB: number): void;
  biasAct(c: F32, m: number, n: number, bias: F32n, act: number, alpha: number, prelu: F32n): void;
  conv(op: number, dims: Int32Array, in0: F32, in1: F32n, out: F32): void;
  binary(op: number, a: F32, b: F32, out: F32, dims: Int32Array): void;
  unary(op: number, x: F32, y: F32, alpha: number): void;
  reduce(op: number, x: F32, out: F32, outer: number, mid: number, inner: number): void;
  batchNorm(x: F32, mean: F32, variance: F32, offset: F32n, scale: F32n, eps: number, y: F32, c: number): void;
  softmax(x: F32, y: F32, r: number, c: number): void;
  fakeQuant(x: F32, y: F32, scale: F32, zp: F32, nch: number, inner: number, qmin: number, qmax: number,
    mn: F32n, mx: F32n): void;
  fakeQuantGrad(dy: F32, x: F32, dx: F32, scale: F32, zp: F32, nch: number, inner: number, qmin: number,
    qmax: number, dscale: F32n, dzp: F32n): void;
  minMax(x: F32, nch: number, inner: number, mn: F32, mx: F32): void;
  transpose(x: Float32Array | Int32Array, out: Float32Array | Int32Array, shape: Int32Array, perm: Int32Array): void;
  compare(op: number, a: F32, b: F32, out: Uint8Array, dims: Int32Array): void;
  logical(op: number, a: Uint8Array, b: Uint8Array | null, out: Uint8Array): void;
  select(cond: Uint8Array, t: F32, e: F32, out: F32): void;
  clip(x: F32, y: F32, lo: number, hi: number): void;
  batchNormTrain(x: F32, c: number, scale: F32n, offset: F32n, eps: number, y: F32n, mean: F32, variance: F32, invStd: F32): void;
  channelAffine(x: F32, mul: F32, add: F32, y: F32, c: number, relu: boolean): void;
  /** one SGD / Adam update (native/train_ops.h) */
  sgdStep(p: F32, g: F32, buf: F32n, pOut: F32, bufOut: F32n, lr: number, wd: number, mu: number, nesterov: boolean): void;
  adamStep(p: F32, g: F32, m: F32, v: F32, pOut: F32, mOut: F32, vOut: F32, decay: number, wd: number, oneMinusB1: number,
    b2: number, oneMinusB2: number, bc2Sqrt: number, eps: number, stepSize: number): void;
  /** y = x / s per channel of the last axis, and its backward; tfjs's Relu gradient (native/train_ops.h) */
  channelDiv(x: F32, s: F32, y: F32, c: number): void;
  channelDivGrad(dy: F32, x: F32, s: F32, dx: F32, ds: F32, c: number): void;
  reluGrad(dy: F32, x: F32, dx: F32): void;
  /** y = relu(a + b), a and b of one size */
  addRelu(a: F32, b: F32, y: F32): void;
  /** ConvBn's folded weight w[o, k] * s[o] (O = s.length) and its backward */
  foldWeight(w: F32, s: F32, y: F32): void;
  foldWeightGrad(dy: F32, w: F32, s: F32, dw: F32, ds: F32): void;
  /** fakeQuantGrad's dx alone (straight-through), without the scale and zero-point sums; relu: of fake-quant(relu(x)) */
  fakeQuantSteGrad(dy: F32, x: F32, dx: F32, scale: F32, zp: F32, nch: number, inner: number, qmin: number, qmax: number,
    relu: boolean): void;
  /** fake quantization of relu(x) */
  reluFakeQuant(x: F32, y: F32, scale: F32, zp: F32, nch: number, inner: number, qmin: number, qmax: number): void;
  /** int8 GEMM of the integer engine (native/int8_gemm.cc); absent from addons built before it */
  int8Gemm?(a: Uint8Array, aZp: number, b: Int8Array, bZp: Int32Array | null, bias: Int32Array | null,
    m: number, n: number, k: number, c: Int32Array): void;
  int8GemmPacked?(a: Uint8Array, lda: number, aZp: number | Int32Array, bPacked: Uint8Array, m: number, n: number, k: number,
    c: Int32Array, ldc: number, transC: boolean): void;
  int8ConvPacked?(x: Uint8Array | Int8Array, xZp: number, geo: Int32Array, bPacked: Uint8Array, oc: number, c: Int32Array,
    ldc: number): void;
  int8PackedSize?(n: number, k: number): number;
  int8PackB?(b: Int16Array, ldb: number, n: number, k: number, out: Uint8Array): void;
  int8Info?(): { isa: string; packedIsa: string };
  /** the integer engine's fused kernels (native/int8_ops.cc); int8OpsAvailable: the AVX-512 VNNI ones run here */
  int8OpsAvailable?(): boolean;
  int8ConvPackedSize?(oc: number, cg: number, kh: number, kw: number): number;
  int8ConvPack?(b: Int16Array, ldb: number, oc: number, cg: number, kh: number, kw: number, out: Uint8Array): void;
  int8QConv?(x: Uint8Array | Int8Array, xZp: number, geo: Int32Array, packed: Uint8Array, table: Int32Array, mode: number,
    zp: number, qmin: number, qmax: number, y: Uint8Array | Int8Array | Int32Array): void;
  int8Requant?(c: Int32Array, m: number, n: number, ldc: number, table: Int32Array, nt: number, mode: number, zp: number,
    qmin: number, qmax: number, y: Uint8Array | Int8Array): void;
  int8Quantize?(x: Float32Array, scale: number, zp: number, qmin: number, qmax: number, y: Uint8Array | Int8Array): void;
  int8MaxPool?(x: Uint8Array | Int8Array, geo: Int32Array, y: Uint8Array | Int8Array): void;
  int8QAdd?(a: Uint8Array | Int8Array, b: Uint8Array | Int8Array, spec: Float64Array, y: Uint8Array | Int8Array): void;
  int8PlaneSums?(x: Uint8Array | Int8Array, s: number, out: Int32Array): void;
  batchNormTrainGrad(dy: F32, x: F32, c: number, mean: F32, invStd: F32, scale: F32n, dx: F32, dScale: F32, dOffset: F32, ry: F32n): void;
}

/** What the fused kernels (fakequant_, batchnorm_, train_kernels.ts) use of the native backend that runs them. */
export interface AddonBackend {
  addon: NativeAddon;
  f32(t: TensorInfo): Float32Array;
  out(shape: number[], v: Float32Array): TensorInfo;
  alloc(n: number): Float32Array;
}

let cached: NativeAddon | null = null;

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    dir = dirname(dir);
  }
  throw new Error('could not locate the qatkit package root (binding.gyp)');
}

/** Loads the addon or throws an Error saying why. */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  const path = process.env.QATKIT_NATIVE_PATH || join(findRoot(), 'build', 'Release', 'qatkit_native.node');
  if (!existsSync(path)) throw new Error(`native addon not built (${path} missing)`);
  const require = createRequire(import.meta.url);
  cached = require(path) as NativeAddon;
  return cached;
}
