// Accuracy of an exported ONNX model in ONNX Runtime (node), the runtime users deploy with.
import * as ort from 'onnxruntime-node';
import type { Dataset } from '../data/datasets.js';
import type { Graph } from '../graph/ir.js';
import { createIntSession } from '../int/engine.js';
import '../int/native_gemm.js'; // Node: the native addon's int8 GEMM for the integer engine, when built

export interface OrtEval {
  accuracy: number;
  n: number;
  /** argmax predictions, for agreement checks against the simulation */
  predictions: Int32Array;
}

/** Count argmax hits of a [b, k] logits block against labels from `start`, recording predictions. */
function score(logits: Float32Array, b: number, start: number, ds: Dataset, predictions: Int32Array): number {
  const k = logits.length / b;
  let correct = 0;
  for (let i = 0; i < b; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (logits[i * k + j] > logits[i * k + best]) best = j;
    predictions[start + i] = best;
    if (best === ds.labels[start + i]) correct++;
  }
  return correct;
}

export async function ortEvaluate(model: Uint8Array, ds: Dataset, batchSize = 256): Promise<OrtEval> {
  const session = await ort.InferenceSession.create(model, { graphOptimizationLevel: 'all', intraOpNumThreads: 2 });
  const inName = session.inputNames[0];
  const outName = session.outputNames[0];
  const per = ds.shape[0] * ds.shape[1] * ds.shape[2];
  const predictions = new Int32Array(ds.n);
  let correct = 0;
  try {
    for (let start = 0; start < ds.n; start += batchSize) {
      const b = Math.min(batchSize, ds.n - start);
      const x = new ort.Tensor('float32', ds.images.subarray(start * per, (start + b) * per), [b, ...ds.shape]);
      const out = await session.run({ [inName]: x });
      correct += score(out[outName].data as Float32Array, b, start, ds, predictions);
    }
  } finally {
    await session.release();
  }
  return { accuracy: correct / ds.n, n: ds.n, predictions };
}

/** Accuracy of an integer graph (converted, QOperator or packed) in our integer engine: no tfjs, no float inside. */
export function intEvaluate(g: Graph, ds: Dataset, batchSize = 256): OrtEval {
  const session = createIntSession(g);
  const inName = session.inputNames[0];
  const outName = session.outputNames[0];
  const per = ds.shape[0] * ds.shape[1] * ds.shape[2];
  const predictions = new Int32Array(ds.n);
  let correct = 0;
  for (let start = 0; start < ds.n; start += batchSize) {
    const b = Math.min(batchSize, ds.n - start);
    const x = { dtype: 'float32' as const, dims: [b, ...ds.shape], data: ds.images.subarray(start * per, (start + b) * per) };
    correct += score(session.run({ [inName]: x })[outName].data as Float32Array, b, start, ds, predictions);
  }
  return { accuracy: correct / ds.n, n: ds.n, predictions };
}
