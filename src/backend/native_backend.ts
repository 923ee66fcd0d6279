// The 'qatkit-native' tfjs backend: tfjs's MathBackendCPU (same Float32Array storage, every
// cpu kernel inherited) with the kernels that carry a training step's time replaced by
// multithreaded AVX-512/AVX2 C++ ones (native/). Anything a native kernel does not cover
// (other dtypes, NCHW, unusual broadcasts) goes to the inherited cpu kernel.
import * as tf from '@tensorflow/tfjs-core';
import { MathBackendCPU } from '@tensorflow/tfjs-backend-cpu';
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import { loadAddon, type NativeAddon } from './native_addon.js';
import { fakeQuantKernelConfigs } from './fakequant_kernels.js';
import { batchNormKernelConfigs } from './batchnorm_kernels.js';
import { trainKernelConfigs } from './train_kernels.js';

export const NATIVE_BACKEND_NAME = 'qatkit-native';

/** Upper bound on the bytes of free output buffers kept for reuse (env QATKIT_POOL_MB). */
const POOL_CAP = Number(process.env.QATKIT_POOL_MB ?? 256) * 2 ** 20;

export class NativeBackend extends MathBackendCPU {
  readonly addon: NativeAddon;
  // Output buffers are recycled: a fresh buffer per kernel output costs more than a typical
  // element-wise kernel (malloc, GC pressure, first-touch page faults). A buffer we
  // allocated goes back to the pool when the last data entry using it is disposed (cpu
  // kernels may alias it, e.g. Slice returns subarray views), and readSync hands out copies
  // of pooled memory, so nothing outside the backend can see a buffer being reused.
  private readonly live = new WeakMap<ArrayBufferLike, number>();
  private readonly pool = new Map<number, ArrayBufferLike[]>();
  private pooledBytes = 0;

  constructor(addon: NativeAddon) {
    super();
    this.addon = addon;
    // MathBackendCPU greets Node users with advice to install tfjs-node; not for us.
    (this as unknown as { firstUse: boolean }).firstUse = false;
  }
  f32(t: TensorInfo): Float32Array {
    return this.data.get(t.dataId).values as Float32Array;
  }
  out(shape: number[], values: Float32Array): TensorInfo {
    return this.makeTensorInfo(shape, 'float32', values);
  }
  private buffer(bytes: number): ArrayBufferLike | null {
    if (bytes === 0) return null;
    const free = this.pool.get(bytes);
    if (free && free.length) {
      this.pooledBytes -= bytes;
      return free.pop()!;
    }
    const b = Buffer.allocUnsafeSlow(bytes); // uninitialized: native kernels write every element
    if (b.byteOffset !== 0 || b.buffer.byteLength !== bytes) return new ArrayBuffer(bytes);
    this.live.set(b.buffer, 0);
    return b.buffer;
  }
  /** An uninitialized output buffer of n floats. */
  alloc(n: number): Float32Array {
    const ab = this.buffer(n * 4);
    return ab ? new Float32Array(ab, 0, n) : new Float32Array(0);
  }
  allocU8(n: number): Uint8Array {
    const ab = this.buffer(n);
    return ab ? new Uint8Array(ab, 0, n) : new Uint8Array(0);
  }
  private track(values: unknown, delta: number): void {
    const buf = (values as { buffer?: ArrayBufferLike } | null)?.buffer;
    if (!buf) return;
    const n = this.live.get(buf);
    if (n === undefined) return;
    this.live.set(buf, n + delta);
    if (n + delta === 0 && this.pooledBytes + buf.byteLength <= POOL_CAP) {
      const list = this.pool.get(buf.byteLength);
      if (list) list.push(buf);
      else this.pool.set(buf.byteLength, [buf]);
      this.pooledBytes += buf.byteLength;
    }
  }
  override write(values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType): tf.DataId {
    const id = super.write(values, shape, dtype);
    this.track(values, +1);
    return id;
  }
  override move(dataId: tf.DataId, values: tf.backend_util.BackendValues, shape: number[], dtype: tf.DataType, refCount: number): void {
    super.move(dataId, values, shape, dtype, refCount);
    this.track(values, +1);
  }
  override disposeData(dataId: tf.DataId, force = false): boolean {
    const entry = this.data.has(dataId) ? this.data.get(dataId) : undefined;
    const r = super.disposeData(dataId, force);
    if (entry && !this.data.has(dataId)) this.track(entry.values, -1);
    return r;
  }
  override readSync(dataId: tf.DataId): tf.backend_util.BackendValues {
    const v = super.readSync(dataId) as ArrayBufferView & { slice?: () => unknown };
    return (v && this.live.has(v.buffer) && typeof v.slice === 'function' ? v.slice() : v) as tf.backend_util.BackendValues;
  }
  override dispose(): void {
    this.pool.clear();
    this.pooledBytes = 0;
    super.dispose();
  }
}

