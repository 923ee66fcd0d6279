import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import type { Batch } from '../data/batches.js';
import { loadDataset, type Dataset } from '../data/datasets.js';
import { QatError } from '../util/errors.js';
import type { Progress } from '../util/progress.js';
import { Rng } from '../util/rng.js';
import { setupTfjs } from '../util/tfjs.js';
import { evaluate } from './eval.js';
import { softmaxCrossEntropy } from './losses.js';
import { train, type StepContext, type TrainOptions } from './trainer.js';

await setupTfjs();

const digitsTrain = loadDataset('digits', { split: 'train' });
const digitsTest = loadDataset('digits', { split: 'test' });

/** A 64-hidden-10 MLP with PyTorch's default Linear init (uniform +-1/sqrt(fan_in)), seeded. */
function mlp(seed: number, hidden = 32) {
  const rng = new Rng(seed);
  const u = (n: number, fanIn: number) => Float32Array.from({ length: n }, () => (2 * rng.float() - 1) / Math.sqrt(fanIn));
  // the variable keeps its own reference to the data: free the initial tensor
  const v = (t: tf.Tensor) => {
    const x = tf.variable(t);
    t.dispose();
    return x;
  };
  const params = new Map<string, tf.Variable>([
    ['fc1.weight', v(tf.tensor2d(u(64 * hidden, 64), [64, hidden]))],
    ['fc1.bias', v(tf.tensor1d(u(hidden, 64)))],
    ['fc2.weight', v(tf.tensor2d(u(hidden * 10, hidden), [hidden, 10]))],
    ['fc2.bias', v(tf.tensor1d(u(10, hidden)))],
  ]);
  const forward = (x: tf.Tensor4D, ctx?: StepContext) => {
    let h = tf.relu(tf.add(tf.matMul(tf.reshape(x, [x.shape[0], 64]), params.get('fc1.weight')!), params.get('fc1.bias')!));
    // dropout from the step's seed: exercises per-step randomness in the resume test
    if (ctx) h = tf.div(tf.mul(h, tf.cast(tf.greater(tf.randomUniform(h.shape, 0, 1, 'float32', ctx.seed), 0.1), 'float32')), 0.9);
    return tf.add(tf.matMul(h, params.get('fc2.weight')!), params.get('fc2.bias')!);
  };
  const dispose = () => params.forEach((v) => v.dispose());
  return { params, forward, dispose };
}

const snapshot = (params: Map<string, tf.Variable>) => Object.fromEntries([...params].map(([k, v]) => [k, [...v.dataSync()]]));

test('train: an MLP on digits reaches > 90% test accuracy', async () => {
  const m = mlp(1);
  const before = evaluate(digitsTest, (x) => m.forward(x));
  const res = await train({
    params: m.params,
    lossFn: (b: Batch) => softmaxCrossEntropy(m.forward(b.x), b.y),
    data: digitsTrain,
    epochs: 6,
    batchSize: 32,
    seed: 0,
    optimizer: { kind: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true, weightDecay: 1e-4, noDecay: (n) => n.endsWith('.bias') },
    schedule: { kind: 'cosine', warmupSteps: 10 },
  });
  const after = evaluate(digitsTest, (x) => m.forward(x));
  assert.equal(res.steps, 6 * Math.ceil(1438 / 32));
  assert.equal(res.epochLosses.length, 6);
  assert.ok(res.epochLosses[5]! < res.epochLosses[0]!, `epoch losses ${res.epochLosses}`);
  assert.ok(before.accuracy < 0.3, `untrained accuracy ${before.accuracy}`);
  assert.ok(after.accuracy > 0.9, `test accuracy ${after.accuracy}`);
  m.dispose();
});

test('train: no tensor leaks per step; progress gets loss and lr', async () => {
  const m = mlp(2);
  const counts: number[] = [];
  const extras: string[] = [];
  const progress: Progress = { count: 0, tick: (_n, extra) => void extras.push(extra ?? ''), done: () => {} };
  const before = tf.memory().numTensors;
  await train({
    params: m.params,
    lossFn: (b, ctx) => softmaxCrossEntropy(m.forward(b.x, ctx), b.y),
    data: loadDataset('digits', { split: 'train', limit: 200 }),
    epochs: 2,
    batchSize: 16,
    seed: 3,
    optimizer: { kind: 'adam', lr: 1e-3 },
    schedule: { kind: 'constant' },
    hooks: { afterStep: () => void counts.push(tf.memory().numTensors) },
    progress,
  });
  assert.equal(tf.memory().numTensors, before, 'the optimizer releases its buffers at the end');
  assert.equal(counts.length, 26);
  assert.ok(counts.every((c) => c === counts[0]), `tensor counts per step: ${counts}`);
  assert.match(extras[0]!, /^epoch 1\/2 loss \d+\.\d{4} lr 1\.00e-3$/);
  m.dispose();
});

