import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/index.js';
import { QATKIT_DOMAIN, attrInt, type Graph } from '../graph/ir.js';
import { Session } from '../ops/session.js';
import { makeRecipe, recipeByName } from '../spec/quantspec.js';
import { buildModel } from '../zoo/models.js';
import { QuantController } from './controller.js';
import { foldBatchNorm, foldConvBn } from './fold.js';
import { prepare } from './prepare.js';

const maxAbs = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);

/** a ResNet whose BatchNorms have non-trivial statistics, so folding is really tested */
function trainedish(name: string): Graph {
  const g = buildModel(name, { inputShape: [1, 12, 12], numClasses: 5, seed: 3 });
  let k = 0;
  for (const [n, t] of g.initializers) {
    const d = t.data as Float32Array;
    if (/running_var$/.test(n)) d.forEach((_, i) => (d[i] = 0.5 + ((k++ * 37) % 11) / 7));
    else if (/running_mean$|bn\d+\.bias$/.test(n)) d.forEach((_, i) => (d[i] = Math.sin(k++) * 0.3));
    else if (/bn\d+\.weight$/.test(n)) d.forEach((_, i) => (d[i] = 0.6 + Math.cos(k++) * 0.3));
  }
  return g;
}

test('foldBatchNorm keeps the eval-mode outputs', async () => {
  await initBackend('cpu');
  const g = trainedish('resnet8');
  const folded = foldBatchNorm(structuredClone(g));
  assert.equal(folded.nodes.filter((n) => n.op === 'BatchNormalization').length, 0);
  const x = tf.randomNormal([3, 1, 12, 12], 0, 1, 'float32', 1);
  const a = new Session(g).run({ input: x })[0];
  const b = new Session(folded).run({ input: x })[0];
  assert.ok(maxAbs(a, b) < 1e-4, `folded differs by ${maxAbs(a, b)}`);
});

test('prepare puts one quantizer on each activation tensor, per-channel weight quantizers, shared grids through MaxPool/Flatten', () => {
  const g = prepare(buildModel('lenet5', { inputShape: [1, 28, 28], numClasses: 10 }), { recipe: recipeByName('w8a8'), mode: 'ptq' });
  const fq = g.nodes.filter((n) => n.op === 'FakeQuant' && n.domain === QATKIT_DOMAIN);
  const weights = fq.filter((n) => n.attrs.role?.value === 'weight');
  assert.equal(weights.length, 5); // 2 convs + 3 fc
  for (const w of weights) assert.equal(attrInt(w, 'axis'), 0);
  // every Conv/Gemm input is produced by a FakeQuant
  const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  for (const n of g.nodes.filter((n) => n.op === 'Conv' || n.op === 'Gemm'))
    for (const i of n.inputs.slice(0, 2)) assert.equal(producer.get(i)?.op, 'FakeQuant', `${n.name} input ${i}`);
  // no tensor is quantized twice
  const quantizedInputs = fq.map((n) => n.inputs[0]);
  assert.equal(new Set(quantizedInputs).size, quantizedInputs.length);
  // MaxPool and Flatten outputs share their input's scale
  const shared = fq.filter((n) => attrInt(n, 'shared', 0) === 1);
  assert.ok(shared.length >= 3);
  for (const s of shared) {
    const src = producer.get(producer.get(s.inputs[0])!.inputs[0])!;
    assert.equal(src.op, 'FakeQuant');
    assert.equal(s.inputs[1], src.inputs[1]);
  }
});

test('QAT ConvBn in eval mode equals its folded Conv + weight fake-quant', async () => {
  await initBackend('cpu');
  const g = prepare(trainedish('resnet8'), { recipe: recipeByName('w4a8'), mode: 'qat' });
  assert.ok(g.nodes.some((n) => n.op === 'ConvBn'));
  const s = new Session(g);
  const ctrl = new QuantController(s);
  const x = tf.randomNormal([4, 1, 12, 12], 0, 1, 'float32', 2);
  s.run({ input: x }); // observers see one batch
  ctrl.observing = false;
  const a = s.run({ input: x })[0];
  const folded = foldConvBn(s.writeBack());
  assert.equal(folded.nodes.filter((n) => n.op === 'ConvBn').length, 0);
  const b = new Session(folded).run({ input: x })[0];
  // the folded weight is computed in float64 (fold) vs float32 (ConvBn); grids agree up to rare rounding flips
  assert.ok(maxAbs(a, b) < 0.05 * tf.max(tf.abs(a)).dataSync()[0], `differ by ${maxAbs(a, b)}`);
});

test('calibration sets activation qparams from the observed range and leaves the float model alone while observing', async () => {
  await initBackend('cpu');
  const g = prepare(buildModel('mlp', { inputShape: [1, 8, 8], numClasses: 10 }), { recipe: makeRecipe(8, 8), mode: 'ptq' });
  const s = new Session(g);
  const ctrl = new QuantController(s);
  const x = tf.randomUniform([16, 1, 8, 8], -1, 3, 'float32', 5);
  ctrl.enabled = false;
  const floatOut = s.run({ input: x })[0];
  const ref = new Session(buildModel('mlp', { inputShape: [1, 8, 8], numClasses: 10 })).run({ input: x })[0];
  assert.ok(maxAbs(floatOut, ref) < 1e-6);
  const inFq = g.nodes.find((n) => n.op === 'FakeQuant' && n.attrs.role?.value === 'activation')!;
  const min = Math.min(0, tf.min(x).dataSync()[0]);
  const max = tf.max(x).dataSync()[0];
  const scale = s.vars.get(inFq.inputs[1])!.dataSync()[0];
  const zp = s.vars.get(inFq.inputs[2])!.dataSync()[0];
  assert.ok(Math.abs(scale - (max - min) / 255) < 1e-6 * scale + 1e-7, `scale ${scale}`);
  assert.equal(zp, Math.round(-min / scale));
});

test('LSQ makes scales trainable parameters; STE keeps them as buffers', () => {
  const r = recipeByName('w4a4');
  const ste = new Session(prepare(buildModel('mlp', { inputShape: [1, 8, 8], numClasses: 10 }), { recipe: r, mode: 'qat' }));
  assert.ok(![...ste.params().keys()].some((k) => k.endsWith('.scale')));
  r.weights.estimator = r.activations.estimator = 'lsq';
  const lsq = new Session(prepare(buildModel('mlp', { inputShape: [1, 8, 8], numClasses: 10 }), { recipe: r, mode: 'qat' }));
  assert.ok([...lsq.params().keys()].filter((k) => k.endsWith('.scale')).length >= 6);
});