type Args = { inputs: Parameters<KernelFunc>[0]['inputs']; attrs: NamedAttrMap };
const size = (s: readonly number[]) => s.reduce((a, b) => a * b, 1);

function cpu(name: string): KernelFunc {
  const k = tf.getKernel(name, 'cpu');
  if (!k) throw new Error(`qatkit-native: cpu kernel ${name} missing`);
  return k.kernelFunc;
}

const fallbacks = new Map<string, number>();

/** How often each overridden kernel handed a call to the cpu kernel (tests, tuning). */
export function nativeFallbackCounts(): Map<string, number> {
  return new Map(fallbacks);
}

/** A native kernel that hands the call to the cpu kernel when `impl` returns null. */
function kernel(name: string, impl: (be: NativeBackend, a: Args) => TensorInfo | TensorInfo[] | null): KernelConfig {
  const fallback = cpu(name);
  return {
    kernelName: name,
    backendName: NATIVE_BACKEND_NAME,
    kernelFunc: (args) => {
      const r = impl(args.backend as NativeBackend, { inputs: args.inputs, attrs: args.attrs ?? {} });
      if (r) return r;
      fallbacks.set(name, (fallbacks.get(name) ?? 0) + 1);
      return fallback(args);
    },
  };
}

const allF32 = (...ts: (TensorInfo | undefined)[]) => ts.every((t) => t == null || t.dtype === 'float32');

// ------------------------------------------------------------------ matmul
const ACT: Record<string, number> = { linear: 0, relu: 1, relu6: 2, elu: 3, leakyrelu: 4, sigmoid: 5, prelu: 6 };

function batchMatMulImpl(be: NativeBackend, a: TensorInfo, b: TensorInfo, transA: boolean, transB: boolean): TensorInfo | null {
  if (!allF32(a, b) || a.shape.length < 2 || b.shape.length < 2) return null;
  const ra = a.shape.length, rb = b.shape.length;
  const m = transA ? a.shape[ra - 1] : a.shape[ra - 2], ka = transA ? a.shape[ra - 2] : a.shape[ra - 1];
  const kb = transB ? b.shape[rb - 1] : b.shape[rb - 2], n = transB ? b.shape[rb - 2] : b.shape[rb - 1];
  if (ka !== kb) return null;
  const ba = a.shape.slice(0, -2), bb = b.shape.slice(0, -2);
  const na = size(ba), nb = size(bb);
  let outBatch: number[];
  if (na === nb && ba.length === bb.length && ba.every((v, i) => v === bb[i])) outBatch = ba;
  else if (nb === 1) outBatch = ba.length >= bb.length ? ba : bb;
  else if (na === 1) outBatch = bb.length >= ba.length ? bb : ba;
  else return null;
  const batch = Math.max(na, nb);
  const out = be.alloc(batch * m * n);
  be.addon.matmul(be.f32(a), be.f32(b), out, batch, m, n, ka, transA, transB, na === 1 ? 0 : m * ka, nb === 1 ? 0 : ka * n);
  return be.out([...outBatch, m, n], out);
}

const batchMatMul = kernel('BatchMatMul', (be, { inputs, attrs }) => {
  const { transposeA, transposeB } = attrs as { transposeA: boolean; transposeB: boolean };
  return batchMatMulImpl(be, inputs.a!, inputs.b!, transposeA, transposeB);
});

