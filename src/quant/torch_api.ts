// PyTorch's functional fake-quant ops, with PyTorch's argument meanings, on tfjs tensors.
// Values and gradients match torch 1.13 on CPU (see test/fixtures/torch and scripts/gen_torch_fixtures.py).

import * as tf from '@tensorflow/tfjs-core';
import { customGrad3, dequantize, effectiveZeroPoint, fakeQuant, lsqElementGrads, quantize } from './fakequant.js';

function checkRange(fn: string, quantMin: number, quantMax: number): void {
  if (!Number.isInteger(quantMin) || !Number.isInteger(quantMax))
    throw new RangeError(`${fn}: quant_min and quant_max must be integers, got ${quantMin}, ${quantMax}`);
  if (quantMin > quantMax) throw new RangeError(`${fn}: quant_min (${quantMin}) must be <= quant_max (${quantMax})`);
}

function checkScales(fn: string, values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++)
    if (!(values[i] > 0) || !Number.isFinite(values[i]))
      throw new RangeError(`${fn}: scale must be finite and > 0, got ${values[i]}${values.length > 1 ? ` at channel ${i}` : ''}`);
}

function normAxis(fn: string, axis: number, rank: number): number {
  if (!Number.isInteger(axis) || axis < -rank || axis >= rank)
    throw new RangeError(`${fn}: axis ${axis} is out of range for a tensor of rank ${rank}`);
  return axis < 0 ? axis + rank : axis;
}

/** [C] -> [1,..,C,..,1] with C at `axis`, checking that C matches x. */
function channelShape(fn: string, name: string, t: tf.Tensor, x: tf.Tensor, axis: number): number[] {
  if (t.rank !== 1) throw new RangeError(`${fn}: ${name} must be 1-D, got shape [${t.shape}]`);
  if (t.size !== x.shape[axis])
    throw new RangeError(`${fn}: ${name} has ${t.size} entries but input has ${x.shape[axis]} channels on axis ${axis}`);
  const shape = new Array<number>(x.rank).fill(1);
  shape[axis] = t.size;
  return shape;
}

/** torch.fake_quantize_per_tensor_affine(input, scale, zero_point, quant_min, quant_max); gradient: STE. */
export function fakeQuantizePerTensorAffine(
  x: tf.Tensor, scale: number, zeroPoint: number, quantMin: number, quantMax: number,
): tf.Tensor {
  const fn = 'fakeQuantizePerTensorAffine';
  checkRange(fn, quantMin, quantMax);
  checkScales(fn, [scale]);
  if (!Number.isInteger(zeroPoint) || zeroPoint < quantMin || zeroPoint > quantMax)
    throw new RangeError(`${fn}: zero_point must be an integer in [${quantMin}, ${quantMax}], got ${zeroPoint}`);
  return tf.tidy(() => fakeQuant(x, tf.scalar(scale), tf.scalar(zeroPoint), { qmin: quantMin, qmax: quantMax }));
}

/**
 * torch.fake_quantize_per_channel_affine(input, scale, zero_point, axis, quant_min, quant_max); gradient: STE.
 * As in torch, the zero point's dtype picks the formula: int32 -> clamp(round(x*inv) + zp); float32 (torch's
 * float-qparams path) -> clamp(round(zp + x*inv)) - zp with zp unrounded. tfjs tensors default to float32, so pass
 * int32 zero points for the usual integer grid.
 */
export function fakeQuantizePerChannelAffine(
  x: tf.Tensor, scale: tf.Tensor1D, zeroPoint: tf.Tensor1D, axis: number, quantMin: number, quantMax: number,
): tf.Tensor {
  const fn = 'fakeQuantizePerChannelAffine';
  checkRange(fn, quantMin, quantMax);
  const ax = normAxis(fn, axis, x.rank);
  const shape = channelShape(fn, 'scale', scale, x, ax);
  channelShape(fn, 'zero_point', zeroPoint, x, ax);
  checkScales(fn, scale.dataSync());
  if (zeroPoint.dtype !== 'float32') {
    const zps = zeroPoint.dataSync();
    zps.forEach((z, i) => {
      if (z < quantMin || z > quantMax)
        throw new RangeError(`${fn}: zero_point ${z} at channel ${i} is outside [${quantMin}, ${quantMax}]`);
    });
    return tf.tidy(() =>
      fakeQuant(x, tf.reshape(scale, shape), tf.reshape(zeroPoint, shape), { qmin: quantMin, qmax: quantMax }),
    );
  }
  return tf.tidy(() => floatZeroPointFakeQuant(x, tf.reshape(scale, shape), tf.reshape(zeroPoint, shape), quantMin, quantMax));
}

