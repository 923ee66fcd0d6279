import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../backend/index.js';
import { emptyGraph, floatTensor, int, ints, type Graph, type TensorData } from '../graph/ir.js';
import { normalize } from '../onnx/normalize.js';
import { readOnnx } from '../onnx/model.js';
import { runningAverage, Session } from './session.js';
import { buildModel } from '../zoo/models.js';

const FIX = new URL('../../../test/fixtures/onnx/', import.meta.url);

interface Fixture {
  file: string;
  reference: string;
  inputs: { name: string }[];
  outputs: { name: string }[];
}

const maxRelErr = (a: Float32Array, b: ArrayLike<number>) => {
  let err = 0;
  let scale = 1e-6;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return err / scale;
};

for (const backend of ['cpu', 'wasm'] as const) {
  test(`executor matches PyTorch on every imported ONNX fixture (${backend})`, async () => {
    await initBackend(backend);
    const index = JSON.parse(readFileSync(new URL('index.json', FIX), 'utf8')) as { models: Fixture[] };
    assert.ok(index.models.length >= 8);
    for (const m of index.models) {
      const g = normalize(readOnnx(new Uint8Array(readFileSync(new URL(m.file, FIX))), m.file));
      type T = Record<string, { dims: number[]; data: number[] }>;
      const { inputs: rin, outputs: rout } = JSON.parse(readFileSync(new URL(m.reference, FIX), 'utf8')) as { inputs: T; outputs: T };
      const ref = { ...rin, ...rout };
      const s = new Session(g);
      const feeds = Object.fromEntries(m.inputs.map((i) => [i.name, tf.tensor(ref[i.name].data, ref[i.name].dims, 'float32')]));
      const outs = s.run(feeds);
      m.outputs.forEach((o, k) => {
        assert.deepEqual(outs[k].shape, ref[o.name].dims, `${m.file}: output shape`);
        const err = maxRelErr(outs[k].dataSync() as Float32Array, ref[o.name].data);
        assert.ok(err < 1e-5, `${m.file}: output '${o.name}' differs from PyTorch by ${err} (relative to max)`);
      });
      tf.dispose([...Object.values(feeds), ...outs]);
      s.dispose();
    }
  });
}

function convNet(): Graph {
  const g = emptyGraph('t');
  g.inputs.push({ name: 'x', dtype: 'float32', shape: ['N', 3, 7, 7] });
  const rnd = (n: number, k: number) => Float32Array.from({ length: n }, (_, i) => Math.sin(i * 1.7 + k));
  g.initializers.set('w', floatTensor([4, 3, 3, 3], rnd(108, 1)));
  g.initializers.set('b', floatTensor([4], rnd(4, 2)));
  g.initializers.set('gamma', floatTensor([4], [1, 2, 0.5, 1.5]));
  g.initializers.set('beta', floatTensor([4], [0.1, -0.2, 0.3, 0]));
  g.initializers.set('mean', floatTensor([4], [0, 0.5, -0.5, 1]));
  g.initializers.set('var', floatTensor([4], [1, 2, 0.5, 4]));
  g.nodes.push(
    { name: 'conv', op: 'Conv', inputs: ['x', 'w', 'b'], outputs: ['c'], attrs: { pads: ints([1, 1, 1, 1]), strides: ints([2, 2]) } },
    { name: 'bn', op: 'BatchNormalization', inputs: ['c', 'gamma', 'beta', 'mean', 'var'], outputs: ['y'], attrs: {} },
    { name: 'flat', op: 'Flatten', inputs: ['y'], outputs: ['z'], attrs: { axis: int(1) } },
  );
  g.outputs.push({ name: 'z', dtype: 'float32' });
  return g;
}