/** Applies bias and activation in place to a [rows, n] output; false if not expressible. */
function epilogue(be: NativeBackend, out: Float32Array, rows: number, n: number, bias: TensorInfo | undefined,
  activation: string | undefined, alpha: number | undefined, prelu: TensorInfo | undefined): boolean {
  const act = ACT[activation ?? 'linear'];
  if (act == null) return false;
  if (bias && (!allF32(bias) || (size(bias.shape) !== n && size(bias.shape) !== 1))) return false;
  if (act === 6 && (!prelu || !allF32(prelu) || (size(prelu.shape) !== n && size(prelu.shape) !== 1))) return false;
  let bv: Float32Array | null = bias ? be.f32(bias) : null;
  if (bv && bv.length === 1 && n !== 1) bv = new Float32Array(n).fill(bv[0]);
  be.addon.biasAct(out, rows, n, bv, act, alpha ?? 0.2, act === 6 ? be.f32(prelu!) : null);
  return true;
}

const fusedMatMul = kernel('_FusedMatMul', (be, { inputs, attrs }) => {
  const { a, b, bias, preluActivationWeights } = inputs;
  const { transposeA, transposeB, activation, leakyreluAlpha } = attrs as {
    transposeA: boolean; transposeB: boolean; activation: string; leakyreluAlpha?: number };
  const n = transposeB ? b!.shape[b!.shape.length - 2] : b!.shape[b!.shape.length - 1];
  // Check the epilogue is expressible before doing the GEMM.
  if (ACT[activation ?? 'linear'] == null) return null;
  if (bias && (!allF32(bias) || (size(bias.shape) !== n && size(bias.shape) !== 1))) return null;
  if (activation === 'prelu' && (!preluActivationWeights || (size(preluActivationWeights.shape) !== n && size(preluActivationWeights.shape) !== 1))) return null;
  const r = batchMatMulImpl(be, a!, b!, transposeA, transposeB);
  if (!r) return null;
  const out = be.f32(r);
  epilogue(be, out, out.length / n, n, bias, activation, leakyreluAlpha, preluActivationWeights);
  return r;
});

// ------------------------------------------------------------------ convolutions and pools
const CONV = { fwd: 0, dx: 1, dw: 2, dwFwd: 3, dwDx: 4, dwDw: 5, maxPool: 6, maxPoolGrad: 7, avgPool: 8, avgPoolGrad: 9 };

function dims(ci: tf.backend_util.Conv2DInfo): Int32Array {
  return Int32Array.from([ci.batchSize, ci.inHeight, ci.inWidth, ci.inChannels, ci.outHeight, ci.outWidth,
    ci.outChannels, ci.filterHeight, ci.filterWidth, ci.strideHeight, ci.strideWidth, ci.dilationHeight,
    ci.dilationWidth, ci.padInfo.top, ci.padInfo.left]);
}

function convInfo(xShape: number[], fShape: number[], a: NamedAttrMap, depthwise: boolean): tf.backend_util.Conv2DInfo | null {
  const { strides, pad, dataFormat, dilations, dimRoundingMode } = a as {
    strides: number | [number, number]; pad: 'same'; dataFormat?: string; dilations?: number | [number, number];
    dimRoundingMode?: 'round' };
  if (dataFormat != null && dataFormat !== 'NHWC') return null;
  return tf.backend_util.computeConv2DInfo(xShape as [number, number, number, number],
    fShape as [number, number, number, number], strides, dilations ?? 1, pad, dimRoundingMode, depthwise, 'channelsLast');
}

function convForward(depthwise: boolean, fused: boolean) {
  const name = depthwise ? (fused ? 'FusedDepthwiseConv2D' : 'DepthwiseConv2dNative') : (fused ? 'FusedConv2D' : 'Conv2D');
  return kernel(name, (be, { inputs, attrs }) => {
    const { x, filter, bias, preluActivationWeights } = inputs;
    if (!allF32(x, filter)) return null;
    const ci = convInfo(x!.shape, filter!.shape, attrs, depthwise);
    if (!ci) return null;
    const co = ci.outChannels;
    const { activation, leakyreluAlpha } = attrs as { activation?: string; leakyreluAlpha?: number };
    if (fused) {
      if (ACT[activation ?? 'linear'] == null) return null;
      if (bias && (!allF32(bias) || (size(bias.shape) !== co && size(bias.shape) !== 1))) return null;
      if (activation === 'prelu' && (!preluActivationWeights || !allF32(preluActivationWeights) ||
        (size(preluActivationWeights.shape) !== co && size(preluActivationWeights.shape) !== 1))) return null;
    }
    const out = be.alloc(size(ci.outShape));
    be.addon.conv(depthwise ? CONV.dwFwd : CONV.fwd, dims(ci), be.f32(x!), be.f32(filter!), out);
    if (fused) epilogue(be, out, out.length / co, co, bias, activation, leakyreluAlpha, preluActivationWeights);
    return be.out(ci.outShape, out);
  });
}

