// Fake quantization (quantize then dequantize, in float) with a gradient estimator chosen by name.
//
// Forward is PyTorch's fake_quantize_per_tensor_affine, op for op in float32:
//   inv = 1/scale; q = clamp(round(x*inv) + zp, qmin, qmax); y = (q - zp)*scale
// tf.round is round-half-to-even on the cpu and wasm backends (as std::nearbyint); fakequant.test checks it on both.
// scale and zero point broadcast against x: scalars per tensor, shape [1,..,C,..,1] per channel; per group, reshape x
// so that the group is an axis of its own first.

import * as tf from '@tensorflow/tfjs-core';
import { fakeQuantKernel, fakeQuantSteGradKernel, hasFakeQuantKernel } from '../backend/fakequant_kernels.js';

export interface FakeQuantOpts {
  qmin: number;
  qmax: number;
  /** gradient estimator, a registry key; default 'ste' */
  estimator?: string;
  /** multiplies the scale and zero-point gradients; default: the estimator's (LSQ: lsqGradFactor) */
  gradFactor?: number;
  /** fake-quantize relu(x) (a Relu feeding the quantizer: one pass each way on the native backend) */
  relu?: boolean;
}

/** What an estimator's backward sees. All tensors are float32; zp is the zero point the forward used (rounded, clamped). */
export interface EstimatorInput {
  x: tf.Tensor;
  dy: tf.Tensor;
  scale: tf.Tensor;
  zp: tf.Tensor;
  qmin: number;
  qmax: number;
  gradFactor: number;
}

/** Gradients shaped like x (or already reduced); fakeQuant sums them to the shapes of scale and zero point. */
export interface EstimatorGrads {
  dx: tf.Tensor;
  dScale?: tf.Tensor;
  dZeroPoint?: tf.Tensor;
}

export interface Estimator {
  backward(inp: EstimatorInput): EstimatorGrads;
  /** gradFactor used when the caller gives none; numel = elements of x per scale. Default 1. */
  defaultGradFactor?(numel: number, qmax: number): number;
}

const estimators = new Map<string, Estimator>();

export function registerEstimator(name: string, impl: Estimator): void {
  estimators.set(name, impl);
}

export function getEstimator(name: string): Estimator {
  const e = estimators.get(name);
  if (!e) throw new Error(`fakeQuant: unknown gradient estimator '${name}' (known: ${[...estimators.keys()].join(', ')})`);
  return e;
}

export function estimatorNames(): string[] {
  return [...estimators.keys()];
}

/** LSQ's gradient scale g = 1/sqrt(N * Qp) (Esser et al. 2020), N = elements per scale, Qp = qmax. (torch's
 *  _LearnableFakeQuantize uses N = all elements of x, also for per-channel scales.) */
export function lsqGradFactor(numel: number, qmax: number): number {
  if (!(numel > 0) || !(qmax > 0)) throw new RangeError(`lsqGradFactor: numel (${numel}) and qmax (${qmax}) must be > 0`);
  return 1 / Math.sqrt(numel * qmax);
}

// ---- quantize / dequantize ----------------------------------------------------------------------------------------

const f32 = (t: tf.Tensor): tf.Tensor => (t.dtype === 'float32' ? t : tf.cast(t, 'float32'));

/** The zero point as the forward uses it: rounded half to even, clamped to the grid (torch's learnable ops do this). */
export function effectiveZeroPoint(zeroPoint: tf.Tensor, qmin: number, qmax: number): tf.Tensor {
  return tf.tidy(() => tf.clipByValue(tf.round(f32(zeroPoint)), qmin, qmax));
}

/** Integers (held in a float32 tensor) on the grid: clamp(round(x/scale) + zp, qmin, qmax), with 1/scale in float32. */
export function quantize(x: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor, qmin: number, qmax: number): tf.Tensor {
  return tf.tidy(() => {
    const inv = tf.div(1, f32(scale));
    return tf.clipByValue(tf.add(tf.round(tf.mul(f32(x), inv)), f32(zeroPoint)), qmin, qmax);
  });
}

/** Back to float: (q - zp)*scale. */
export function dequantize(q: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.sub(f32(q), f32(zeroPoint)), f32(scale)));
}

