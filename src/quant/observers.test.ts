import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { qrange, type QuantSpec } from '../spec/quantspec.js';
import { setupTfjs } from '../util/tfjs.js';
import { createObserver, observerKinds, registerObserver } from './observers.js';
import { qparamsFromRange, roundHalfEven } from './qparams.js';
import { assertExact, checkObservers, loadFixture } from './torch_fixtures.js';

await setupTfjs();

const u8: QuantSpec = { bits: 8, signed: false, symmetric: false, narrowRange: false, granularity: { kind: 'per_tensor' } };
const w4: QuantSpec = { bits: 4, signed: true, symmetric: true, narrowRange: true, granularity: { kind: 'per_channel', axis: 0 } };

/** Deterministic normal samples (Box-Muller on a small LCG), plus a few large outliers. */
function dataWithOutliers(n: number, outliers: number[], seed = 1): Float32Array {
  let s = seed;
  const u = () => ((s = (s * 1103515245 + 12345) % 2147483648) + 1) / 2147483649;
  const out = new Float32Array(n + outliers.length);
  for (let i = 0; i < n; i++) out[i] = Math.sqrt(-2 * Math.log(u())) * Math.cos(2 * Math.PI * u());
  out.set(outliers, n);
  return out;
}

test('minmax and ema_minmax (per tensor and per channel on axes 0, 1, last) match torch exactly', () => {
  const n = checkObservers(loadFixture('observers'));
  assert.equal(n, loadFixture('observers').cases.length);
});