describeResume();

function describeResume() {
  const dir = mkdtempSync(join(tmpdir(), 'qat-train-'));
  const data: Dataset = loadDataset('digits', { split: 'train', limit: 300 });

  /** A run whose extra state (a running loss average, a step counter) lives outside the trainer. */
  function setup(ckptPath: string, crashAt?: number, lr = 3e-3) {
    const m = mlp(5);
    const extra = { seen: 0, running: new Float32Array(1) };
    const opts: TrainOptions = {
      params: m.params,
      lossFn: (b, ctx) => softmaxCrossEntropy(m.forward(b.x, ctx), b.y),
      data,
      epochs: 3,
      batchSize: 32,
      seed: 11,
      optimizer: { kind: 'adamw', lr, weightDecay: 0.05, noDecay: ['fc1.bias', 'fc2.bias'] },
      schedule: { kind: 'cosine', warmupSteps: 5, minLr: 1e-4 },
      hooks: {
        afterStep(step, _epoch, loss) {
          extra.seen++;
          extra.running[0] = 0.9 * extra.running[0]! + 0.1 * loss;
          if (step === crashAt) throw new Error(`simulated crash at step ${step}`);
        },
      },
      checkpoint: {
        path: ckptPath,
        everySteps: 4,
        getState: () => ({ seen: extra.seen, running: Float32Array.from(extra.running) }),
        setState: (s) => {
          extra.seen = s.seen as number;
          extra.running.set(s.running as Float32Array);
        },
        config: { model: 'mlp-64-32-10' },
      },
    };
    return { m, extra, opts };
  }

  test('train: a crashed run resumes from its checkpoint to the same params, bit for bit', async () => {
    const ref = setup(join(dir, 'ref.ckpt'));
    const refRes = await train(ref.opts);
    assert.equal(refRes.steps, 30); // 10 batches (the last one partial) x 3 epochs

    const crashPath = join(dir, 'crash.ckpt');
    const crashed = setup(crashPath, 17);
    await assert.rejects(train(crashed.opts), /simulated crash at step 17/);
    crashed.m.dispose();
    assert.ok(existsSync(crashPath));

    const resumed = setup(crashPath);
    const lines: string[] = [];
    resumed.opts.log = (l) => lines.push(l);
    const res = await train(resumed.opts);
    assert.equal(res.resumedFrom, 16); // checkpoints at steps 4, 8, 10 (epoch end), 12, 16
    assert.match(lines[0]!, /resumed from .*crash\.ckpt at step 16\/30 \(epoch 2, batch 6\)/);
    assert.equal(res.steps, 30);
    assert.deepEqual(snapshot(resumed.m.params), snapshot(ref.m.params));
    assert.deepEqual(res.epochLosses, refRes.epochLosses);
    assert.equal(res.finalLoss, refRes.finalLoss);
    assert.equal(resumed.extra.seen, 30);
    assert.equal(resumed.extra.running[0], ref.extra.running[0]);
    ref.m.dispose();
    resumed.m.dispose();
  });

  test('train: a finished checkpoint resumes to its end; another config is refused with a fix', async () => {
    const done = setup(join(dir, 'ref.ckpt'));
    const res = await train(done.opts);
    assert.equal(res.resumedFrom, 30);
    assert.equal(res.steps, 30);
    assert.equal(done.extra.seen, 30); // restored, no new steps
    done.m.dispose();

    const other = setup(join(dir, 'ref.ckpt'), undefined, 1e-2);
    await assert.rejects(
      train(other.opts),
      (e: unknown) => e instanceof QatError && /ref\.ckpt: checkpoint belongs to another training configuration/.test(e.message) && /delete .*ref\.ckpt/.test(e.hint!),
    );
    other.m.dispose();
  });
}

test('train: a diverging loss stops with a clear error', async () => {
  const m = mlp(7);
  await assert.rejects(
    train({
      params: m.params,
      lossFn: (b) => tf.mul(softmaxCrossEntropy(m.forward(b.x), b.y), NaN) as tf.Scalar,
      data: digitsTest,
      epochs: 1,
      batchSize: 64,
      seed: 0,
      optimizer: { kind: 'sgd', lr: 0.1 },
      schedule: { kind: 'constant' },
    }),
    (e: unknown) => e instanceof QatError && e.message === 'training diverged: loss is NaN at step 0 (epoch 1)',
  );
  m.dispose();
});