/** torch's per-channel kernel for a float zero point: y = (clamp(round(zp + x*inv)) - zp)*scale, STE mask on the same. */
function floatZeroPointFakeQuant(x: tf.Tensor, scale: tf.Tensor, zp: tf.Tensor, qmin: number, qmax: number): tf.Tensor {
  const f = customGrad3((xs, s, z, save) => {
    const q = tf.round(tf.add(z, tf.mul(xs, tf.div(1, s))));
    save([q]);
    return {
      value: tf.mul(tf.sub(tf.clipByValue(q, qmin, qmax), z), s),
      gradFunc: (dy, [sq]) => {
        const inside = tf.logicalAnd(tf.greaterEqual(sq, qmin), tf.lessEqual(sq, qmax));
        return [tf.where(inside, dy, tf.zerosLike(dy)), tf.zerosLike(s), tf.zerosLike(z)];
      },
    };
  });
  return f(x.dtype === 'float32' ? x : tf.cast(x, 'float32'), scale, zp);
}

function checkLearnable(fn: string, quantMin: number, quantMax: number, scale: tf.Tensor, gradFactor: number): void {
  checkRange(fn, quantMin, quantMax);
  // torch checks this in the backward; we fail early rather than after a forward pass
  if (quantMin > 0 || quantMax < 0)
    throw new RangeError(`${fn}: the grid [${quantMin}, ${quantMax}] must include 0`);
  if (!Number.isFinite(gradFactor)) throw new RangeError(`${fn}: grad_factor must be finite, got ${gradFactor}`);
  checkScales(fn, scale.dataSync());
}

/**
 * torch._fake_quantize_learnable_per_tensor_affine(input, scale, zero_point, quant_min, quant_max, grad_factor):
 * LSQ gradients for input, scale and zero point (scale and zero_point: one-element float tensors).
 * Forward zero point: round half to even, clamped. Backward, as torch does: trunc(clamp(zp + 0.5)), which differs
 * from the forward's at .5 ties and for negative non-integers.
 */
export function fakeQuantizeLearnablePerTensorAffine(
  x: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor, quantMin: number, quantMax: number, gradFactor: number,
): tf.Tensor {
  const fn = 'fakeQuantizeLearnablePerTensorAffine';
  if (scale.size !== 1 || zeroPoint.size !== 1)
    throw new RangeError(`${fn}: scale and zero_point must hold one element, got shapes [${scale.shape}] and [${zeroPoint.shape}]`);
  checkLearnable(fn, quantMin, quantMax, scale, gradFactor);
  const qmin = quantMin;
  const qmax = quantMax;
  const f = customGrad3((xs, s, z, save) => {
    const xf = tf.cast(xs, 'float32');
    const s0 = tf.reshape(tf.cast(s, 'float32'), []);
    const z0 = tf.reshape(tf.cast(z, 'float32'), []);
    const zf = effectiveZeroPoint(z0, qmin, qmax);
    save([xf, s0, z0]);
    return {
      value: dequantize(quantize(xf, s0, zf, qmin, qmax), s0, zf),
      gradFunc: (dy, [sx, ss, sz]) => {
        const c = tf.clipByValue(tf.add(sz, 0.5), qmin, qmax);
        const zb = tf.where(tf.greaterEqual(c, 0), tf.floor(c), tf.ceil(c)); // static_cast<int64_t>: truncation
        const g = lsqElementGrads({ x: sx, dy, scale: ss, zp: zb, qmin, qmax, gradFactor });
        return [g.dx, tf.reshape(tf.sum(g.dScale), s.shape), tf.reshape(tf.sum(g.dZeroPoint), z.shape)];
      },
    };
  });
  return f(x, scale, zeroPoint);
}

/**
 * torch._fake_quantize_learnable_per_channel_affine(input, scale, zero_point, axis, quant_min, quant_max, grad_factor):
 * LSQ gradients; scale and zero_point are 1-D float tensors with one entry per channel of `axis`. Forward and backward
 * both use the zero point rounded half to even and clamped, as torch does.
 */
export function fakeQuantizeLearnablePerChannelAffine(
  x: tf.Tensor, scale: tf.Tensor1D, zeroPoint: tf.Tensor1D, axis: number, quantMin: number, quantMax: number,
  gradFactor: number,
): tf.Tensor {
  const fn = 'fakeQuantizeLearnablePerChannelAffine';
  const ax = normAxis(fn, axis, x.rank);
  const shape = channelShape(fn, 'scale', scale, x, ax);
  channelShape(fn, 'zero_point', zeroPoint, x, ax);
  checkLearnable(fn, quantMin, quantMax, scale, gradFactor);
  return tf.tidy(() =>
    fakeQuant(x, tf.reshape(scale, shape), tf.reshape(zeroPoint, shape), {
      qmin: quantMin, qmax: quantMax, estimator: 'lsq', gradFactor,
    }),
  );
}
