/**
 * Training-mode batch norm as one fused kernel pair (native backend), with a tfjs-op
 * fallback elsewhere, so callers can use batchNormTrain() on every backend.
 *
 *   QatBatchNormTrain     {x, scale, offset} {varianceEpsilon} -> [y, mean, variance, invStd]
 *   QatBatchNormTrainGrad {dy, x, mean, invStd, scale}         -> [dx, dScale, dOffset]
 * Channels are the last axis (NHWC); statistics are over all other axes; variance is the
 * biased (population) one, as tf.moments. Composed from tfjs ops the same computation
 * takes about a dozen full passes over the activation forward and backward; fused it
 * takes three forward and two backward.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { NativeAddon } from './native_addon.js';

interface BnBackend {
  addon: NativeAddon;
  f32(t: TensorInfo): Float32Array;
  out(shape: number[], v: Float32Array): TensorInfo;
  alloc(n: number): Float32Array;
}

function channelParam(be: BnBackend, t: TensorInfo | undefined, c: number, what: string): Float32Array | null {
  if (!t) return null;
  const v = be.f32(t);
  if (v.length === c) return v;
  if (v.length === 1) return new Float32Array(c).fill(v[0]);
  throw new Error(`qatkit batchNormTrain: ${what} has ${v.length} values, expected ${c}`);
}

const bnTrain: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as BnBackend;
  const { x, scale, offset } = inputs as { x: TensorInfo; scale?: TensorInfo; offset?: TensorInfo };
  const c = x.shape[x.shape.length - 1];
  const eps = (attrs as { varianceEpsilon?: number } | undefined)?.varianceEpsilon ?? 1e-5;
  const xv = be.f32(x);
  const y = be.alloc(xv.length), mean = new Float32Array(c), variance = new Float32Array(c), inv = new Float32Array(c);
  be.addon.batchNormTrain(xv, c, channelParam(be, scale, c, 'scale'), channelParam(be, offset, c, 'offset'), eps, y, mean, variance, inv);
  return [be.out(x.shape.slice(), y), be.out([c], mean), be.out([c], variance), be.out([c], inv)];
};

const bnTrainGrad: KernelFunc = ({ inputs, backend }) => {
  const be = backend as unknown as BnBackend;
  const { dy, x, mean, invStd, scale } = inputs as Record<string, TensorInfo>;
  const c = x.shape[x.shape.length - 1];
  const xv = be.f32(x);
  const dx = be.alloc(xv.length), ds = new Float32Array(c), doff = new Float32Array(c);
  be.addon.batchNormTrainGrad(be.f32(dy), xv, c, be.f32(mean), be.f32(invStd), channelParam(be, scale, c, 'scale'), dx, ds, doff);
  return [be.out(x.shape.slice(), dx), be.out([c], ds), be.out([c], doff)];
};

export function batchNormKernelConfigs(backendName: string): KernelConfig[] {
  return [
    { kernelName: 'QatBatchNormTrain', backendName, kernelFunc: bnTrain },
    { kernelName: 'QatBatchNormTrainGrad', backendName, kernelFunc: bnTrainGrad },
  ];
}

export function hasBatchNormTrainKernel(): boolean {
  return tf.getKernel('QatBatchNormTrain', tf.getBackend()) != null;
}

/**
 * y = (x - mean) / sqrt(variance + eps) * scale + offset with the batch's statistics over all
 * axes but the last; differentiable in x, scale and offset (mean and variance are returned
 * for running averages and carry no gradient). scale and offset: [C].
 */
export function batchNormTrain(x: tf.Tensor, scale: tf.Tensor, offset: tf.Tensor, eps = 1e-5): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  const axes = x.shape.map((_, i) => i).slice(0, -1);
  if (!hasBatchNormTrainKernel()) {
    const { mean, variance } = tf.moments(x, axes);
    const y = tf.tidy(() => tf.add(tf.mul(tf.sub(x, mean), tf.mul(tf.rsqrt(tf.add(variance, eps)), scale)), offset));
    return { y, mean, variance };
  }
  let stats: tf.Tensor[] = [];
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xx, s, o] = args as tf.Tensor[];
    const [y, mean, variance, invStd] = tf.engine().runKernel('QatBatchNormTrain', { x: xx, scale: s, offset: o },
      { varianceEpsilon: eps }) as tf.Tensor[];
    (args[3] as tf.GradSaveFunc)([xx, s, mean, invStd]);
    stats = [mean, variance, invStd];
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const [sx, ss, sm, si] = saved;
        return tf.engine().runKernel('QatBatchNormTrainGrad', { dy, x: sx, mean: sm, invStd: si, scale: ss }) as tf.Tensor[];
      },
    };
  });
  const y = f(x, scale, offset);
  // invStd is kept alive by the tape while gradients are recorded; outside it is not needed.
  return { y, mean: stats[0], variance: stats[1] };
}
