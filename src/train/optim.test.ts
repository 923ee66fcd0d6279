// Expected values are PyTorch's update rules worked by hand on p = [1, -2] with fixed gradients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { setupTfjs } from '../util/tfjs.js';
import { createOptimizer, type OptimizerConfig } from './optim.js';

await setupTfjs();

const G1 = [0.5, 1];
const G2 = [-1, 0.25];

/** Runs the optimizer over the gradient sequence for params w = [1, -2] and b = [1, -2]; returns both. */
function run(config: OptimizerConfig, gradSeq: number[][], lr = 0.1) {
  const params = new Map([
    ['w', tf.variable(tf.tensor1d([1, -2]))],
    ['b', tf.variable(tf.tensor1d([1, -2]))],
  ]);
  const opt = createOptimizer(params, config);
  for (const g of gradSeq) {
    const grads = new Map([...params.keys()].map((k) => [k, tf.tensor1d(g)]));
    opt.step(grads, lr);
    tf.dispose([...grads.values()]);
  }
  const out = { w: [...params.get('w')!.dataSync()], b: [...params.get('b')!.dataSync()] };
  opt.dispose();
  params.forEach((v) => v.dispose());
  return out;
}

function close(actual: number[], expected: number[], tol = 1e-6) {
  assert.equal(actual.length, expected.length);
  actual.forEach((a, i) => assert.ok(Math.abs(a - expected[i]!) <= tol, `[${i}] ${a} != ${expected[i]} (got [${actual}], expected [${expected}])`));
}

test('sgd: plain and momentum steps as torch.optim.SGD', () => {
  // p -= lr * g
  close(run({ kind: 'sgd', lr: 0.1 }, [G1]).w, [0.95, -2.1]);
  // buf1 = g1 = [.5, 1]; p1 = [.95, -2.1]; buf2 = .9*buf1 + g1 = [.95, 1.9]; p2 = p1 - .1*buf2 = [.855, -2.29]
  close(run({ kind: 'sgd', lr: 0.1, momentum: 0.9 }, [G1, G1]).w, [0.855, -2.29]);
});

test('sgd: nesterov', () => {
  // buf1 = g; d1 = g + .9*buf1 = 1.9g -> p1 = [.905, -2.19]; buf2 = 1.9g; d2 = g + .9*1.9g = 2.71g -> p2 = [.7695, -2.461]
  close(run({ kind: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true }, [G1, G1]).w, [0.7695, -2.461]);
  assert.throws(() => run({ kind: 'sgd', lr: 0.1, nesterov: true }, [G1]), /nesterov needs momentum/);
});

test('sgd: weight decay goes through the gradient, except for no-decay params', () => {
  // d = g + .01*p = [.51, .98] -> p = [1 - .051, -2 - .098]
  const r = run({ kind: 'sgd', lr: 0.1, weightDecay: 0.01, noDecay: ['b'] }, [G1]);
  close(r.w, [0.949, -2.098]);
  close(r.b, [0.95, -2.1]);
  // with momentum, decay enters the buffer: buf1 = [.51, .98]; p1 = [.949, -2.098];
  // d2 = g + .01*p1 = [.50949, .97902]; buf2 = .9*buf1 + d2 = [.96849, 1.86102]; p2 = p1 - .1*buf2
  const m = run({ kind: 'sgd', lr: 0.1, momentum: 0.9, weightDecay: 0.01, noDecay: (n) => n === 'b' }, [G1, G1]);
  close(m.w, [0.949 - 0.096849, -2.098 - 0.186102]);
  close(m.b, [0.855, -2.29]);
});

