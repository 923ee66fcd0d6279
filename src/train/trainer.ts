// The training loop: seeded batches, gradients of the caller's loss w.r.t. the trainable params, optimizer step at
// the scheduled rate, hooks, progress, and checkpoints a crashed run resumes from exactly.
// Exact resume rests on three facts: the batch order is a function of (seed, epoch), the rate a function of the
// step, and everything else that changes (params, optimizer buffers, caller state, loss sums) is in the checkpoint.
import * as tf from '@tensorflow/tfjs-core';
import { existsSync, mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { batches, numBatches, type Batch } from '../data/batches.js';
import type { Dataset } from '../data/datasets.js';
import { QatError } from '../util/errors.js';
import { hashConfig } from '../util/hash.js';
import { createProgress, type Progress } from '../util/progress.js';
import { mixSeed } from '../util/rng.js';
import { readCheckpointFile, writeCheckpointFile } from './checkpoint.js';
import { createOptimizer, decayTest, type OptimizerConfig, type OptimizerState } from './optim.js';
import { fromPlain, isPlainTensor, sameShape, toPlain, type PlainTensor } from './plain.js';
import { scheduleLr, type ScheduleConfig } from './schedule.js';

export interface StepContext {
  /** global step, 0-based */
  step: number;
  epoch: number;
  lr: number;
  /** a seed for this step's randomness (dropout, augmentation): derived from (seed, step), so a resumed run repeats it */
  seed: number;
}

export interface TrainHooks {
  beforeStep?(step: number, epoch: number): void | Promise<void>;
  /** after the optimizer step; runs before that step's checkpoint, so state it changes is saved */
  afterStep?(step: number, epoch: number, loss: number): void | Promise<void>;
  afterEpoch?(epoch: number, meanLoss: number): void | Promise<void>;
}

export interface CheckpointOptions {
  path: string;
  /** also save every this many steps (epoch ends are always saved) */
  everySteps?: number;
  /** model state the trainer cannot see (BatchNorm running stats, quantizer params): plain data and typed arrays */
  getState?(): Record<string, unknown>;
  setState?(state: Record<string, unknown>): void;
  /** the caller's own configuration (model, recipe): part of the config hash, so a changed recipe does not resume */
  config?: unknown;
}

export interface TrainOptions {
  /** the trainable params, by name (names key the checkpoint and the optimizer state) */
  params: Map<string, tf.Variable>;
  /** the forward pass and loss; runs inside tf.variableGrads, so it must only compute (no assign, no dispose of inputs) */
  lossFn: (batch: Batch, ctx: StepContext) => tf.Scalar;
  data: Dataset;
  epochs: number;
  batchSize: number;
  seed: number;
  /** default true */
  shuffle?: boolean;
  /** drop a last batch smaller than batchSize (default false) */
  dropLast?: boolean;
  optimizer: OptimizerConfig;
  schedule: ScheduleConfig;
  hooks?: TrainHooks;
  checkpoint?: CheckpointOptions;
  /** true: a progress bar (or plain lines) on stderr; or a reporter of your own */
  progress?: boolean | Progress;
  log?: (line: string) => void;
}

export interface TrainResult {
  /** global steps done, including those before a resume */
  steps: number;
  /** the loss of the last step */
  finalLoss: number;
  /** mean loss of each epoch */
  epochLosses: number[];
  /** the step the run resumed from, when it did */
  resumedFrom?: number;
}

interface Position {
  step: number;
  epoch: number;
  /** batches of `epoch` already done */
  batch: number;
  epochLossSum: number;
  epochLossCount: number;
  epochLosses: number[];
  finalLoss: number;
}

interface TrainCheckpoint {
  format: 'qatkit-train';
  version: 1;
  configHash: string;
  position: Position;
  /** the data order's random position: the permutation of epoch e is a function of (seed, e) */
  rng: { seed: number; epoch: number; batch: number };
  params: Record<string, PlainTensor>;
  optimizer: OptimizerState;
  extra: Record<string, unknown> | null;
}

/** What the checkpoint's config hash covers: everything that changes the result of a step. */
export function trainConfigHash(opts: TrainOptions): string {
  const decays = decayTest(opts.optimizer);
  const { noDecay: _, ...optimizer } = opts.optimizer;
  return hashConfig({
    v: 1,
    data: { name: opts.data.name, n: opts.data.n, shape: opts.data.shape, numClasses: opts.data.numClasses },
    epochs: opts.epochs,
    batchSize: opts.batchSize,
    seed: opts.seed,
    shuffle: opts.shuffle ?? true,
    dropLast: opts.dropLast ?? false,
    optimizer,
    noDecay: [...opts.params.keys()].filter((n) => !decays(n)).sort(),
    schedule: opts.schedule,
    params: [...opts.params].map(([n, v]) => [n, v.shape]).sort(),
    caller: opts.checkpoint?.config ?? null,
  });
}

function validate(opts: TrainOptions): void {
  const posInt = (v: number, what: string) => {
    if (!(Number.isInteger(v) && v > 0)) throw new QatError(`train: ${what} must be a positive integer, got ${v}`);
  };
  posInt(opts.epochs, 'epochs');
  posInt(opts.batchSize, 'batchSize');
  if (!Number.isSafeInteger(opts.seed)) throw new QatError(`train: seed must be an integer, got ${opts.seed}`);
  if (!(opts.optimizer.lr > 0)) throw new QatError(`train: optimizer.lr must be > 0, got ${opts.optimizer.lr}`);
  if (opts.checkpoint?.everySteps !== undefined) posInt(opts.checkpoint.everySteps, 'checkpoint.everySteps');
  if (opts.params.size === 0) throw new Error('train: no params to train');
  for (const [name, v] of opts.params) if (!v.trainable) throw new Error(`train: param '${name}' is a non-trainable tf.Variable`);
  if (numBatches(opts.data.n, opts.batchSize, opts.dropLast) === 0)
    throw new QatError(`train: dataset ${opts.data.name} has ${opts.data.n} examples, fewer than one batch of ${opts.batchSize} with dropLast`);
}

function restore(path: string, hash: string, opts: TrainOptions, optimizer: ReturnType<typeof createOptimizer>): Position {
  const ck = readCheckpointFile(path) as Partial<TrainCheckpoint>;
  if (ck.format !== 'qatkit-train' || ck.version !== 1 || !ck.position || !ck.params || !ck.optimizer)
    throw new QatError(`${path}: not a qatkit training checkpoint (or an unsupported version)`, 'delete it or pass another checkpoint path');
  if (ck.configHash !== hash)
    throw new QatError(
      `${path}: checkpoint belongs to another training configuration (config hash ${ck.configHash}, this run ${hash})`,
      `delete ${path} to start over, or pass another checkpoint path`,
    );
  for (const [name, v] of opts.params) {
    const p = ck.params[name];
    if (!isPlainTensor(p) || !sameShape(p.shape, v.shape)) throw new QatError(`${path}: param '${name}' is missing or has another shape`);
    tf.tidy(() => v.assign(fromPlain(p)));
  }
  optimizer.load(ck.optimizer);
  if (ck.extra) {
    if (!opts.checkpoint?.setState) throw new QatError(`${path}: checkpoint holds extra model state but no checkpoint.setState was given to restore it`);
    opts.checkpoint.setState(ck.extra);
  }
  return { ...ck.position, epochLosses: [...ck.position.epochLosses] };
}

export async function train(opts: TrainOptions): Promise<TrainResult> {
  validate(opts);
  const shuffle = opts.shuffle ?? true;
  const dropLast = opts.dropLast ?? false;
  const perEpoch = numBatches(opts.data.n, opts.batchSize, dropLast);
  const totalSteps = perEpoch * opts.epochs;
  const vars = [...opts.params.values()];
  const userLog = opts.log ?? (() => {});
  let progress: Progress | undefined;
  // a log line must not land in the middle of a progress bar
  const log = (line: string) => {
    progress?.clear?.();
    userLog(line);
  };
  const ckOpts = opts.checkpoint;
  const hash = trainConfigHash(opts);
  const optimizer = createOptimizer(opts.params, opts.optimizer);

  let pos: Position = { step: 0, epoch: 0, batch: 0, epochLossSum: 0, epochLossCount: 0, epochLosses: [], finalLoss: NaN };
  let resumedFrom: number | undefined;
  try {
    if (ckOpts) {
      mkdirSync(dirname(ckOpts.path), { recursive: true });
      if (existsSync(ckOpts.path)) {
        pos = restore(ckOpts.path, hash, opts, optimizer);
        resumedFrom = pos.step;
        log(
          pos.step >= totalSteps
            ? `${ckOpts.path} is a finished run (step ${pos.step}/${totalSteps}): nothing left to train`
            : `resumed from ${ckOpts.path} at step ${pos.step}/${totalSteps} (epoch ${pos.epoch + 1}, batch ${pos.batch})`,
        );
      }
    }

    const save = async () => {
      if (!ckOpts) return;
      const ck: TrainCheckpoint = {
        format: 'qatkit-train',
        version: 1,
        configHash: hash,
        position: pos,
        rng: { seed: opts.seed, epoch: pos.epoch, batch: pos.batch },
        params: Object.fromEntries([...opts.params].map(([n, v]) => [n, toPlain(v)])),
        optimizer: optimizer.state(),
        extra: ckOpts.getState?.() ?? null,
      };
      await writeCheckpointFile(ckOpts.path, ck);
    };

    if (opts.progress) {
      progress = opts.progress === true ? createProgress({ total: totalSteps, label: 'train', initial: pos.step, unit: 'step' }) : opts.progress;
    }

    while (pos.epoch < opts.epochs) {
      const epoch = pos.epoch;
      for (const batch of batches(opts.data, { batchSize: opts.batchSize, shuffle, seed: opts.seed, epoch, dropLast, startBatch: pos.batch })) {
        const step = pos.step;
        let loss: number;
        let lr: number;
        try {
          await opts.hooks?.beforeStep?.(step, epoch);
          lr = scheduleLr(opts.schedule, step, totalSteps, opts.optimizer.lr);
          const ctx: StepContext = { step, epoch, lr, seed: mixSeed(opts.seed, step) };
          const { value, grads } = tf.variableGrads(() => opts.lossFn(batch, ctx), vars);
          try {
            loss = value.dataSync()[0]!;
            if (!Number.isFinite(loss))
              throw new QatError(`training diverged: loss is ${loss} at step ${step} (epoch ${epoch + 1})`, 'lower the learning rate or add warmup steps');
            const byName = new Map<string, tf.Tensor>();
            for (const [name, v] of opts.params) {
              const g = grads[v.name];
              if (g) byName.set(name, g);
            }
            optimizer.step(byName, lr);
          } finally {
            tf.dispose(value);
            tf.dispose(grads);
          }
        } finally {
          tf.dispose([batch.x, batch.y]);
        }
        pos.step++;
        pos.batch++;
        pos.epochLossSum += loss;
        pos.epochLossCount++;
        pos.finalLoss = loss;
        progress?.tick(1, `epoch ${epoch + 1}/${opts.epochs} loss ${(pos.epochLossSum / pos.epochLossCount).toFixed(4)} lr ${lr.toExponential(2)}`);
        await opts.hooks?.afterStep?.(step, epoch, loss);
        const epochEnd = pos.batch === perEpoch;
        if (ckOpts?.everySteps && pos.step % ckOpts.everySteps === 0 && !epochEnd) await save();
      }
      const mean = pos.epochLossSum / Math.max(1, pos.epochLossCount);
      pos.epochLosses.push(mean);
      pos.epochLossSum = 0;
      pos.epochLossCount = 0;
      pos.batch = 0;
      pos.epoch++;
      log(`epoch ${epoch + 1}/${opts.epochs}: mean loss ${mean.toFixed(4)}`);
      await opts.hooks?.afterEpoch?.(epoch, mean);
      await save();
    }
    progress?.done(`loss ${pos.finalLoss.toFixed(4)}`);
    return { steps: pos.step, finalLoss: pos.finalLoss, epochLosses: [...pos.epochLosses], ...(resumedFrom !== undefined ? { resumedFrom } : {}) };
  } catch (e) {
    progress?.done();
    throw e;
  } finally {
    optimizer.dispose();
  }
}