/** Sum a gradient down to `shape` (undo broadcasting). */
export function sumToShape(g: tf.Tensor, shape: number[]): tf.Tensor {
  return tf.tidy(() => {
    const lead = g.rank - shape.length;
    const axes: number[] = [];
    for (let i = 0; i < g.rank; i++) if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
    const s = axes.length ? tf.sum(g, axes) : g;
    return tf.reshape(s, shape);
  });
}

type Grad3 = (
  a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, save: tf.GradSaveFunc,
) => { value: tf.Tensor; gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => tf.Tensor[] };

/** tf.customGrad for a function of three tensors (tfjs types customGrad variadically). */
export function customGrad3(f: Grad3): (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.Tensor {
  const g = tf.customGrad(((...args: Array<tf.Tensor | tf.GradSaveFunc>) =>
    f(args[0] as tf.Tensor, args[1] as tf.Tensor, args[2] as tf.Tensor, args[3] as tf.GradSaveFunc)) as Parameters<
    typeof tf.customGrad
  >[0]);
  return (a, b, c) => g(a, b, c);
}

// ---- the primitive ------------------------------------------------------------------------------------------------

/**
 * Fake-quantize x on the grid [qmin, qmax] with the given scale and zero point: broadcastable to x, or, given
 * `axis`, of shape [C] with one value per slice of x along axis (C = x.shape[axis]; size 1 means per tensor).
 * Gradients come from the named estimator ('ste' by default, 'lsq' for learned scale and zero point).
 */
export function fakeQuant(x: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor, opts: FakeQuantOpts, axis?: number): tf.Tensor {
  const { qmin, qmax } = opts;
  if (!(Number.isInteger(qmin) && Number.isInteger(qmax) && qmin <= qmax))
    throw new RangeError(`fakeQuant: need integers qmin <= qmax, got [${qmin}, ${qmax}]`);
  const est = getEstimator(opts.estimator ?? 'ste');
  const perScale = scale.size > 0 ? x.size / scale.size : 0;
  const gradFactor = opts.gradFactor ?? est.defaultGradFactor?.(perScale, qmax) ?? 1;
  const perAxis = axis !== undefined && scale.size > 1;
  const relu = opts.relu ?? false;
  const native = nativeFakeQuant(x, scale, zeroPoint, qmin, qmax, est, perAxis ? axis : scaleAxis(x, scale), relu);
  if (native) return native;
  if (relu) x = tf.relu(x);
  if (perAxis) {
    const shape = x.shape.map((d, i) => (i === axis ? d : 1));
    [scale, zeroPoint] = [tf.reshape(scale, shape), tf.reshape(zeroPoint, shape)];
  }
  const fn = customGrad3((xs, s, z, save) => {
    const xf = f32(xs);
    const sf = f32(s);
    const zp = effectiveZeroPoint(z, qmin, qmax);
    const value = dequantize(quantize(xf, sf, zp, qmin, qmax), sf, zp);
    save([xf, sf, zp]);
    return {
      value,
      gradFunc: (dy, saved) => {
        const [sx, ss, sz] = saved;
        const g = est.backward({ x: sx, dy, scale: ss, zp: sz, qmin, qmax, gradFactor });
        return [
          g.dx,
          g.dScale ? sumToShape(g.dScale, s.shape) : tf.zerosLike(s),
          g.dZeroPoint ? sumToShape(g.dZeroPoint, z.shape) : tf.zerosLike(z),
        ];
      },
    };
  });
  return fn(x, scale, zeroPoint);
}

/** The channel axis a broadcast scale selects: -1 per tensor, undefined when it is no single axis. */
function scaleAxis(x: tf.Tensor, scale: tf.Tensor): number | undefined {
  if (scale.size === 1) return -1;
  if (scale.rank !== x.rank) return undefined;
  const axes = scale.shape.flatMap((d, i) => (d === 1 ? [] : [i]));
  return axes.length === 1 && scale.shape[axes[0]] === x.shape[axes[0]] ? axes[0] : undefined;
}

/**
 * The backend's own fake-quant kernels (the native addon registers them) for STE: one pass forward, one pass
 * backward, instead of a dozen tfjs ops; the kernels round and clamp the zero point themselves, and scale and zero
 * point may have any shape of size 1 or x.shape[axis]. Same arithmetic as the tfjs-op path below (x times the
 * float32 reciprocal, half to even). LSQ keeps the tfjs-op path: it reproduces PyTorch's learnable backward, whose
 * mask rounds (x/scale + zp) rather than round(x/scale) + zp and so differs at ties. Undefined where not applicable
 * (axis undefined: the scale selects no single axis of x).
 */
function nativeFakeQuant(x: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor, qmin: number, qmax: number, est: Estimator,
  axis: number | undefined, relu: boolean): tf.Tensor | undefined {
  if (est !== steEstimator || axis === undefined || !hasFakeQuantKernel() || x.dtype !== 'float32') return undefined;
  const fn = customGrad3((xs, s, z, save) => {
    save([xs, s, z]);
    return {
      value: fakeQuantKernel(xs, s, z, qmin, qmax, axis, true, relu),
      gradFunc: (dy, [sx, ss, sz]) => {
        // STE: no gradient for scale and zero point (zeros made directly, without a kernel call)
        return [fakeQuantSteGradKernel(dy, sx, ss, sz, qmin, qmax, axis, true, relu), tf.zeros(s.shape), tf.zeros(z.shape)];
      },
    };
  });
  return fn(x, scale, zeroPoint);
}

// ---- estimators ---------------------------------------------------------------------------------------------------

function inRange(q: tf.Tensor, qmin: number, qmax: number): tf.Tensor {
  return tf.logicalAnd(tf.greaterEqual(q, qmin), tf.lessEqual(q, qmax));
}

/** Straight-through: dx = dy where the unclamped integer round(x*inv) + zp lies on the grid (torch's cached mask). */
export const steEstimator: Estimator = {
  backward({ x, dy, scale, zp, qmin, qmax }) {
    const q = tf.add(tf.round(tf.mul(x, tf.div(1, scale))), zp);
    return { dx: tf.where(inRange(q, qmin, qmax), dy, tf.zerosLike(dy)) };
  },
};

/**
 * LSQ gradients per element, exactly as torch's fake_quantize_learnable_{tensor,channel}_grad_kernel_cpu (float32, same
 * operation order), before the reduction to the shapes of scale and zero point. zp must hold integers.
 * Note torch's order here: xq = round(zp + x*inv), not zp + round(x*inv) as in the forward; the two differ at ties
 * when zp is odd, and torch's backward mask then disagrees with its forward by one step. We keep torch's.
 */
export function lsqElementGrads(inp: EstimatorInput): Required<EstimatorGrads> {
  const { x, dy, scale, zp, qmin, qmax } = inp;
  const inv = tf.div(1, scale);
  const gf = tf.scalar(inp.gradFactor, 'float32');
  const xq = tf.round(tf.add(zp, tf.mul(x, inv)));
  const inside = inRange(xq, qmin, qmax);
  const below = tf.less(xq, qmin);
  const zero = tf.zerosLike(dy);
  const dx = tf.where(inside, dy, zero);
  // inside: dy * (xfq - x) * inv * gf, xfq = (clamp(xq) - zp) * scale
  const xfq = tf.mul(tf.sub(tf.clipByValue(xq, qmin, qmax), zp), scale);
  const dsIn = tf.mul(tf.mul(tf.mul(dy, tf.sub(xfq, x)), inv), gf);
  // outside: dy * (qmin - zp) or dy * (qmax - zp), times gf; zero point: dy * -1 * scale * gf
  const dsOut = tf.mul(tf.mul(dy, tf.where(below, tf.sub(qmin, zp), tf.sub(qmax, zp))), gf);
  const dzOut = tf.mul(tf.mul(tf.mul(dy, -1), scale), gf);
  return { dx, dScale: tf.where(inside, dsIn, dsOut), dZeroPoint: tf.where(inside, zero, dzOut) };
}

/** Learned Step Size Quantization (Esser et al. 2020): STE for x, learned gradients for scale and zero point. */
export const lsqEstimator: Estimator = {
  backward: lsqElementGrads,
  defaultGradFactor: lsqGradFactor,
};

registerEstimator('ste', steEstimator);
registerEstimator('lsq', lsqEstimator);
