// The native backend trains like the wasm backend: same seed, same first-epoch loss to 1e-4 relative. Over a long
// run, float32 summation-order differences grow (SGD is chaotic), so this checks a short epoch; a full MNIST epoch
// is measured in the benchmark notes instead.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, nativeLoadError } from '../src/backend/index.js';
import { loadDataset } from '../src/data/datasets.js';
import { evaluateGraph, trainFloat } from '../src/pipeline/steps.js';
import { buildModel } from '../src/zoo/models.js';

test('LeNet-5 on 640 MNIST images (10 steps): first-epoch loss on native equals wasm to 1e-4 relative', async (t) => {
  const train = loadDataset('mnist', { split: 'train', limit: 640 });
  const test_ = loadDataset('mnist', { split: 'test', limit: 500 });
  const run = async (backend: 'native' | 'wasm') => {
    const name = await initBackend(backend);
    if (backend === 'native' && name !== 'qatkit-native') return undefined;
    const g = buildModel('lenet5', { inputShape: train.shape, numClasses: 10, seed: 7 });
    const { graph, result } = await trainFloat(g, train, { epochs: 1, batchSize: 64, lr: 0.05, seed: 3 });
    return { loss: result.epochLosses[0], acc: evaluateGraph(graph, test_).accuracy, backend: tf.getBackend() };
  };
  const wasm = await run('wasm');
  const native = await run('native');
  if (!native) {
    t.skip(`native backend not built: ${nativeLoadError()}`);
    return;
  }
  assert.equal(native.backend, 'qatkit-native');
  assert.equal(wasm!.backend, 'wasm');
  const rel = Math.abs(native.loss - wasm!.loss) / wasm!.loss;
  assert.ok(rel < 1e-4, `first-epoch loss native ${native.loss} vs wasm ${wasm!.loss} (relative ${rel})`);
  assert.ok(Math.abs(native.acc - wasm!.acc) <= 0.004, `accuracy native ${native.acc} vs wasm ${wasm!.acc}`);
});