const conv2DBackpropInput = kernel('Conv2DBackpropInput', (be, { inputs, attrs }) => {
  const { dy, filter } = inputs;
  if (!allF32(dy, filter)) return null;
  const { inputShape } = attrs as { inputShape: number[] };
  const ci = convInfo(inputShape, filter!.shape, { ...attrs, dilations: 1 }, false);
  if (!ci) return null;
  const out = be.alloc(size(inputShape));
  be.addon.conv(CONV.dx, dims(ci), be.f32(dy!), be.f32(filter!), out);
  return be.out(inputShape.slice(), out);
});

const conv2DBackpropFilter = kernel('Conv2DBackpropFilter', (be, { inputs, attrs }) => {
  const { x, dy } = inputs;
  if (!allF32(x, dy)) return null;
  const { filterShape } = attrs as { filterShape: number[] };
  const ci = convInfo(x!.shape, filterShape, { ...attrs, dilations: 1 }, false);
  if (!ci) return null;
  const out = be.alloc(size(filterShape));
  be.addon.conv(CONV.dw, dims(ci), be.f32(x!), be.f32(dy!), out);
  return be.out(filterShape.slice(), out);
});

const depthwiseBackpropInput = kernel('DepthwiseConv2dNativeBackpropInput', (be, { inputs, attrs }) => {
  const { dy, filter } = inputs;
  if (!allF32(dy, filter)) return null;
  const { inputShape } = attrs as { inputShape: number[] };
  const ci = convInfo(inputShape, filter!.shape, attrs, true);
  if (!ci) return null;
  const out = be.alloc(size(inputShape));
  be.addon.conv(CONV.dwDx, dims(ci), be.f32(dy!), be.f32(filter!), out);
  return be.out(inputShape.slice(), out);
});

const depthwiseBackpropFilter = kernel('DepthwiseConv2dNativeBackpropFilter', (be, { inputs, attrs }) => {
  const { x, dy } = inputs;
  if (!allF32(x, dy)) return null;
  const { filterShape } = attrs as { filterShape: number[] };
  const ci = convInfo(x!.shape, filterShape, attrs, true);
  if (!ci) return null;
  const out = be.alloc(size(filterShape));
  be.addon.conv(CONV.dwDw, dims(ci), be.f32(x!), be.f32(dy!), out);
  return be.out(filterShape.slice(), out);
});

function poolInfo(xShape: number[], a: NamedAttrMap): tf.backend_util.Conv2DInfo {
  const { filterSize, strides, pad, dimRoundingMode } = a as {
    filterSize: number | [number, number]; strides: number | [number, number]; pad: 'same'; dimRoundingMode?: 'round' };
  return tf.backend_util.computePool2DInfo(xShape as [number, number, number, number], filterSize, strides, 1, pad, dimRoundingMode);
}

function pool(name: string, op: number) {
  return kernel(name, (be, { inputs, attrs }) => {
    const { x } = inputs;
    if (!allF32(x) || x!.shape.length !== 4) return null;
    const ci = poolInfo(x!.shape, attrs);
    if (ci.filterHeight === 1 && ci.filterWidth === 1 && ci.strideHeight === 1 && ci.strideWidth === 1) return null;
    const out = be.alloc(size(ci.outShape));
    be.addon.conv(op, dims(ci), be.f32(x!), null, out);
    return be.out(ci.outShape, out);
  });
}

const maxPoolGrad = kernel('MaxPoolGrad', (be, { inputs, attrs }) => {
  const { dy, input } = inputs;
  if (!allF32(dy, input)) return null;
  const ci = poolInfo(input!.shape, attrs);
  const out = be.alloc(size(input!.shape));
  be.addon.conv(CONV.maxPoolGrad, dims(ci), be.f32(dy!), be.f32(input!), out);
  return be.out(input!.shape.slice(), out);
});

