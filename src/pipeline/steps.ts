// The steps of the QAT/PTQ flow on graphs: train float, PTQ, QAT, evaluate. The CLI and the benchmark call these.
import * as tf from '@tensorflow/tfjs-core';
import type { Dataset } from '../data/datasets.js';
import type { Graph, TensorData } from '../graph/ir.js';
import type { Batch } from '../data/batches.js';
import { Session } from '../ops/session.js';
import { calibrate } from '../ptq/calibrate.js';
import type { Recipe } from '../spec/quantspec.js';
import { evaluate, type EvalResult } from '../train/eval.js';
import { klDistillation, softmaxCrossEntropy } from '../train/losses.js';
import { train, type TrainResult } from '../train/trainer.js';
import type { OptimizerConfig } from '../train/optim.js';
import { QuantController } from '../transform/controller.js';
import { foldConvBn } from '../transform/fold.js';
import { prepare } from '../transform/prepare.js';
import { finalizeQuantized } from '../transform/finalize.js';
import type { ObserverState } from '../quant/observers.js';

export interface Budget {
  epochs: number;
  batchSize: number;
  lr: number;
  optimizer?: OptimizerConfig['kind'];
  momentum?: number;
  weightDecay?: number;
  warmupSteps?: number;
  seed?: number;
}

export interface StepOptions {
  /** checkpoint file: a crashed run resumes from it */
  checkpoint?: string;
  progress?: boolean;
  log?: (line: string) => void;
}

const inputName = (g: Graph) => g.inputs.find((i) => !g.initializers.has(i.name))!.name;

/** Biases, BatchNorm parameters and quantizer scales take no weight decay. */
const noDecay = (name: string) => !/\.weight$/.test(name) || /^bn\d+\./.test(name);

function optimizerOf(b: Budget): OptimizerConfig {
  const kind = b.optimizer ?? 'sgd';
  return {
    kind,
    lr: b.lr,
    momentum: kind === 'sgd' ? (b.momentum ?? 0.9) : undefined,
    nesterov: kind === 'sgd' ? true : undefined,
    weightDecay: b.weightDecay ?? 5e-4,
    noDecay,
  };
}

/** Accuracy of a graph (float or fake-quantized) on a dataset, eval mode, with its argmax predictions. */
export function evaluateGraph(g: Graph, ds: Dataset, batchSize = 256): EvalResult & { predictions: Int32Array } {
  const s = new Session(g);
  const predictions = new Int32Array(ds.n);
  let at = 0;
  try {
    const name = inputName(g);
    const r = evaluate(
      ds,
      (x) => {
        const logits = s.run({ [name]: x })[0];
        const p = tf.argMax(logits, 1).dataSync();
        predictions.set(p, at);
        at += p.length;
        return logits;
      },
      { batchSize },
    );
    return { ...r, predictions };
  } finally {
    s.dispose();
  }
}

interface FitExtra {
  afterStep?(step: number): void;
  /** state beyond the session's buffers that a checkpoint must hold */
  state?: { get(): Record<string, unknown>; set(st: Record<string, unknown>): void };
  /** what the checkpoint's config hash covers besides the training budget */
  config: unknown;
}

/** The training loop on a session: BN running stats applied after each step, buffers saved in checkpoints. */
function fit(s: Session, data: Dataset, budget: Budget, opts: StepOptions, lossFn: (b: Batch) => tf.Scalar, extra: FitExtra): Promise<TrainResult> {
  const buffers = () => Object.fromEntries(Object.entries(s.state()).filter(([n]) => s.bufferNames.has(n)));
  return train({
    params: s.params(),
    lossFn,
    data,
    epochs: budget.epochs,
    batchSize: budget.batchSize,
    seed: budget.seed ?? 0,
    optimizer: optimizerOf(budget),
    schedule: { kind: 'cosine', warmupSteps: budget.warmupSteps ?? 0 },
    hooks: {
      afterStep: (step) => {
        s.applyUpdates();
        extra.afterStep?.(step);
      },
    },
    checkpoint: opts.checkpoint
      ? {
          path: opts.checkpoint,
          everySteps: 200,
          getState: () => ({ buffers: buffers(), ...extra.state?.get() }),
          setState: (st) => {
            s.load(st.buffers as Record<string, TensorData>);
            extra.state?.set(st);
          },
          config: extra.config,
        }
      : undefined,
    progress: opts.progress,
    log: opts.log,
  });
}

