// ConvBn's folding pieces give the values and gradients tfjs's autodiff gives through the plain formulas, bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/index.js';
import { bnScaleFactor, foldWeight } from './qat_ops.js';

const bits = (t: tf.Tensor) => new Uint32Array(Float32Array.from(t.dataSync()).buffer);

for (const backend of ['native', 'cpu'] as const) {
  test(`ConvBn folding (${backend}): sf = gamma/sqrt(var+eps) and w*sf with tfjs's gradients, gamma used twice`, async () => {
    await initBackend(backend);
    const [o, i, k] = [6, 4, 3];
    const w = tf.randomNormal([o, i, k, k], 0, 0.3, 'float32', 1);
    const gamma = tf.randomUniform([o], 0.5, 1.5, 'float32', 2);
    const variance = tf.randomUniform([o], 0.1, 3, 'float32', 3);
    const r1 = tf.randomNormal([o, i, k, k], 0, 1, 'float32', 4), r2 = tf.randomNormal([o], 0, 1, 'float32', 5);
    // loss uses sf twice (through the folded weight and directly) and gamma once more, as ConvBn does
    const loss = (fold: (w: tf.Tensor, s: tf.Tensor) => tf.Tensor, scale: (g: tf.Tensor) => tf.Tensor) => (ww: tf.Tensor, g: tf.Tensor) => {
      const sf = scale(g);
      return tf.add(tf.add(tf.sum(tf.mul(fold(ww, sf), r1)), tf.sum(tf.mul(tf.div(r2, sf), g))), tf.sum(g));
    };
    const ours = tf.grads(loss(foldWeight, (g) => bnScaleFactor(g, variance, 1e-5)))([w, gamma]);
    const plain = tf.grads(loss((ww, s) => tf.mul(ww, tf.reshape(s, [-1, 1, 1, 1])), (g) => tf.div(g, tf.sqrt(tf.add(variance, 1e-5)))))([w, gamma]);
    assert.deepEqual(bits(ours[0]), bits(plain[0]), 'dw');
    assert.deepEqual(bits(ours[1]), bits(plain[1]), 'dgamma');
    assert.deepEqual(bits(foldWeight(w, bnScaleFactor(gamma, variance, 1e-5))), bits(tf.mul(w, tf.reshape(tf.div(gamma, tf.sqrt(tf.add(variance, 1e-5))), [-1, 1, 1, 1]))));
    tf.dispose([w, gamma, variance, r1, r2, ...ours, ...plain]);
  });
}
