import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from './dist/src/backend/index.js';
import { batchNormTrain } from './dist/src/backend/batchnorm_kernels.js';
for (const be of ['cpu', 'native'])
for (const shape of [[4, 7, 7, 6], [1, 5, 3, 33], [32, 10], [3, 2, 2, 1]]) {
await initBackend(be);
const c = shape[shape.length-1];
try {
const r = tf.tidy(() => {
  const x = tf.randomNormal(shape), w = tf.randomNormal(shape), s = tf.ones([c]), o = tf.zeros([c]);
  const { y, mean, variance } = batchNormTrain(x, s, o, 1e-3);
  const g = tf.grads((a, b, cc) => tf.sum(tf.mul(batchNormTrain(a, b, cc, 1e-3).y, w)))([x, s, o]);
  return [y, mean, variance, ...g];
});
console.log(be, shape, r.map(t => t.isDisposed));
} catch (e) { console.log(e.stack); }
}
