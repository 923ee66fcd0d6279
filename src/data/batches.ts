// Mini-batches. The order of an epoch is a pure function of (seed, epoch): a resumed run replays the same batches
// without storing a permutation, and startBatch skips ahead without building the skipped tensors.
import * as tf from '@tensorflow/tfjs-core';
import { mixSeed, permutation, Rng } from '../util/rng.js';
import type { Dataset } from './datasets.js';

export interface Batch {
  /** [B, C, H, W] float32 */
  x: tf.Tensor4D;
  /** [B] int32 class labels */
  y: tf.Tensor1D;
  /** the dataset indices of the rows */
  indices: Int32Array;
}

export interface BatchOptions {
  batchSize: number;
  /** default true */
  shuffle?: boolean;
  seed?: number;
  epoch?: number;
  /** drop the last batch when it is smaller than batchSize (default false) */
  dropLast?: boolean;
  /** start at this batch of the epoch (resume) */
  startBatch?: number;
}

export function numBatches(n: number, batchSize: number, dropLast = false): number {
  return dropLast ? Math.floor(n / batchSize) : Math.ceil(n / batchSize);
}

/** The example order of one epoch: a seeded permutation, or 0..n-1 without shuffle. */
export function epochOrder(n: number, opts: { shuffle?: boolean; seed?: number; epoch?: number } = {}): Int32Array {
  if (opts.shuffle === false) return Int32Array.from({ length: n }, (_, i) => i);
  return permutation(n, new Rng(mixSeed(opts.seed ?? 0, opts.epoch ?? 0)));
}

/** The rows `indices` of the dataset as tensors. The caller disposes x and y. */
export function gatherBatch(ds: Dataset, indices: Int32Array): Batch {
  const [c, h, w] = ds.shape;
  const size = c * h * w;
  const x = new Float32Array(indices.length * size);
  const y = new Int32Array(indices.length);
  for (let i = 0; i < indices.length; i++) {
    const j = indices[i]!;
    if (!(j >= 0 && j < ds.n)) throw new RangeError(`gatherBatch: index ${j} is outside dataset ${ds.name} of ${ds.n} examples`);
    x.set(ds.images.subarray(j * size, (j + 1) * size), i * size);
    y[i] = ds.labels[j]!;
  }
  return { x: tf.tensor4d(x, [indices.length, c, h, w], 'float32'), y: tf.tensor1d(y, 'int32'), indices };
}

/** Yields the batches of one epoch. Each batch's tensors belong to the caller, who disposes them. */
export function* batches(ds: Dataset, opts: BatchOptions): Generator<Batch> {
  const { batchSize } = opts;
  if (!(Number.isInteger(batchSize) && batchSize > 0)) throw new RangeError(`batches: batchSize must be a positive integer, got ${batchSize}`);
  const order = epochOrder(ds.n, opts);
  const count = numBatches(ds.n, batchSize, opts.dropLast);
  for (let b = opts.startBatch ?? 0; b < count; b++) {
    yield gatherBatch(ds, order.subarray(b * batchSize, Math.min(ds.n, (b + 1) * batchSize)));
  }
}