// Note: the exact gradient of AvgPool (each window divides by its count of valid pixels);
// tfjs's cpu kernel divides by the full window size, which differs at 'same'-padded borders.
const avgPoolGrad = kernel('AvgPoolGrad', (be, { inputs, attrs }) => {
  const { dy, input } = inputs;
  if (!allF32(dy, input)) return null;
  const ci = poolInfo(input!.shape, attrs);
  const out = be.alloc(size(input!.shape));
  be.addon.conv(CONV.avgPoolGrad, dims(ci), be.f32(dy!), null, out);
  return be.out(input!.shape.slice(), out);
});

// ------------------------------------------------------------------ element-wise
/** Views a broadcast binary op as out[R, M, C] where each operand is full or broadcast along
 *  each of the three groups of dims; returns [R, M, C, as0, as1, as2, bs0, bs1, bs2] (element
 *  strides, 0 = broadcast) or null if that takes more than three groups. */
export function broadcastDims(aShape: number[], bShape: number[], outShape: number[]): Int32Array | null {
  const rank = outShape.length;
  const pad = (s: number[]) => [...new Array(rank - s.length).fill(1), ...s];
  const sa = pad(aShape), sb = pad(bShape);
  // Merge consecutive dims where (a full?, b full?) agree; size-1 dims join any group.
  const groups: { size: number; af: boolean; bf: boolean }[] = [];
  for (let i = 0; i < rank; i++) {
    if (outShape[i] === 1) continue;
    const af = sa[i] !== 1, bf = sb[i] !== 1;
    const g = groups[groups.length - 1];
    if (g && g.af === af && g.bf === bf) g.size *= outShape[i];
    else groups.push({ size: outShape[i], af, bf });
  }
  if (groups.length > 3) return null;
  while (groups.length < 3) groups.unshift({ size: 1, af: false, bf: false });
  const strides = (full: (g: (typeof groups)[0]) => boolean) => {
    const st = [0, 0, 0];
    let acc = 1;
    for (let i = 2; i >= 0; i--) {
      if (full(groups[i])) {
        st[i] = acc;
        acc *= groups[i].size;
      }
    }
    return st;
  };
  const as = strides((g) => g.af), bs = strides((g) => g.bf);
  if (as[2] > 1 || bs[2] > 1) return null;
  return Int32Array.from([groups[0].size, groups[1].size, groups[2].size, ...as, ...bs]);
}

const BIN: Record<string, number> = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3, Maximum: 4, Minimum: 5, SquaredDifference: 6 };

function binaryKernel(name: string) {
  const op = BIN[name];
  return kernel(name, (be, { inputs }) => {
    const { a, b } = inputs;
    if (!allF32(a, b)) return null;
    const outShape = tf.backend_util.assertAndGetBroadcastShape(a!.shape, b!.shape);
    const n = size(outShape);
    if (n === 0) return be.out(outShape, new Float32Array(0));
    const d = broadcastDims(a!.shape, b!.shape, outShape);
    if (!d) return null;
    const out = be.alloc(n);
    be.addon.binary(op, be.f32(a!), be.f32(b!), out, d);
    return be.out(outShape, out);
  });
}

const UN: Record<string, number> = { Relu: 0, Relu6: 1, Step: 2, Neg: 3, Exp: 4, Log: 5, Sqrt: 6, Rsqrt: 7, Square: 8,
  Abs: 9, Sigmoid: 10, Tanh: 11, Elu: 12, LeakyRelu: 13, Reciprocal: 14, Log1p: 15, Softplus: 16, Round: 17,
  Floor: 18, Ceil: 19 };

function unaryKernel(name: string) {
  const op = UN[name];
  return kernel(name, (be, { inputs, attrs }) => {
    const x = inputs.x!;
    if (!allF32(x)) return null;
    const xv = be.f32(x);
    const out = be.alloc(xv.length);
    const alpha = (attrs as { alpha?: number }).alpha ?? 0;
    be.addon.unary(op, xv, out, alpha);
    return be.out(x.shape.slice(), out);
  });
}

const clipByValue = kernel('ClipByValue', (be, { inputs, attrs }) => {
  const x = inputs.x!;
  if (!allF32(x)) return null;
  const { clipValueMin, clipValueMax } = attrs as { clipValueMin: number; clipValueMax: number };
  const xv = be.f32(x);
  const out = be.alloc(xv.length);
  be.addon.clip(xv, out, clipValueMin, clipValueMax);
  return be.out(x.shape.slice(), out);
});

