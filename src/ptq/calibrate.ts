// Post-training quantization: run the float model over N calibration batches with every quantizer observing and
// none quantizing, then switch the quantizers on with the qparams the observers chose. No training.
import * as tf from '@tensorflow/tfjs-core';
import { batches } from '../data/batches.js';
import type { Dataset } from '../data/datasets.js';
import type { Graph } from '../graph/ir.js';
import { Session } from '../ops/session.js';
import type { Recipe } from '../spec/quantspec.js';
import { QuantController } from '../transform/controller.js';
import { prepare } from '../transform/prepare.js';
import { finalizeQuantized } from '../transform/finalize.js';

export interface CalibrateOptions {
  /** number of calibration batches (default 16) */
  batches?: number;
  batchSize?: number;
  seed?: number;
}

/** Calibrate an already prepared graph in its session. */
export function calibrate(session: Session, ctrl: QuantController, data: Dataset, opts: CalibrateOptions = {}): void {
  const nb = opts.batches ?? 16;
  ctrl.enabled = false;
  ctrl.observing = true;
  let k = 0;
  for (const b of batches(data, { batchSize: opts.batchSize ?? 64, shuffle: true, seed: opts.seed ?? 0 })) {
    tf.tidy(() => void session.run({ [session.graph.inputs[0].name]: b.x }));
    tf.dispose([b.x, b.y]);
    if (++k >= nb) break;
  }
  ctrl.enabled = true;
  ctrl.observing = false;
}

/**
 * PTQ of a float graph: prepare (BN folded), calibrate, and return the quantized graph with its qparams, its biases
 * snapped to the int32 grid (s_x * s_w) the integer model adds them on, so the simulation is what gets deployed.
 */
export function ptq(floatGraph: Graph, recipe: Recipe, data: Dataset, opts: CalibrateOptions = {}): Graph {
  const session = new Session(prepare(floatGraph, { recipe, mode: 'ptq' }));
  try {
    calibrate(session, new QuantController(session), data, opts);
    return finalizeQuantized(session.writeBack());
  } finally {
    session.dispose();
  }
}
