/**
 * Training-mode batch norm as one fused kernel pair (native backend), with a tfjs-op
 * fallback elsewhere, so callers can use batchNormTrain() on every backend.
 *
 *   QatBatchNormStats     {x} {varianceEpsilon}                 -> [mean, variance, invStd]
 *   QatBatchNormApply     {x, mean, invStd, scale, offset} {relu} -> y (relu(y) with relu)
 *   QatBatchNormTrainGrad {dy, x, mean, invStd, scale, ry}      -> [dx, dScale, dOffset]
 * ry (optional): relu(y) of a fused Relu, dy then being the Relu's output gradient: its mask (tfjs's Relu gradient
 * dy * step(ry)) is applied inside the backward's two passes.
 * Channels are the last axis (NHWC); statistics are over all other axes; variance is the
 * biased (population) one, as tf.moments. Composed from tfjs ops the same computation
 * takes about a dozen full passes over the activation forward and backward; fused it
 * takes three forward and two backward; a following Relu fused in takes none more.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { AddonBackend } from './native_addon.js';

function channelParam(be: AddonBackend, t: TensorInfo | undefined, c: number, what: string): Float32Array | null {
  if (!t) return null;
  const v = be.f32(t);
  if (v.length === c) return v;
  if (v.length === 1) return new Float32Array(c).fill(v[0]);
  throw new Error(`qatkit batchNormTrain: ${what} has ${v.length} values, expected ${c}`);
}

const bnStats: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as AddonBackend;
  const x = inputs.x as TensorInfo;
  const c = x.shape[x.shape.length - 1];
  const eps = (attrs as { varianceEpsilon?: number } | undefined)?.varianceEpsilon ?? 1e-5;
  const mean = new Float32Array(c), variance = new Float32Array(c), inv = new Float32Array(c);
  be.addon.batchNormTrain(be.f32(x), c, null, null, eps, null, mean, variance, inv);
  return [be.out([c], mean), be.out([c], variance), be.out([c], inv)];
};

const bnApply: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as AddonBackend;
  const { x, mean, invStd, scale, offset } = inputs as Record<string, TensorInfo>;
  const c = x.shape[x.shape.length - 1];
  const m = be.f32(mean), inv = be.f32(invStd);
  const s = channelParam(be, scale, c, 'scale'), o = channelParam(be, offset, c, 'offset');
  const mul = new Float32Array(c), add = new Float32Array(c);
  for (let i = 0; i < c; i++) {
    mul[i] = inv[i] * (s ? s[i] : 1);
    add[i] = (o ? o[i] : 0) - m[i] * mul[i];
  }
  const xv = be.f32(x);
  const y = be.alloc(xv.length);
  be.addon.channelAffine(xv, mul, add, y, c, (attrs as { relu?: boolean } | undefined)?.relu === true);
  return be.out(x.shape.slice(), y);
};

const bnTrainGrad: KernelFunc = ({ inputs, backend }) => {
  const be = backend as unknown as AddonBackend;
  const { dy, x, mean, invStd, scale, ry } = inputs as Record<string, TensorInfo>;
  const c = x.shape[x.shape.length - 1];
  const xv = be.f32(x);
  const dx = be.alloc(xv.length), ds = new Float32Array(c), doff = new Float32Array(c);
  const s = channelParam(be, scale, c, 'scale');
  be.addon.batchNormTrainGrad(be.f32(dy), xv, c, be.f32(mean), be.f32(invStd), s, dx, ds, doff, ry ? be.f32(ry) : null);
  return [be.out(x.shape.slice(), dx), be.out([c], ds), be.out([c], doff)];
};

export function batchNormKernelConfigs(backendName: string): KernelConfig[] {
  return [
    { kernelName: 'QatBatchNormStats', backendName, kernelFunc: bnStats },
    { kernelName: 'QatBatchNormApply', backendName, kernelFunc: bnApply },
    { kernelName: 'QatBatchNormTrainGrad', backendName, kernelFunc: bnTrainGrad },
  ];
}

export function hasBatchNormTrainKernel(): boolean {
  return tf.getKernel('QatBatchNormStats', tf.getBackend()) != null;
}

/**
 * y = (x - mean) / sqrt(variance + eps) * scale + offset with the batch's statistics over all
 * axes but the last; differentiable in x, scale and offset (mean and variance are returned
 * for running averages and carry no gradient). scale and offset: [C]. relu: y is relu of that
 * (fused into the kernels' passes; values and gradients have the bits of tf.relu after it).
 */
export function batchNormTrain(x: tf.Tensor, scale: tf.Tensor, offset: tf.Tensor, eps = 1e-5, relu = false): { y: tf.Tensor; mean: tf.Tensor; variance: tf.Tensor } {
  const axes = x.shape.map((_, i) => i).slice(0, -1);
  if (!hasBatchNormTrainKernel()) {
    const { mean, variance } = tf.moments(x, axes);
    const y = tf.tidy(() => {
      const bn = tf.add(tf.mul(tf.sub(x, mean), tf.mul(tf.rsqrt(tf.add(variance, eps)), scale)), offset);
      return relu ? tf.relu(bn) : bn;
    });
    return { y, mean, variance };
  }
  // Statistics outside the custom gradient: tfjs runs a customGrad forward inside a tidy,
  // which would dispose them before the caller sees them. They are not on the loss's path,
  // so the tape ignores them; the backward gets its own saved copies.
  const [mean, variance, invStd] = tf.engine().runKernel('QatBatchNormStats', { x }, { varianceEpsilon: eps }) as tf.Tensor[];
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xx, s, o] = args as tf.Tensor[];
    const y = tf.engine().runKernel('QatBatchNormApply', { x: xx, mean, invStd, scale: s, offset: o }, { relu }) as tf.Tensor;
    (args[3] as tf.GradSaveFunc)(relu ? [xx, s, mean, invStd, y] : [xx, s, mean, invStd]);
    return {
      value: y,
      gradFunc: (dy: tf.Tensor, [sx, ss, sm, si, ry]: tf.Tensor[]) =>
        tf.engine().runKernel('QatBatchNormTrainGrad', { dy, x: sx, mean: sm, invStd: si, scale: ss, ...(ry ? { ry } : {}) }) as tf.Tensor[],
    };
  });
  const y = f(x, scale, offset);
  return { y, mean, variance };
}
