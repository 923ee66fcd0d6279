// ConvBn's weight folding and the Relu -> FakeQuant fusion give the values and gradients of the unfused tfjs ops, bit for bit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/index.js';
import { bnScaleFactor, foldConvBnWeight, foldWeight } from '../backend/train_kernels.js';
import { Session } from '../ops/session.js';
import { recipeByName } from '../spec/quantspec.js';
import { softmaxCrossEntropy } from '../train/losses.js';
import { buildModel } from '../zoo/models.js';
import { QuantController } from './controller.js';
import { prepare } from './prepare.js';

const bits = (t: tf.Tensor) => new Uint32Array(Float32Array.from(t.dataSync()).buffer);

for (const backend of ['native', 'cpu'] as const) {
  test(`ConvBn folding (${backend}): sf = gamma/sqrt(var+eps) and w*sf with tfjs's gradients, gamma used twice`, async () => {
    await initBackend(backend);
    const [o, i, k] = [6, 4, 3];
    const w = tf.randomNormal([o, i, k, k], 0, 0.3, 'float32', 1);
    const gamma = tf.randomUniform([o], 0.5, 1.5, 'float32', 2);
    const variance = tf.randomUniform([o], 0.1, 3, 'float32', 3);
    const r1 = tf.randomNormal([o, i, k, k], 0, 1, 'float32', 4), r2 = tf.randomNormal([o], 0, 1, 'float32', 5);
    type Fold = (w: tf.Tensor, g: tf.Tensor) => { w: tf.Tensor; sf: tf.Tensor };
    // loss uses sf twice (through the folded weight and directly) and gamma once more, as ConvBn does
    const loss = (fold: Fold) => (ww: tf.Tensor, g: tf.Tensor) => {
      const f = fold(ww, g);
      return tf.add(tf.add(tf.sum(tf.mul(f.w, r1)), tf.sum(tf.mul(tf.div(r2, f.sf), g))), tf.sum(g));
    };
    const plainFold: Fold = (ww, g) => {
      const sf = tf.div(g, tf.sqrt(tf.add(variance, 1e-5)));
      return { w: tf.mul(ww, tf.reshape(sf, [-1, 1, 1, 1])), sf };
    };
    const plain = tf.grads(loss(plainFold))([w, gamma]);
    const composed: Fold = (ww, g) => {
      const sf = bnScaleFactor(g, variance, 1e-5);
      return { w: foldWeight(ww, sf), sf };
    };
    if (backend === 'native') assert.ok(tf.getKernel('QatFoldWeight', tf.getBackend()), 'the native backend registers QatFoldWeight');
    for (const [name, fold] of [['foldConvBnWeight', (ww: tf.Tensor, g: tf.Tensor) => foldConvBnWeight(ww, g, variance, 1e-5)], ['composed', composed]] as const) {
      const ours = tf.grads(loss(fold))([w, gamma]);
      assert.deepEqual(bits(ours[0]), bits(plain[0]), `${name} dw`);
      assert.deepEqual(bits(ours[1]), bits(plain[1]), `${name} dgamma`);
      const [a, b] = [fold(w, gamma), plainFold(w, gamma)];
      assert.deepEqual(bits(a.w), bits(b.w), `${name} w*sf`);
      assert.deepEqual(bits(a.sf), bits(b.sf), `${name} sf`);
      tf.dispose([...ours, a.w, a.sf, b.w, b.sf]);
    }
    tf.dispose([w, gamma, variance, r1, r2, ...plain]);
  });
}

test('a Relu feeding a FakeQuant runs inside it (native: QatReluFakeQuant): same loss and gradients as unfused', async () => {
  if ((await initBackend('native')) !== 'qatkit-native') return;
  const g = prepare(buildModel('lenet5', { inputShape: [1, 16, 16], numClasses: 4, seed: 2 }), { recipe: recipeByName('w4a8'), mode: 'qat' });
  // the same graph with every Relu output also a graph output: then no Relu can be fused
  const unfusable = structuredClone(g);
  for (const n of unfusable.nodes) if (n.op === 'Relu') unfusable.outputs.push({ name: n.outputs[0], dtype: 'float32' });
  const x = tf.randomNormal([8, 1, 16, 16], 0, 1, 'float32', 3);
  const labels = tf.tensor1d([0, 1, 2, 3, 0, 1, 2, 3], 'int32');
  const step = (graph: typeof g) => {
    const s = new Session(graph);
    const ctrl = new QuantController(s);
    tf.tidy(() => { s.run({ input: x }, { training: true }); });
    s.applyUpdates();
    ctrl.observing = false;
    const vars = [...s.params().values()];
    const ts = tf.tidy(() => {
      const { value, grads } = tf.variableGrads(() => softmaxCrossEntropy(s.run({ input: x }, { training: true })[0], labels), vars);
      return [value, ...vars.map((v) => grads[v.name])];
    });
    const out = ts.map(bits);
    tf.dispose(ts);
    s.dispose();
    return out;
  };
  const kernels = async (graph: typeof g) => {
    const s = new Session(graph);
    new QuantController(s).observing = false;
    const k = (await tf.profile(() => tf.tidy(() => { s.run({ input: x }, { training: true }); }))).kernels.map((e) => e.name);
    s.dispose();
    return k;
  };
  assert.ok((await kernels(g)).includes('QatReluFakeQuant'));
  assert.ok(!(await kernels(unfusable)).includes('QatReluFakeQuant'));
  const [a, b] = [step(g), step(unfusable)];
  assert.equal(a.length, b.length);
  a.forEach((t, i) => assert.deepEqual(t, b[i], i === 0 ? 'loss' : `gradient ${i}`));
  tf.dispose([x, labels]);
});
