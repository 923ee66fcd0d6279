import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { setupTfjs } from '../util/tfjs.js';
import { batches, epochOrder, numBatches } from './batches.js';
import type { Dataset } from './datasets.js';

await setupTfjs();

/** 10 examples of shape [1,2,2] whose pixels all equal the example index. */
const ds: Dataset = {
  name: 'toy',
  images: Float32Array.from({ length: 40 }, (_, i) => Math.floor(i / 4)),
  labels: Int32Array.from({ length: 10 }, (_, i) => i % 3),
  n: 10,
  shape: [1, 2, 2],
  numClasses: 3,
  mean: [0],
  std: [1],
};

const orderOf = (seed: number, epoch: number) => {
  const out: number[] = [];
  for (const b of batches(ds, { batchSize: 4, shuffle: true, seed, epoch })) {
    out.push(...b.indices);
    tf.dispose([b.x, b.y]);
  }
  return out;
};

test('batches: the same (seed, epoch) gives the same order; another seed or epoch another', () => {
  const a = orderOf(1, 0);
  assert.deepEqual(orderOf(1, 0), a);
  assert.notDeepEqual(orderOf(2, 0), a);
  assert.notDeepEqual(orderOf(1, 1), a);
  assert.deepEqual([...a].sort((x, y) => x - y), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
  assert.deepEqual([...epochOrder(5, { shuffle: false })], [0, 1, 2, 3, 4]);
});

test('batches: tensors hold the rows of their indices; the last partial batch is kept or dropped', () => {
  const before = tf.memory().numTensors;
  const all = [...batches(ds, { batchSize: 4, seed: 3, epoch: 0 })];
  assert.deepEqual(all.map((b) => b.x.shape), [[4, 1, 2, 2], [4, 1, 2, 2], [2, 1, 2, 2]]);
  for (const b of all) {
    assert.equal(b.y.dtype, 'int32');
    const x = b.x.dataSync();
    b.indices.forEach((j, i) => {
      assert.deepEqual([...x.subarray(i * 4, i * 4 + 4)], [j, j, j, j]);
      assert.equal(b.y.dataSync()[i], j % 3);
    });
    tf.dispose([b.x, b.y]);
  }
  assert.equal(tf.memory().numTensors, before);
  const dropped = [...batches(ds, { batchSize: 4, seed: 3, epoch: 0, dropLast: true })];
  assert.equal(dropped.length, 2);
  assert.deepEqual(dropped.map((b) => [...b.indices]), all.slice(0, 2).map((b) => [...b.indices]));
  dropped.forEach((b) => tf.dispose([b.x, b.y]));
  assert.deepEqual([numBatches(10, 4), numBatches(10, 4, true), numBatches(8, 4, true)], [3, 2, 2]);
});

test('batches: startBatch resumes mid-epoch with the same batches', () => {
  const full = [...batches(ds, { batchSize: 3, seed: 8, epoch: 2 })].map((b) => (tf.dispose([b.x, b.y]), [...b.indices]));
  const tail = [...batches(ds, { batchSize: 3, seed: 8, epoch: 2, startBatch: 2 })].map((b) => (tf.dispose([b.x, b.y]), [...b.indices]));
  assert.deepEqual(tail, full.slice(2));
});
