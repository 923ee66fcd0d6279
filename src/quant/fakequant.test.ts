import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-wasm';
import { setupTfjs } from '../util/tfjs.js';
import {
  dequantize, estimatorNames, fakeQuant, getEstimator, lsqGradFactor, quantize, registerEstimator, sumToShape,
} from './fakequant.js';
import {
  fakeQuantizeLearnablePerChannelAffine, fakeQuantizeLearnablePerTensorAffine, fakeQuantizePerChannelAffine,
  fakeQuantizePerTensorAffine,
} from './torch_api.js';
import { assertClose, assertExact, checkFakeQuant, checkLearnable, loadFixture } from './torch_fixtures.js';

await setupTfjs();
const fq = loadFixture('fake_quant');
const learn = loadFixture('learnable');

for (const backend of ['cpu', 'wasm']) {
  test(`[${backend}] tf.round is round-half-to-even`, async () => {
    await tf.setBackend(backend);
    const r = tf.round(tf.tensor1d([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 4.5, 0.49999997, 2.5000002, 8388609])).dataSync();
    assertExact(r, [-4, -2, -2, 0, 0, 2, 2, 4, 4, 0, 3, 8388609], `${backend} round`);
  });

  test(`[${backend}] fake quant values and STE gradients equal torch's (per tensor, per channel)`, async () => {
    await tf.setBackend(backend);
    const n = checkFakeQuant(fq);
    assert.equal(n, fq.per_tensor.length + fq.per_channel.length);
  });

  test(`[${backend}] learnable (LSQ) values and gradients equal torch's (per tensor, per channel)`, async () => {
    await tf.setBackend(backend);
    const n = checkLearnable(learn);
    assert.equal(n, learn.per_tensor.length + learn.per_channel.length);
  });
}

test('fixtures cover ties, clipping, zero-width, negative ranges, every grid, and channel axes 0, 1 and last', () => {
  const names = fq.per_tensor.map((c: { name: string }) => c.name).join(' ');
  for (const k of ['ties_int8_zp3', 'ties_uint4_zp7', 'clip_', 'zeros_', 'const_neg', 'negative_range', 'grid_2b', 'grid_8b_s_sym_narrow'])
    assert.ok(names.includes(k), `fixture case ${k}`);
  const axes = new Set(fq.per_channel.map((c: { axis: number }) => c.axis));
  assert.ok(axes.has(0) && axes.has(1) && axes.has(3));
  // the tie cases really are ties: x*inv is k + 0.5 for even and odd k
  const tie = fq.per_tensor.find((c: { name: string }) => c.name === 'ties_int8_zp0');
  const frac = tie.x.map((v: number) => v / tie.scale).filter((v: number) => Math.abs(v % 1) === 0.5);
  assert.ok(frac.some((v: number) => Math.floor(v) % 2 === 0) && frac.some((v: number) => Math.abs(Math.floor(v) % 2) === 1));
});

test('generic fakeQuant with the lsq estimator equals torch learnable per-tensor when zp is an integer', async () => {
  await tf.setBackend('cpu');
  for (const c of learn.per_tensor.filter((k: { zero_point: number[] }) => Number.isInteger(k.zero_point[0]))) {
    const x = tf.tensor(c.x, c.shape);
    const f = (xs: tf.Tensor, s: tf.Tensor, z: tf.Tensor) =>
      fakeQuant(xs, s, z, { qmin: c.quant_min, qmax: c.quant_max, estimator: 'lsq', gradFactor: c.grad_factor });
    const [gx, gs, gz] = tf.grads(f)([x, tf.scalar(c.scale[0]), tf.scalar(c.zero_point[0])], tf.tensor(c.dy, c.shape));
    assertExact(f(x, tf.scalar(c.scale[0]), tf.scalar(c.zero_point[0])).dataSync(), c.y, `${c.name} y`);
    assertExact(gx.dataSync(), c.dx, `${c.name} dx`);
    assertClose(gs.dataSync(), c.dscale, 1e-5, `${c.name} dscale`);
    assertClose(gz.dataSync(), c.dzero_point, 1e-5, `${c.name} dzp`);
  }
});

