// The native backend's fused fake-quant kernels give what the tfjs-op path gives (values and STE/LSQ gradients).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/index.js';
import { hasFakeQuantKernel } from '../backend/fakequant_kernels.js';
import { fakeQuant } from './fakequant.js';

interface Case {
  shape: number[];
  scaleShape: number[];
  qmin: number;
  qmax: number;
  estimator: 'ste' | 'lsq';
}

const CASES: Case[] = [
  { shape: [4, 3, 5, 5], scaleShape: [], qmin: 0, qmax: 255, estimator: 'ste' },
  { shape: [4, 3, 5, 5], scaleShape: [], qmin: 0, qmax: 15, estimator: 'lsq' },
  { shape: [6, 3, 3, 3], scaleShape: [6, 1, 1, 1], qmin: -7, qmax: 7, estimator: 'ste' },
  { shape: [6, 3, 3, 3], scaleShape: [6, 1, 1, 1], qmin: -127, qmax: 127, estimator: 'lsq' },
  { shape: [10, 8], scaleShape: [1, 8], qmin: -1, qmax: 1, estimator: 'lsq' },
];

function run(c: Case, x: Float32Array, s: Float32Array, z: Float32Array) {
  return tf.tidy(() => {
    const xs = tf.tensor(x, c.shape);
    const ss = tf.tensor(s, c.scaleShape);
    const zs = tf.tensor(z, c.scaleShape);
    const f = (a: tf.Tensor, b: tf.Tensor, d: tf.Tensor) => tf.sum(tf.mul(fakeQuant(a, b, d, c), tf.cos(a)));
    const y = fakeQuant(xs, ss, zs, c).dataSync() as Float32Array;
    const [gx, gs, gz] = tf.grads(f)([xs, ss, zs]).map((g) => g.dataSync() as Float32Array);
    return { y: Float32Array.from(y), gx: Float32Array.from(gx), gs: Float32Array.from(gs), gz: Float32Array.from(gz) };
  });
}

test('native fused fake-quant (STE) equals the tfjs-op path; LSQ stays on tfjs ops and agrees too', async (t) => {
  if ((await initBackend('native')) !== 'qatkit-native' || !hasFakeQuantKernel()) {
    t.skip('native backend not built');
    return;
  }
  for (const c of CASES) {
    const n = c.shape.reduce((a, b) => a * b, 1);
    const m = Math.max(1, c.scaleShape.reduce((a, b) => a * b, 1));
    // values on half-steps make ties; others random
    const s = Float32Array.from({ length: m }, (_, i) => 0.05 + 0.01 * i);
    const x = Float32Array.from({ length: n }, (_, i) => (i % 5 === 0 ? (Math.floor(i / 7) - 20 + 0.5) * s[0] : Math.sin(i * 12.9898) * 3));
    const z = Float32Array.from({ length: m }, (_, i) => (c.qmin === 0 ? 3 + i : 0));
    await initBackend('native');
    const nat = run(c, x, s, z);
    await initBackend('cpu');
    const ref = run(c, x, s, z);
    assert.deepEqual(nat.y, ref.y, `forward ${JSON.stringify(c)}`);
    assert.deepEqual(nat.gx, ref.gx, `dx ${JSON.stringify(c)}`);
    for (const k of ['gs', 'gz'] as const)
      ref[k].forEach((v, i) => assert.ok(Math.abs(nat[k][i] - v) <= 1e-5 * (1 + Math.abs(v)), `${k}[${i}] ${nat[k][i]} vs ${v} ${JSON.stringify(c)}`));
  }
});

test('native STE fake-quant rounds (half to even) and clamps off-grid zero points as the tfjs-op path; [C] params with an axis', async (t) => {
  if ((await initBackend('native')) !== 'qatkit-native' || !hasFakeQuantKernel()) {
    t.skip('native backend not built');
    return;
  }
  const shape = [3, 6, 4];
  const n = 72;
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i * 7.31) * 2);
  const s = Float32Array.of(0.02, 0.05, 0.1, 0.03, 0.07, 0.2);
  const z = Float32Array.of(2.5, 3.5, -0.5, 300, -7.2, 1.49); // ties both ways, beyond qmax and below qmin
  const run = () => tf.tidy(() => {
    const xs = tf.tensor(x, shape), ss = tf.tensor1d(s), zs = tf.tensor1d(z);
    const opts = { qmin: 0, qmax: 15 };
    const y = fakeQuant(xs, ss, zs, opts, 1);
    const gx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(fakeQuant(a, ss, zs, opts, 1), tf.cos(a))))(xs);
    return [Float32Array.from(y.dataSync()), Float32Array.from(gx.dataSync())];
  });
  await initBackend('native');
  const nat = run();
  await initBackend('cpu');
  const ref = run();
  assert.deepEqual(nat[0], ref[0], 'forward');
  assert.deepEqual(nat[1], ref[1], 'dx');
});

test('native fake-quant of relu(x) (relu: true, one kernel each way) equals tf.relu then the tfjs-op fake-quant', async (t) => {
  if ((await initBackend('native')) !== 'qatkit-native' || !hasFakeQuantKernel()) {
    t.skip('native backend not built');
    return;
  }
  const shape = [4, 5, 6];
  const x = Float32Array.from({ length: 120 }, (_, i) => (i % 7 === 0 ? (i % 2 ? -0 : 0) : i % 5 === 0 ? (Math.floor(i / 5) - 12 + 0.5) * 0.1 : Math.sin(i * 3.7) * 2));
  const cases = [
    { s: Float32Array.of(0.1), z: Float32Array.of(3), axis: undefined, qmin: 0, qmax: 255 },
    { s: Float32Array.of(0.05, 0.1, 0.2, 0.1, 0.3, 0.07), z: Float32Array.of(0, 2.5, 1, 7, 0, 3), axis: 2, qmin: 0, qmax: 15 },
  ];
  const run = (c: (typeof cases)[0]) => tf.tidy(() => {
    const xs = tf.tensor(x, shape), ss = tf.tensor1d(c.s), zs = tf.tensor1d(c.z);
    const opts = { qmin: c.qmin, qmax: c.qmax, relu: true };
    const y = fakeQuant(xs, ss, zs, opts, c.axis);
    const gx = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(fakeQuant(a, ss, zs, opts, c.axis), tf.cos(a))))(xs);
    return [Float32Array.from(y.dataSync()), Float32Array.from(gx.dataSync())];
  });
  for (const c of cases) {
    await initBackend('native');
    const nat = run(c);
    await initBackend('cpu');
    const ref = run(c);
    assert.deepEqual(nat[0], ref[0], `forward axis ${c.axis}`);
    assert.deepEqual(nat[1], ref[1], `dx axis ${c.axis}`);
  }
});