test('adam: bias correction as torch.optim.Adam', () => {
  // step 1: m = .1 g, v = .001 g^2; m_hat = g, v_hat = g^2: the step is lr*sign(g) (up to eps)
  close(run({ kind: 'adam', lr: 0.1 }, [G1]).w, [0.9, -2.1]);
  // step 2 (g2 = [-1, .25]): m = .09 g1 + .1 g2 = [-.055, .115]; v = .000999 g1^2 + .001 g2^2 = [.00124975, .0010615]
  // bc1 = 1 - .9^2 = .19, bc2 = 1 - .999^2 = .001999; p -= lr * (m/bc1) / (sqrt(v)/sqrt(bc2) + eps)
  const bc1 = 0.19;
  const bc2 = 0.001999;
  const step = (m: number, v: number) => (0.1 * (m / bc1)) / (Math.sqrt(v) / Math.sqrt(bc2) + 1e-8);
  const expected = [0.9 - step(-0.055, 0.00124975), -2.1 - step(0.115, 0.0010615)];
  close(run({ kind: 'adam', lr: 0.1 }, [G1, G2]).w, expected);
  // the step sizes in numbers, so a wrong formula cannot hide in the helper: about [-.036610, .083060]
  close([step(-0.055, 0.00124975), step(0.115, 0.0010615)], [-0.0366100, 0.0830598], 1e-6);
});

test('adam: L2 weight decay through the gradient vs decoupled (AdamW)', () => {
  // AdamW step 1: p *= 1 - lr*wd = .99, then p -= lr*sign(g): [.99 - .1, -1.98 - .1]
  const w = run({ kind: 'adamw', lr: 0.1, weightDecay: 0.1, noDecay: ['b'] }, [G1]);
  close(w.w, [0.89, -2.08]);
  close(w.b, [0.9, -2.1]);
  // Adam + L2, step 1: g' = g + .1 p = [.6, .8]; still lr*sign(g') on the first step
  close(run({ kind: 'adam', lr: 0.1, weightDecay: 0.1 }, [G1]).w, [0.9, -2.1]);
  // step 2: p1 = [.9, -2.1]; g2' = g2 + .1 p1 = [-.91, .04]; m = .09*[.6, .8] + .1*g2' = [-.037, .076]
  // v = .000999*[.36, .64] + .001*[.8281, .0016] = [.00118774, .00064096]
  const step = (m: number, v: number) => (0.1 * (m / 0.19)) / (Math.sqrt(v) / Math.sqrt(0.001999) + 1e-8);
  close(run({ kind: 'adam', lr: 0.1, weightDecay: 0.1 }, [G1, G2]).w, [0.9 - step(-0.037, 0.00118774), -2.1 - step(0.076, 0.00064096)]);
});

test('optimizer state round-trips: a restored optimizer continues exactly', () => {
  for (const config of [{ kind: 'sgd', lr: 0.1, momentum: 0.9, nesterov: true }, { kind: 'adam', lr: 0.1, weightDecay: 0.01 }] as OptimizerConfig[]) {
    const mk = () => new Map([['w', tf.variable(tf.tensor1d([1, -2]))]]);
    const pa = mk();
    const a = createOptimizer(pa, config);
    const g = (v: number[]) => new Map([['w', tf.tensor1d(v)]]);
    a.step(g(G1), 0.1);
    a.step(g(G2), 0.05);
    const pb = new Map([['w', tf.variable(pa.get('w')!.clone())]]);
    const b = createOptimizer(pb, config);
    b.load(a.state());
    a.step(g(G1), 0.1);
    b.step(g(G1), 0.1);
    assert.deepEqual([...pb.get('w')!.dataSync()], [...pa.get('w')!.dataSync()]);
    assert.throws(() => b.load({}), /optimizer state: '(sgd|adam)\/\w+\/w' is missing/);
    a.dispose();
    b.dispose();
  }
});

test('optimizer: a step leaves no tensors behind; params without a gradient stay put', () => {
  const params = new Map([
    ['w', tf.variable(tf.tensor1d([1, -2]))],
    ['frozen', tf.variable(tf.tensor1d([3]))],
  ]);
  const opt = createOptimizer(params, { kind: 'adam', lr: 0.1, weightDecay: 0.1 });
  const g = tf.tensor1d(G1);
  const before = tf.memory().numTensors;
  for (let i = 0; i < 3; i++) opt.step(new Map([['w', g]]), 0.1);
  assert.equal(tf.memory().numTensors, before);
  assert.deepEqual([...params.get('frozen')!.dataSync()], [3]);
  assert.throws(() => opt.step(new Map([['w', tf.zeros([3])]]), 0.1), /gradient of 'w' has shape \[3\], the param has \[2\]/);
  assert.throws(() => createOptimizer(params, { kind: 'lion', lr: 1 }), /unknown optimizer kind 'lion'/);
  opt.dispose();
});
