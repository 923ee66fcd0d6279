import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { setupTfjs } from '../util/tfjs.js';
import { accuracy, klDistillation, softmaxCrossEntropy } from './losses.js';
import { constantLr, cosineLr, scheduleLr } from './schedule.js';

await setupTfjs();

const near = (a: number, b: number, tol = 1e-5) => assert.ok(Math.abs(a - b) <= tol, `${a} != ${b}`);
const val = (t: tf.Tensor) => {
  const v = t.dataSync()[0]!;
  t.dispose();
  return v;
};

test('softmaxCrossEntropy: value, batch mean, and stability for large logits', () => {
  const labels = tf.tensor1d([2, 0], 'int32');
  // row 0: -log(e^3 / (e + e^2 + e^3)) = log(1 + e^-1 + e^-2); row 1: log(1 + 2e^0) since all logits are equal
  const l = val(softmaxCrossEntropy(tf.tensor2d([[1, 2, 3], [5, 5, 5]]), labels));
  near(l, (Math.log(1 + Math.exp(-1) + Math.exp(-2)) + Math.log(3)) / 2);
  const big = tf.tensor2d([[1000, 0], [1000, 0]]);
  const l2 = val(softmaxCrossEntropy(big, tf.tensor1d([0, 1], 'int32')));
  near(l2, 500, 1e-3);
  assert.throws(() => softmaxCrossEntropy(big, tf.tensor1d([0, 1])), /labels must be int32 \[2\]/);
});

test('softmaxCrossEntropy: gradient is (softmax - onehot) / batch', () => {
  const logits = tf.tensor2d([[1, 2, 3], [0, 0, 0]]);
  const labels = tf.tensor1d([2, 1], 'int32');
  const g = tf.grad((x: tf.Tensor) => softmaxCrossEntropy(x, labels))(logits).arraySync() as number[][];
  const z = Math.exp(1) + Math.exp(2) + Math.exp(3);
  const expected = [
    [Math.exp(1) / z / 2, Math.exp(2) / z / 2, (Math.exp(3) / z - 1) / 2],
    [1 / 6, (1 / 3 - 1) / 2, 1 / 6],
  ];
  g.forEach((row, i) => row.forEach((v, j) => near(v, expected[i]![j]!)));
});

test('softmaxCrossEntropy: value and gradient bit for bit those of tfjs autodiff through the plain formula', () => {
  const [b, k] = [37, 10];
  const logits = tf.mul(tf.randomNormal([b, k], 0, 1, 'float32', 11), 4);
  const labels = tf.tensor1d(Int32Array.from({ length: b }, (_, i) => (i * 7) % k), 'int32');
  const plain = (x: tf.Tensor) => tf.neg(tf.mean(tf.sum(tf.mul(tf.logSoftmax(x), tf.cast(tf.oneHot(labels, k), 'float32')), 1))) as tf.Scalar;
  const bits = (t: tf.Tensor) => new Uint32Array(Float32Array.from(t.dataSync()).buffer);
  const a = tf.valueAndGrad((x: tf.Tensor) => softmaxCrossEntropy(x, labels))(logits);
  const r = tf.valueAndGrad(plain)(logits);
  assert.deepEqual(bits(a.value), bits(r.value));
  assert.deepEqual(bits(a.grad), bits(r.grad));
});

test('klDistillation: T^2 * KL(teacher || student) at temperature T', () => {
  const s = tf.tensor2d([[0, 0]]);
  const t = tf.tensor2d([[Math.log(3), 0]]);
  // T=1: p_t = [3/4, 1/4], p_s = [1/2, 1/2]
  near(val(klDistillation(s, t, 1)), 0.75 * Math.log(1.5) + 0.25 * Math.log(0.5));
  // T=2: p_t = [sqrt3, 1] / (sqrt3 + 1); times T^2 = 4
  const a = Math.sqrt(3) / (Math.sqrt(3) + 1);
  near(val(klDistillation(s, t, 2)), 4 * (a * Math.log(2 * a) + (1 - a) * Math.log(2 * (1 - a))));
  near(val(klDistillation(t, t, 3)), 0);
  assert.throws(() => klDistillation(s, tf.tensor2d([[0, 0, 0]]), 1), /same \[batch, classes\] shape/);
});

test('accuracy: fraction of rows whose argmax is the label', () => {
  const logits = tf.tensor2d([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [1, 0]]);
  assert.equal(accuracy(logits, tf.tensor1d([1, 0, 0, 1], 'int32')), 0.5);
});

test('cosineLr: warmup, half-way, end, and minLr', () => {
  near(cosineLr(0, 100, 1), 1);
  near(cosineLr(50, 100, 1), 0.5);
  near(cosineLr(100, 100, 1), 0);
  near(cosineLr(25, 100, 2), 1 + Math.cos(Math.PI / 4));
  // warmup 10: step s gets (s+1)/10, then cosine over the remaining 90 steps
  near(cosineLr(0, 100, 1, { warmupSteps: 10 }), 0.1);
  near(cosineLr(9, 100, 1, { warmupSteps: 10 }), 1);
  near(cosineLr(10, 100, 1, { warmupSteps: 10 }), 1);
  near(cosineLr(55, 100, 1, { warmupSteps: 10 }), 0.5);
  near(cosineLr(55, 100, 1, { warmupSteps: 10, minLr: 0.1 }), 0.55);
  near(cosineLr(100, 100, 1, { minLr: 0.1 }), 0.1);
  near(constantLr(3, 0.2, { warmupSteps: 4 }), 0.2);
  near(constantLr(1, 0.2, { warmupSteps: 4 }), 0.1);
  near(scheduleLr({ kind: 'constant' }, 7, 10, 0.3), 0.3);
  assert.throws(() => scheduleLr({ kind: 'step' }, 0, 1, 1), /unknown schedule 'step'/);
});