/** Train a float graph; its initializers are updated with the trained values, and it is returned. */
export async function trainFloat(g: Graph, data: Dataset, budget: Budget, opts: StepOptions = {}): Promise<{ graph: Graph; result: TrainResult }> {
  const s = new Session(g);
  const name = inputName(g);
  try {
    const lossFn = (b: Batch) => softmaxCrossEntropy(s.run({ [name]: b.x }, { training: true })[0], b.y);
    const result = await fit(s, data, budget, opts, lossFn, { config: { kind: 'float', graph: g.name } });
    return { graph: s.writeBack(), result };
  } finally {
    s.dispose();
  }
}

export interface QatOptions extends StepOptions {
  /** observers stop updating after this many steps (default: 1/4 of the run) */
  freezeObserversAfter?: number;
  /** BatchNorm statistics frozen after this many steps (default: 3/4 of the run) */
  freezeBnAfter?: number;
  /** distillation from the float model: KL on logits at this temperature, mixed with weight alpha */
  distill?: { temperature: number; alpha: number };
  /** batches that initialize the quantizers before training (default 8) */
  calibrationBatches?: number;
}

/**
 * QAT from a trained float graph: prepare (Conv+BN fused as ConvBn), calibrate the quantizers on a few batches,
 * train with fake-quant in place on the standard schedule, then fold ConvBn into Conv + weight fake-quant.
 */
export async function qat(floatGraph: Graph, recipe: Recipe, data: Dataset, budget: Budget, opts: QatOptions = {}): Promise<{ graph: Graph; result: TrainResult }> {
  const s = new Session(prepare(floatGraph, { recipe, mode: 'qat' }));
  const ctrl = new QuantController(s);
  const teacher = opts.distill ? new Session(floatGraph) : undefined;
  const name = inputName(floatGraph);
  const perEpoch = Math.ceil(data.n / budget.batchSize);
  const total = perEpoch * budget.epochs;
  const freezeObs = opts.freezeObserversAfter ?? Math.floor(total / 4);
  const freezeBn = opts.freezeBnAfter ?? Math.floor((3 * total) / 4);
  try {
    calibrate(s, ctrl, data, { batches: opts.calibrationBatches ?? 8, batchSize: budget.batchSize, seed: (budget.seed ?? 0) + 1 });
    ctrl.observing = freezeObs > 0;
    const lossFn = (b: Batch) => {
      const logits = s.run({ [name]: b.x }, { training: true })[0];
      const ce = softmaxCrossEntropy(logits, b.y);
      if (!teacher || !opts.distill) return ce;
      const t = teacher.run({ [name]: b.x })[0]; // only the student's params are differentiated
      const { alpha, temperature } = opts.distill;
      return tf.add(tf.mul(ce, 1 - alpha), tf.mul(klDistillation(logits, t, temperature), alpha)) as tf.Scalar;
    };
    const result = await fit(s, data, budget, opts, lossFn, {
      afterStep: (step) => {
        ctrl.clampLearnedScales();
        if (step + 1 >= freezeObs) ctrl.observing = false;
        if (step + 1 >= freezeBn) s.bnFrozen = true;
      },
      state: {
        get: () => ({ observers: ctrl.state(), observing: ctrl.observing, bnFrozen: s.bnFrozen }),
        set: (st) => {
          ctrl.load(st.observers as Record<string, ObserverState>);
          ctrl.observing = st.observing as boolean;
          s.bnFrozen = st.bnFrozen as boolean;
        },
      },
      config: { kind: 'qat', recipe, freezeObs, freezeBn, distill: opts.distill ?? null },
    });
    // deployed form: BN folded, biases on the int32 grid the integer model uses
    return { graph: finalizeQuantized(foldConvBn(s.writeBack())), result };
  } finally {
    s.dispose();
    teacher?.dispose();
  }
}