const CMP: Record<string, number> = { Greater: 0, GreaterEqual: 1, Less: 2, LessEqual: 3, Equal: 4, NotEqual: 5 };

function compareKernel(name: string) {
  const op = CMP[name];
  return kernel(name, (be, { inputs }) => {
    const { a, b } = inputs;
    if (!allF32(a, b)) return null;
    const outShape = tf.backend_util.assertAndGetBroadcastShape(a!.shape, b!.shape);
    const n = size(outShape);
    const d = n === 0 ? null : broadcastDims(a!.shape, b!.shape, outShape);
    if (!d) return null;
    const out = be.allocU8(n);
    be.addon.compare(op, be.f32(a!), be.f32(b!), out, d);
    return be.makeTensorInfo(outShape, 'bool', out);
  });
}

const LOGIC: Record<string, number> = { LogicalAnd: 0, LogicalOr: 1, LogicalNot: 2 };

function logicalKernel(name: string) {
  const op = LOGIC[name];
  return kernel(name, (be, { inputs }) => {
    const a = op === 2 ? inputs.x! : inputs.a!, b = op === 2 ? undefined : inputs.b!;
    const same = (t?: TensorInfo) => t == null || (t.dtype === 'bool' && t.shape.length === a.shape.length && t.shape.every((v, i) => v === a.shape[i]));
    if (a.dtype !== 'bool' || !same(b) || size(a.shape) === 0) return null;
    const av = be.data.get(a.dataId).values as Uint8Array;
    const out = be.allocU8(av.length);
    be.addon.logical(op, av, b ? (be.data.get(b.dataId).values as Uint8Array) : null, out);
    return be.makeTensorInfo(a.shape.slice(), 'bool', out);
  });
}

const select = kernel('Select', (be, { inputs }) => {
  const { condition, t, e } = inputs;
  if (!allF32(t, e) || condition!.dtype !== 'bool') return null;
  const n = size(t!.shape);
  if (n === 0 || size(condition!.shape) !== n || size(e!.shape) !== n) return null;
  const out = be.alloc(n);
  be.addon.select(be.data.get(condition!.dataId).values as Uint8Array, be.f32(t!), be.f32(e!), out);
  return be.out(t!.shape.slice(), out);
});

const transpose = kernel('Transpose', (be, { inputs, attrs }) => {
  const x = inputs.x!;
  if (x.dtype !== 'float32' && x.dtype !== 'int32') return null;
  const n = size(x.shape);
  if (n === 0) return null;
  const perm = (attrs as { perm: number[] }).perm;
  const xv = be.data.get(x.dataId).values as Float32Array | Int32Array;
  const out = be.alloc(n);
  be.addon.transpose(xv, out, Int32Array.from(x.shape), Int32Array.from(perm));
  const shape = perm.map((p) => x.shape[p]);
  return x.dtype === 'int32'
    ? be.makeTensorInfo(shape, 'int32', new Int32Array(out.buffer, out.byteOffset, n))
    : be.out(shape, out);
});

// ------------------------------------------------------------------ reductions, batch norm, softmax
const RED: Record<string, number> = { Sum: 0, Max: 1, Min: 2, Mean: 3 };

function reduceKernel(name: string) {
  const op = RED[name];
  return kernel(name, (be, { inputs, attrs }) => {
    const x = inputs.x!;
    if (!allF32(x)) return null;
    // Max names its axes 'reductionIndices'; Sum, Min and Mean call them 'axis'.
    const { axis, reductionIndices, keepDims } = attrs as { axis?: number | number[]; reductionIndices?: number | number[]; keepDims: boolean };
    const rank = x.shape.length;
    const axes = [...new Set(tf.util.parseAxisParam((axis ?? reductionIndices)!, x.shape))].sort((p, q) => p - q);
    if (axes.length === 0 || rank === 0) return null;
    for (let i = 1; i < axes.length; i++) if (axes[i] !== axes[i - 1] + 1) return null; // not one block
    const a0 = axes[0], a1 = axes[axes.length - 1];
    const outer = size(x.shape.slice(0, a0)), mid = size(x.shape.slice(a0, a1 + 1)), inner = size(x.shape.slice(a1 + 1));
    if (mid === 0) return null;
    const out = be.alloc(outer * inner);
    be.addon.reduce(op, be.f32(x), out, outer, mid, inner);
    const shape = keepDims ? x.shape.map((d, i) => (i >= a0 && i <= a1 ? 1 : d)) : x.shape.filter((_, i) => i < a0 || i > a1);
    return be.out(shape, out);
  });
}