test('NHWC inside, ONNX NCHW semantics outside: Flatten after Conv keeps channel-major order', async () => {
  await initBackend('cpu');
  const g = convNet();
  const x = tf.tensor(Float32Array.from({ length: 2 * 3 * 7 * 7 }, (_, i) => Math.cos(i)), [2, 3, 7, 7]);
  const [z] = new Session(g).run({ x });
  // reference: tfjs conv in NCHW terms done by hand through NHWC, then transpose back before flattening
  const w = tf.tensor((g.initializers.get('w') as TensorData).data as Float32Array, [4, 3, 3, 3]);
  const c = tf.conv2d(tf.transpose(x, [0, 2, 3, 1]) as tf.Tensor4D, tf.transpose(w, [2, 3, 1, 0]) as tf.Tensor4D, 2, [[0, 0], [1, 1], [1, 1], [0, 0]]);
  const bn = tf.batchNorm(tf.add(c, tf.tensor1d([...(g.initializers.get('b')!.data as Float32Array)])), tf.tensor1d([0, 0.5, -0.5, 1]), tf.tensor1d([1, 2, 0.5, 4]), tf.tensor1d([0.1, -0.2, 0.3, 0]), tf.tensor1d([1, 2, 0.5, 1.5]), 1e-5);
  const ref = tf.reshape(tf.transpose(bn, [0, 3, 1, 2]), [2, -1]);
  assert.deepEqual(z.shape, [2, 64]);
  assert.ok(maxRelErr(z.dataSync() as Float32Array, ref.dataSync()) < 1e-6);
});

test('BatchNormalization in training uses batch statistics and updates running stats with ONNX momentum', async () => {
  await initBackend('cpu');
  const g = convNet();
  const s = new Session(g);
  const x = tf.randomNormal([4, 3, 7, 7], 0, 1, 'float32', 3);
  tf.tidy(() => s.run({ x }, { training: true }));
  const c = tf.tidy(() => {
    const sc = new Session({ ...g, nodes: g.nodes.slice(0, 1), outputs: [{ name: 'c', dtype: 'float32' }] });
    return sc.run({ x })[0];
  });
  const { mean, variance } = tf.moments(c, [0, 2, 3]);
  const n = 4 * 4 * 4;
  const expMean = tf.add(tf.mul(tf.tensor1d([0, 0.5, -0.5, 1]), 0.9), tf.mul(mean, 0.1));
  const expVar = tf.add(tf.mul(tf.tensor1d([1, 2, 0.5, 4]), 0.9), tf.mul(tf.mul(variance, n / (n - 1)), 0.1));
  s.applyUpdates();
  assert.ok(maxRelErr(s.vars.get('mean')!.dataSync() as Float32Array, expMean.dataSync()) < 1e-5);
  assert.ok(maxRelErr(s.vars.get('var')!.dataSync() as Float32Array, expVar.dataSync()) < 1e-5);
  assert.ok(s.bufferNames.has('mean') && s.bufferNames.has('var') && !s.params().has('mean') && s.params().has('w'));
});

test('runningAverage rounds as the tfjs ops running*m + stat*scale*(1-m) do, bit for bit', async () => {
  await initBackend('cpu');
  const n = 4096;
  const run = tf.randomNormal([n], 0, 3, 'float32', 5), stat = tf.randomUniform([n], 0, 7, 'float32', 6);
  for (const [m, scale] of [[0.9, 1], [0.9, 1024 / 1023], [0.99, 50 / 49], [0.1, 1]]) {
    const want = tf.tidy(() => tf.add(tf.mul(run, m), tf.mul(tf.mul(stat, scale), 1 - m)).dataSync());
    const got = runningAverage(run.dataSync() as Float32Array, stat.dataSync() as Float32Array, m, scale);
    assert.deepEqual(new Uint32Array(got.buffer), new Uint32Array(Float32Array.from(want).buffer), `m=${m} scale=${scale}`);
  }
  tf.dispose([run, stat]);
});

test('an unsupported op is reported by node name and op', async () => {
  await initBackend('cpu');
  const g = convNet();
  g.nodes.push({ name: 'weird', op: 'NonMaxSuppression', inputs: ['z'], outputs: ['q'], attrs: {} });
  assert.throws(() => new Session(g), /node 'weird' \(op NonMaxSuppression\)/);
});