test('lsq default gradFactor is 1/sqrt(N*qmax), N = elements per scale', async () => {
  await tf.setBackend('cpu');
  const x = tf.randomNormal([4, 6], 0, 1, 'float32', 7);
  const s = tf.tensor([0.1, 0.2, 0.3, 0.4], [4, 1]);
  const z = tf.zeros([4, 1]);
  const grad = (gf?: number) => tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
    fakeQuant(a, b, c, { qmin: -8, qmax: 7, estimator: 'lsq', gradFactor: gf }))([x, s, z]);
  const [, dflt] = grad();
  const [, one] = grad(1);
  assert.equal(lsqGradFactor(6, 7), 1 / Math.sqrt(42));
  assertClose(dflt.dataSync(), tf.mul(one, lsqGradFactor(6, 7)).dataSync(), 1e-6, 'default gradFactor');
  assert.throws(() => lsqGradFactor(0, 7), /numel/);
});

test('STE gives no gradient to scale and zero point; quantize/dequantize compose to the forward', async () => {
  await tf.setBackend('cpu');
  const x = tf.tensor1d([-2, -0.3, 0, 0.26, 0.5, 9]);
  const s = tf.scalar(0.25);
  const z = tf.scalar(3);
  const [dx, ds, dz] = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => fakeQuant(a, b, c, { qmin: 0, qmax: 15 }))([x, s, z]);
  assertExact(ds.dataSync(), [0], 'dscale');
  assertExact(dz.dataSync(), [0], 'dzp');
  assertExact(dx.dataSync(), [0, 1, 1, 1, 1, 0], 'dx: clipped elements get no gradient');
  const q = quantize(x, s, z, 0, 15);
  assertExact(q.dataSync(), [0, 2, 3, 4, 5, 15], 'q');
  assertExact(dequantize(q, s, z).dataSync(), fakeQuant(x, s, z, { qmin: 0, qmax: 15 }).dataSync(), 'dequantize(quantize)');
});

test('per-group: reshape so the group is an axis, then broadcast one scale per group', async () => {
  await tf.setBackend('cpu');
  const x = tf.tensor2d([[0.1, 0.2, 0.3, 1, 2, 3], [-0.1, 0.05, 0.3, -1, 4, 3]]);
  const scales = [0.01, 0.1];
  const y = fakeQuant(tf.reshape(x, [2, 2, 3]), tf.tensor([scales[0], scales[1]], [1, 2, 1]), tf.zeros([1, 2, 1]), { qmin: -128, qmax: 127 });
  const want = x.arraySync().map((row) => row.map((v, j) => {
    const sc = Math.fround(scales[Math.floor(j / 3)]);
    return Math.fround(Math.min(127, Math.max(-128, Math.round(Math.fround(v * Math.fround(1 / sc))))) * sc);
  }));
  assertExact(tf.reshape(y, [2, 6]).dataSync(), want.flat(), 'per-group');
});

test('sumToShape undoes broadcasting', async () => {
  await tf.setBackend('cpu');
  const g = tf.ones([2, 3, 4]);
  assertExact(sumToShape(g, [1, 3, 1]).dataSync(), [8, 8, 8], '[1,3,1]');
  assertExact(sumToShape(g, []).dataSync(), [24], 'scalar');
  assertExact(sumToShape(g, [4]).dataSync(), [6, 6, 6, 6], '[4]');
});

