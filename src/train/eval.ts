// Evaluation over a whole dataset in fixed order.
import * as tf from '@tensorflow/tfjs-core';
import { batches } from '../data/batches.js';
import type { Dataset } from '../data/datasets.js';
import { countCorrect, softmaxCrossEntropy } from './losses.js';

export interface EvalResult {
  accuracy: number;
  /** mean cross-entropy */
  loss: number;
  n: number;
}

/** Runs `forward` (x [B,C,H,W] -> logits [B,K]) over every example; no gradients are recorded. */
export function evaluate(ds: Dataset, forward: (x: tf.Tensor4D) => tf.Tensor, opts: { batchSize?: number } = {}): EvalResult {
  let correct = 0;
  let lossSum = 0;
  for (const b of batches(ds, { batchSize: opts.batchSize ?? 256, shuffle: false })) {
    try {
      tf.tidy(() => {
        const logits = forward(b.x);
        correct += countCorrect(logits, b.y);
        lossSum += softmaxCrossEntropy(logits, b.y).dataSync()[0]! * b.indices.length;
      });
    } finally {
      tf.dispose([b.x, b.y]);
    }
  }
  return { accuracy: correct / Math.max(1, ds.n), loss: lossSum / Math.max(1, ds.n), n: ds.n };
}