test('an Add whose output only a Relu reads runs as one relu(a + b) each way; a second reader keeps them apart', async () => {
  await initBackend(); // native where built: QatAddRelu
  const build = (extraReader: boolean): Graph => {
    const g = emptyGraph('t');
    g.inputs.push({ name: 'a', dtype: 'float32', shape: [2, 3, 4, 5] }, { name: 'b', dtype: 'float32', shape: [2, 3, 4, 5] });
    g.nodes.push(
      { name: 'add', op: 'Add', inputs: ['a', 'b'], outputs: ['s'], attrs: {} },
      { name: 'relu', op: 'Relu', inputs: ['s'], outputs: ['y'], attrs: {} },
    );
    g.outputs.push({ name: 'y', dtype: 'float32' });
    if (extraReader) g.outputs.push({ name: 's', dtype: 'float32' });
    return g;
  };
  const a = tf.randomNormal([2, 3, 4, 5], 0, 1, 'float32', 8), b = tf.randomNormal([2, 3, 4, 5], 0, 1, 'float32', 9);
  const dy = tf.randomNormal([2, 3, 4, 5], 0, 1, 'float32', 10);
  const want = tf.relu(tf.add(a, b));
  const wantGrads = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.relu(tf.add(x, y)))([a, b], dy);
  const bits = (t: tf.Tensor) => [...new Uint32Array(Float32Array.from(t.dataSync()).buffer)];
  for (const extra of [false, true]) {
    const s = new Session(build(extra));
    const info = await tf.profile(() => s.run({ a, b })[0]);
    const names = info.kernels.map((k) => k.name);
    if (tf.getKernel('QatAddRelu', tf.getBackend())) assert.equal(names.includes('QatAddRelu'), !extra, names.join());
    assert.equal(names.includes('Relu'), extra || !tf.getKernel('QatAddRelu', tf.getBackend()), names.join());
    const outs = s.run({ a, b });
    assert.deepEqual(bits(outs[0]), bits(want));
    if (extra) assert.deepEqual(bits(outs[1]), bits(tf.add(a, b)));
    const got = tf.grads((x: tf.Tensor, y: tf.Tensor) => s.run({ a: x, b: y })[0])([a, b], dy);
    got.forEach((g, i) => assert.deepEqual(bits(g), bits(wantGrads[i]), `grad ${i}`));
  }
});

test('a training BatchNormalization whose output only a Relu reads runs with the Relu fused in: zoo steps keep their bits', async () => {
  const bits = (t: tf.Tensor) => [...new Uint32Array(Float32Array.from(t.dataSync()).buffer)];
  // cpu: relu(bn) on tfjs ops; then native where built: QatBatchNormApply / QatBatchNormTrainGrad with the relu
  for (const [backend, name] of [['cpu', 'lenet5'], ['cpu', 'resnet8'], [undefined, 'lenet5'], [undefined, 'resnet8']] as const) {
    await initBackend(backend);
    const what = `${tf.getBackend()} ${name}`;
    // unfused: every BN output is also a graph output, so its Relu is not its only reader
    const build = (fuse: boolean): Graph => {
      const g = buildModel(name, { inputShape: [3, 16, 16], numClasses: 10, seed: 5 });
      const bns = g.nodes.filter((n) => n.op === 'BatchNormalization');
      assert.ok(bns.length > 0, what);
      if (!fuse) for (const n of bns) g.outputs.push({ name: n.outputs[0], dtype: 'float32' });
      return g;
    };
    const x = tf.randomNormal([4, 3, 16, 16], 0, 1, 'float32', 21);
    const labels = tf.oneHot(tf.tensor1d([1, 3, 5, 7], 'int32'), 10);
    const steps = (s: Session) => {
      const out: { loss: number[]; grads: number[][] }[] = [];
      for (let step = 0; step < 3; step++) {
        const params = [...s.params().values()];
        const loss = () => tf.losses.softmaxCrossEntropy(labels, s.run({ [s.graph.inputs[0].name]: x }, { training: true })[0]) as tf.Scalar;
        const { value, grads } = tf.variableGrads(loss, params);
        out.push({ loss: bits(value), grads: params.map((p) => bits(grads[p.name])) });
        for (const p of params) p.assign(tf.sub(p, tf.mul(grads[p.name], 0.1)));
        s.applyUpdates();
      }
      return out;
    };
    const fused = new Session(build(true)), plain = new Session(build(false));
    const kernels = async (s: Session) =>
      (await tf.profile(() => s.run({ [s.graph.inputs[0].name]: x }, { training: true }))).kernels.map((k) => k.name);
    const [kf, kp] = [await kernels(fused), await kernels(plain)];
    const count = (ks: string[], k: string) => ks.filter((n) => n === k).length;
    if (tf.getKernel('QatBatchNormApply', tf.getBackend())) assert.ok(count(kf, 'Relu') < count(kp, 'Relu'), `${what}: ${kf.join()}`);
    fused.applyUpdates();
    plain.applyUpdates();
    const [a, b] = [steps(fused), steps(plain)];
    a.forEach((st, i) => {
      assert.deepEqual(st.loss, b[i].loss, `${what} step ${i} loss`);
      st.grads.forEach((g, j) => assert.deepEqual(g, b[i].grads[j], `${what} step ${i} grad ${j}`));
    });
    fused.dispose();
    plain.dispose();
  }
});