test('estimator registry: unknown names list the known ones; registered estimators are used', async () => {
  await tf.setBackend('cpu');
  assert.throws(() => getEstimator('nope'), /unknown gradient estimator 'nope' \(known: ste, lsq/);
  assert.throws(() => fakeQuant(tf.zeros([2]), tf.scalar(1), tf.scalar(0), { qmin: 0, qmax: 3, estimator: 'nope' }), /known: ste, lsq/);
  registerEstimator('double_ste', { backward: ({ dy }) => ({ dx: tf.mul(dy, 2) }) });
  assert.ok(estimatorNames().includes('double_ste'));
  const dx = tf.grad((a: tf.Tensor) => fakeQuant(a, tf.scalar(1), tf.scalar(0), { qmin: 0, qmax: 3, estimator: 'double_ste' }))(tf.ones([3]));
  assertExact(dx.dataSync(), [2, 2, 2], 'custom estimator');
  assert.throws(() => fakeQuant(tf.zeros([2]), tf.scalar(1), tf.scalar(0), { qmin: 3, qmax: 0 }), /qmin <= qmax/);
});

test('torch API validates its arguments', async () => {
  await tf.setBackend('cpu');
  const x = tf.zeros([2, 3]);
  assert.throws(() => fakeQuantizePerTensorAffine(x, 0.1, 0, 5, 1), /quant_min \(5\) must be <= quant_max \(1\)/);
  assert.throws(() => fakeQuantizePerTensorAffine(x, 0.1, 300, 0, 255), /zero_point must be an integer in \[0, 255\], got 300/);
  assert.throws(() => fakeQuantizePerTensorAffine(x, 0, 0, 0, 255), /scale must be finite and > 0, got 0/);
  const s3 = tf.tensor1d([0.1, 0.1, 0.1]);
  const z3 = tf.tensor1d([0, 0, 0], 'int32');
  assert.throws(() => fakeQuantizePerChannelAffine(x, s3, z3, 2, -128, 127), /axis 2 is out of range for a tensor of rank 2/);
  assert.throws(() => fakeQuantizePerChannelAffine(x, s3, z3, 0, -128, 127), /scale has 3 entries but input has 2 channels on axis 0/);
  assert.throws(() => fakeQuantizePerChannelAffine(x, s3, tf.tensor1d([0, 200, 0], 'int32'), 1, -128, 127), /zero_point 200 at channel 1/);
  assert.throws(() => fakeQuantizePerChannelAffine(x, tf.tensor1d([0.1, -1, 0.1]), z3, 1, -128, 127), /got -1 at channel 1/);
  assert.equal(fakeQuantizePerChannelAffine(x, s3, z3, -1, -128, 127).shape.join(), '2,3');
  assert.throws(() => fakeQuantizeLearnablePerTensorAffine(x, tf.tensor1d([0.1, 0.2]), tf.tensor1d([0]), 0, 255, 1), /one element/);
  assert.throws(() => fakeQuantizeLearnablePerTensorAffine(x, tf.tensor1d([0.1]), tf.tensor1d([0]), 1, 255, 1), /must include 0/);
  assert.throws(() => fakeQuantizeLearnablePerChannelAffine(x, s3, tf.tensor1d([0, 0]), 1, 0, 255, 1), /zero_point has 2 entries/);
});

test('fakeQuant and its gradients leave no tensors behind', async () => {
  await tf.setBackend('cpu');
  const x = tf.randomNormal([3, 8], 0, 1, 'float32', 11);
  const s = tf.tensor([0.1, 0.2, 0.3], [3, 1]);
  const z = tf.tensor([0, 1, -2], [3, 1]);
  const run = () => {
    for (const estimator of ['ste', 'lsq']) {
      tf.dispose(fakeQuant(x, s, z, { qmin: -8, qmax: 7, estimator }));
      tf.dispose(tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => fakeQuant(a, b, c, { qmin: -8, qmax: 7, estimator }))([x, s, z]));
    }
    tf.tidy(() => { fakeQuantizeLearnablePerTensorAffine(x, tf.scalar(0.1), tf.scalar(0), -8, 7, 1); });
  };
  run();
  const before = tf.memory().numTensors;
  run();
  assert.equal(tf.memory().numTensors, before);
});