const fusedBatchNorm = kernel('FusedBatchNorm', (be, { inputs, attrs }) => {
  const { x, mean, variance, offset, scale } = inputs;
  if (!allF32(x, mean, variance, offset, scale) || x!.shape.length === 0) return null;
  const c = x!.shape[x!.shape.length - 1];
  const ok = (t?: TensorInfo) => t == null || size(t.shape) === 1 || (size(t.shape) === c && t.shape[t.shape.length - 1] === c);
  if (!ok(mean) || !ok(variance) || !ok(offset) || !ok(scale) || c === 0) return null;
  const xv = be.f32(x!);
  const out = be.alloc(xv.length);
  const eps = (attrs as { varianceEpsilon?: number }).varianceEpsilon ?? 0.001;
  be.addon.batchNorm(xv, be.f32(mean!), be.f32(variance!), offset ? be.f32(offset) : null, scale ? be.f32(scale) : null, eps, out, c);
  return be.out(x!.shape.slice(), out);
});

const softmax = kernel('Softmax', (be, { inputs, attrs }) => {
  const logits = inputs.logits!;
  if (!allF32(logits) || logits.shape.length === 0) return null;
  const dim = (attrs as { dim: number }).dim;
  const rank = logits.shape.length;
  if (dim !== -1 && dim !== rank - 1) return null;
  const c = logits.shape[rank - 1];
  const xv = be.f32(logits);
  const out = be.alloc(xv.length);
  be.addon.softmax(xv, out, xv.length / Math.max(1, c), c);
  return be.out(logits.shape.slice(), out);
});

// ------------------------------------------------------------------ registration
export function nativeKernelConfigs(): KernelConfig[] {
  return [
    batchMatMul, fusedMatMul,
    convForward(false, false), convForward(false, true), convForward(true, false), convForward(true, true),
    conv2DBackpropInput, conv2DBackpropFilter, depthwiseBackpropInput, depthwiseBackpropFilter,
    pool('MaxPool', CONV.maxPool), pool('AvgPool', CONV.avgPool), maxPoolGrad, avgPoolGrad,
    ...Object.keys(BIN).map(binaryKernel), ...Object.keys(UN).map(unaryKernel),
    ...Object.keys(RED).map(reduceKernel), fusedBatchNorm, softmax,
    clipByValue, ...Object.keys(CMP).map(compareKernel), ...Object.keys(LOGIC).map(logicalKernel), select, transpose,
    ...fakeQuantKernelConfigs(NATIVE_BACKEND_NAME), ...batchNormKernelConfigs(NATIVE_BACKEND_NAME),
    ...trainKernelConfigs(NATIVE_BACKEND_NAME),
  ];
}

let registered = false;

/** Registers the 'qatkit-native' backend (idempotent) and returns its name; throws if the addon cannot load. */
export async function registerNativeBackend(): Promise<string> {
  if (registered) return NATIVE_BACKEND_NAME;
  const addon = loadAddon();
  addon.info(); // fail here, not later, if the binary is unusable
  // Every cpu kernel first, then the native ones on top.
  const natives = nativeKernelConfigs();
  const overridden = new Set(natives.map((k) => k.kernelName));
  for (const k of tf.getKernelsForBackend('cpu')) {
    if (!overridden.has(k.kernelName)) tf.registerKernel({ ...k, backendName: NATIVE_BACKEND_NAME });
  }
  for (const k of natives) tf.registerKernel(k);
  tf.registerBackend(NATIVE_BACKEND_NAME, () => new NativeBackend(addon), 3);
  registered = true;
  return NATIVE_BACKEND_NAME;
}

/** The addon behind the native backend (for tests and benchmarks: ISA and thread control). */
export function nativeAddon(): NativeAddon {
  return loadAddon();
}