test('registry: built-in kinds, unknown kind names the known ones, custom kinds can be registered', () => {
  assert.deepEqual(observerKinds().slice(0, 4), ['minmax', 'ema_minmax', 'percentile', 'mse']);
  assert.throws(() => createObserver({ kind: 'kl' }, u8), /unknown observer kind 'kl' \(known: minmax, ema_minmax, percentile, mse/);
  registerObserver('fixed', (_cfg, spec) => {
    const o = createObserver({ kind: 'minmax' }, spec);
    o.observe(tf.tensor1d([-1, 1]));
    return { ...o, kind: 'fixed', observe: () => {} };
  });
  const f = createObserver({ kind: 'fixed' }, u8);
  f.observe(tf.tensor1d([100]));
  assertExact(f.range().max, [1], 'custom observer');
});

test('state() is plain JSON and load() restores it exactly; reset() forgets', () => {
  for (const cfg of [{ kind: 'minmax' }, { kind: 'ema_minmax', momentum: 0.8 }, { kind: 'percentile', percentile: 99 }, { kind: 'mse' }]) {
    const a = createObserver(cfg, w4);
    const b = createObserver(cfg, w4);
    const x1 = tf.randomNormal([3, 40], 0, 1, 'float32', 3);
    const x2 = tf.randomNormal([3, 40], 0.5, 2, 'float32', 4);
    a.observe(x1);
    b.load(JSON.parse(JSON.stringify(a.state())));
    a.observe(x2);
    b.observe(x2);
    assert.deepEqual(b.qparams(), a.qparams(), `${cfg.kind}: same qparams after load`);
    assert.deepEqual(b.state(), a.state(), `${cfg.kind}: same state after load`);
    a.reset();
    assert.throws(() => a.qparams(), new RegExp(`observer '${cfg.kind}': range\\(\\)/qparams\\(\\) called before any observe\\(\\)`));
    assert.throws(() => b.load({ ...a.state(), kind: 'other' }), /state is for observer 'other'/);
  }
});

test('per-channel and per-group rows; shape errors name the observer and shape', () => {
  const x = tf.tensor2d([[1, -2, 3, 4], [0.5, 0.25, -8, 2]]);
  const pc = createObserver({ kind: 'minmax' }, { ...u8, granularity: { kind: 'per_channel', axis: -1 } });
  pc.observe(x);
  assertExact(pc.range().min, [0.5, -2, -8, 2], 'per-channel min (axis -1)');
  const pg = createObserver({ kind: 'minmax' }, { ...u8, granularity: { kind: 'per_group', axis: 1, size: 2 } });
  pg.observe(x);
  assertExact(pg.range().min, [-2, -8], 'per-group min');
  assertExact(pg.range().max, [1, 4], 'per-group max');
  assert.equal(pg.qparams().scale.length, 2);
  assert.throws(() => pg.observe(tf.zeros([2, 3])), /per_group size 2 does not divide axis 1 of length 3/);
  assert.throws(() => pc.observe(tf.zeros([2, 5])), /observed 5 rows, earlier 4/);
  assert.throws(() => createObserver({ kind: 'minmax' }, { ...u8, granularity: { kind: 'per_channel', axis: 2 } }).observe(x),
    /observer 'minmax': per_channel axis 2 is out of range for shape \[2,4\]/);
  assert.throws(() => pc.observe(tf.tensor2d([[NaN, 0, 0, 0]])), /NaN/);
});

function empiricalQuantile(x: Float32Array, q: number): number {
  const s = Float32Array.from(x).sort();
  const pos = q * (s.length - 1);
  const i = Math.floor(pos);
  return s[i] + (s[Math.min(i + 1, s.length - 1)] - s[i]) * (pos - i);
}

test('percentile clips both tails to within one histogram bin of the exact quantiles; 100 keeps min/max', () => {
  const x = dataWithOutliers(20000, [50, -40]);
  const p = createObserver({ kind: 'percentile', percentile: 99.9 }, u8);
  p.observe(tf.tensor1d(x.subarray(0, 10000)));
  p.observe(tf.tensor1d(x.subarray(10000))); // the outliers arrive in the second batch: the histogram grows
  const r = p.range();
  const width = ((p.state().hists as { width: number }[])[0]).width;
  assert.ok(width < 0.1, `bin width ${width}`);
  const lo = empiricalQuantile(x, 0.001);
  const hi = empiricalQuantile(x, 0.999);
  assert.ok(Math.abs(r.min[0] - lo) <= width && Math.abs(r.max[0] - hi) <= width, `[${r.min[0]}, ${r.max[0]}] vs exact [${lo}, ${hi}]`);
  assert.ok(r.max[0] < 5 && r.min[0] > -5, 'outliers clipped');
  const full = createObserver({ kind: 'percentile', percentile: 100 }, u8);
  full.observe(tf.tensor1d(x));
  assertExact(full.range().min, [-40], 'p100 min');
  assertExact(full.range().max, [50], 'p100 max');
});

/** Exact quantization MSE of x for the grid that [lo, hi] gives under spec. */
function mseOf(x: Float32Array, lo: number, hi: number, spec: QuantSpec): number {
  const { scale, zeroPoint } = qparamsFromRange(lo, hi, spec);
  const { qmin, qmax } = qrange(spec);
  let e = 0;
  for (const v of x) {
    const q = Math.min(Math.max(roundHalfEven(v / scale) + zeroPoint, qmin), qmax);
    e += ((q - zeroPoint) * scale - v) ** 2;
  }
  return e / x.length;
}

test('mse: lower error than minmax on data with outliers, and within 1% of a brute-force search on the raw data', () => {
  const x = dataWithOutliers(4000, [12, -10, 9]);
  const lo0 = Math.min(...x);
  const hi0 = Math.max(...x);
  for (const spec of [u8, { ...w4, granularity: { kind: 'per_tensor' as const } }]) {
    const mse = createObserver({ kind: 'mse' }, spec);
    mse.observe(tf.tensor1d(x));
    const r = mse.range();
    const eMse = mseOf(x, r.min[0], r.max[0], spec);
    const eMm = mseOf(x, lo0, hi0, spec);
    let best = Infinity;
    for (let k = 1; k <= 400; k++) best = Math.min(best, mseOf(x, (lo0 * k) / 400, (hi0 * k) / 400, spec));
    assert.ok(eMse < eMm, `${spec.bits} bits: mse ${eMse} vs minmax ${eMm}`);
    assert.ok(eMse <= best * 1.01, `${spec.bits} bits: mse ${eMse} vs brute force ${best}`);
    assert.ok(r.max[0] < hi0, `clipped max ${r.max[0]} < ${hi0}`);
  }
  // 4 bits: clipping the outliers pays off a lot (the grid is coarse)
  const w = { ...w4, granularity: { kind: 'per_tensor' as const } };
  const m4 = createObserver({ kind: 'mse' }, w);
  m4.observe(tf.tensor1d(x));
  assert.ok(mseOf(x, m4.range().min[0], m4.range().max[0], w) < 0.5 * mseOf(x, lo0, hi0, w));
  // uniform data has nothing to clip: MSE keeps (nearly) the full range
  const uni = Float32Array.from({ length: 1000 }, (_, i) => i / 999);
  const mu = createObserver({ kind: 'mse' }, u8);
  mu.observe(tf.tensor1d(uni));
  assert.ok(mu.range().max[0] > 0.95, `uniform data max ${mu.range().max[0]}`);
});

test('zero-width data: every observer gives a usable grid (scale = eps) that represents the value', () => {
  for (const kind of ['minmax', 'ema_minmax', 'percentile', 'mse']) {
    const o = createObserver({ kind }, u8);
    o.observe(tf.zeros([10]));
    assertExact(o.qparams().scale, [2 ** -23], `${kind} scale`);
    assertExact(o.qparams().zeroPoint, [0], `${kind} zero point`);
  }
});

test('ema momentum is the weight of the old value', () => {
  const o = createObserver({ kind: 'ema_minmax', momentum: 0.75 }, u8);
  o.observe(tf.tensor1d([0, 4]));
  o.observe(tf.tensor1d([0, 8]));
  assertExact(o.range().max, [5], 'max = 4 + 0.25*(8-4)');
  assert.throws(() => createObserver({ kind: 'ema_minmax', momentum: 1 }, u8), /momentum must be in \[0, 1\)/);
});
