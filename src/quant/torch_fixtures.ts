// Test support (not part of the public API): load the PyTorch reference fixtures written by
// scripts/gen_torch_fixtures.py and check this package's results against them, element for element.
// Values must match exactly; gradients of scale and zero point (sums over many elements, summed in another order
// than torch's) to GRAD_RTOL relative to the sum of the magnitudes of the summed terms.

import * as assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type { QuantSpec } from '../spec/quantspec.js';
import { fakeQuant, lsqElementGrads } from './fakequant.js';
import { createObserver } from './observers.js';
import { qparamsFromRange, qparamsFromRanges } from './qparams.js';
import {
  fakeQuantizeLearnablePerChannelAffine,
  fakeQuantizeLearnablePerTensorAffine,
  fakeQuantizePerChannelAffine,
  fakeQuantizePerTensorAffine,
} from './torch_api.js';

export const GRAD_RTOL = 1e-6;

export function repoRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(d, 'package.json'))) {
    const up = dirname(d);
    if (up === d) throw new Error('repoRoot: no package.json above ' + fileURLToPath(import.meta.url));
    d = up;
  }
  return d;
}

export const FIXTURE_DIR = (): string => join(repoRoot(), 'test', 'fixtures', 'torch');

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Fixture = any;

export function loadFixture(name: string, dir = FIXTURE_DIR()): Fixture {
  return JSON.parse(readFileSync(join(dir, `${name}.json`), 'utf8'));
}

/** Exact equality element for element (+0 and -0 count as equal). */
export function assertExact(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++)
    if (!(actual[i] === expected[i] || (Number.isNaN(actual[i]) && Number.isNaN(expected[i]))))
      assert.fail(`${what}[${i}]: got ${actual[i]}, torch ${expected[i]}`);
}

/** |a - e| <= rtol * scale[i] (scale: the magnitude the value is relative to; default |e|), plus 1e-30 for zeros. */
export function assertClose(
  actual: ArrayLike<number>, expected: ArrayLike<number>, rtol: number, what: string, scale?: ArrayLike<number>,
): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < expected.length; i++) {
    const tol = rtol * Math.max(Math.abs(expected[i]), scale ? scale[i] : 0) + 1e-30;
    if (!(Math.abs(actual[i] - expected[i]) <= tol))
      assert.fail(`${what}[${i}]: got ${actual[i]}, torch ${expected[i]} (diff ${Math.abs(actual[i] - expected[i])}, tol ${tol})`);
  }
}

const specOf = (s: Fixture): QuantSpec => ({
  bits: s.bits, signed: s.signed, symmetric: s.symmetric, narrowRange: s.narrowRange,
  granularity: s.granularity ?? { kind: 'per_tensor' },
});

// ---- qparams ------------------------------------------------------------------------------------------------------

export function checkQParams(fx: Fixture): number {
  let n = 0;
  for (const c of fx.cases) {
    const spec = specOf(c.spec);
    const tag = `qparams ${JSON.stringify(c.spec)}`;
    const pc = qparamsFromRanges(c.min, c.max, spec);
    assertExact(pc.scale, c.scale, `${tag} scale`);
    assertExact(pc.zeroPoint, c.zero_point, `${tag} zero point`);
    c.min.forEach((mn: number, i: number) => {
      const p = qparamsFromRange(mn, c.max[i], spec);
      assert.equal(p.scale, c.scale[i], `${tag} per-tensor scale [${mn}, ${c.max[i]}]`);
      assert.equal(p.zeroPoint, c.zero_point[i], `${tag} per-tensor zero point [${mn}, ${c.max[i]}]`);
      n++;
    });
  }
  return n;
}

// ---- fake quant ---------------------------------------------------------------------------------------------------

/** Value and input gradient of f at x for output gradient dy. */
function valueAndDx(f: (x: tf.Tensor) => tf.Tensor, x: tf.Tensor, dy: tf.Tensor): { y: Float32Array; dx: Float32Array } {
  return tf.tidy(() => {
    const y = f(x).dataSync() as Float32Array;
    const dx = tf.grad(f)(x, dy).dataSync() as Float32Array;
    return { y, dx };
  });
}

export function checkFakeQuant(fx: Fixture): number {
  let n = 0;
  for (const c of fx.per_tensor) {
    const x = tf.tensor(c.x, c.shape);
    const dy = tf.tensor(c.dy, c.shape);
    const tag = `per-tensor ${c.name}`;
    const api = valueAndDx((t) => fakeQuantizePerTensorAffine(t, c.scale, c.zero_point, c.quant_min, c.quant_max), x, dy);
    assertExact(api.y, c.y, `${tag} y`);
    assertExact(api.dx, c.dx, `${tag} dx`);
    const gen = valueAndDx(
      (t) => fakeQuant(t, tf.scalar(c.scale), tf.scalar(c.zero_point), { qmin: c.quant_min, qmax: c.quant_max }), x, dy);
    assertExact(gen.y, c.y, `${tag} y (fakeQuant)`);
    assertExact(gen.dx, c.dx, `${tag} dx (fakeQuant)`);
    tf.dispose([x, dy]);
    n++;
  }
  for (const c of fx.per_channel) {
    const x = tf.tensor(c.x, c.shape);
    const dy = tf.tensor(c.dy, c.shape);
    const s = tf.tensor1d(c.scale);
    const z = tf.tensor1d(c.zero_point, c.zero_point_dtype);
    const tag = `per-channel ${c.name}`;
    const r = valueAndDx((t) => fakeQuantizePerChannelAffine(t, s, z, c.axis, c.quant_min, c.quant_max), x, dy);
    assertExact(r.y, c.y, `${tag} y`);
    assertExact(r.dx, c.dx, `${tag} dx`);
    tf.dispose([x, dy, s, z]);
    n++;
  }
  return n;
}

// ---- learnable ----------------------------------------------------------------------------------------------------

/** Per element |dscale| and |dzp| terms summed per channel: the magnitude a summed gradient is relative to. */
function termMagnitudes(c: Fixture, axis: number | null): { ds: number[]; dz: number[] } {
  return tf.tidy(() => {
    const x = tf.tensor(c.x, c.shape);
    const shape = new Array<number>(x.rank).fill(1);
    if (axis !== null) shape[axis] = c.scale.length;
    const s = tf.reshape(tf.tensor1d(c.scale), axis === null ? [] : shape);
    const z = tf.reshape(tf.clipByValue(tf.round(tf.tensor1d(c.zero_point)), c.quant_min, c.quant_max), axis === null ? [] : shape);
    const g = lsqElementGrads({
      x, dy: tf.abs(tf.tensor(c.dy, c.shape)), scale: s, zp: z, qmin: c.quant_min, qmax: c.quant_max,
      gradFactor: c.grad_factor,
    });
    const axes = [...Array(x.rank).keys()].filter((a) => a !== axis);
    const red = (t: tf.Tensor): number[] => Array.from(tf.sum(tf.abs(t), axes).dataSync());
    return { ds: red(g.dScale), dz: red(g.dZeroPoint) };
  });
}

export function checkLearnable(fx: Fixture): number {
  let n = 0;
  const run = (c: Fixture, axis: number | null): void => {
    const tag = `learnable ${axis === null ? 'per-tensor' : 'per-channel'} ${c.name}`;
    const x = tf.tensor(c.x, c.shape);
    const dy = tf.tensor(c.dy, c.shape);
    const s = tf.tensor1d(c.scale);
    const z = tf.tensor1d(c.zero_point);
    const f = (xs: tf.Tensor, ss: tf.Tensor, zs: tf.Tensor): tf.Tensor =>
      axis === null
        ? fakeQuantizeLearnablePerTensorAffine(xs, ss, zs, c.quant_min, c.quant_max, c.grad_factor)
        : fakeQuantizeLearnablePerChannelAffine(xs, ss as tf.Tensor1D, zs as tf.Tensor1D, axis, c.quant_min, c.quant_max, c.grad_factor);
    const y = tf.tidy(() => f(x, s, z).dataSync());
    const [gx, gs, gz] = tf.grads(f)([x, s, z], dy);
    assertExact(y, c.y, `${tag} y`);
    assertExact(gx.dataSync(), c.dx, `${tag} dx`);
    const mag = termMagnitudes(c, axis);
    assertClose(gs.dataSync(), c.dscale, GRAD_RTOL, `${tag} dscale`, mag.ds);
    assertClose(gz.dataSync(), c.dzero_point, GRAD_RTOL, `${tag} dzero_point`, mag.dz);
    tf.dispose([x, dy, s, z, gx, gs, gz]);
    n++;
  };
  for (const c of fx.per_tensor) run(c, null);
  for (const c of fx.per_channel) run(c, c.axis);
  return n;
}

// ---- observers ----------------------------------------------------------------------------------------------------

export function checkObservers(fx: Fixture): number {
  let n = 0;
  for (const c of fx.cases) {
    const tag = `observer ${c.name}`;
    const obs = createObserver({ kind: c.kind, momentum: c.momentum }, specOf(c.spec));
    for (const b of c.batches) tf.tidy(() => obs.observe(tf.tensor(b.x, b.shape)));
    const r = obs.range();
    assertExact(r.min, c.min, `${tag} min`);
    assertExact(r.max, c.max, `${tag} max`);
    const q = obs.qparams();
    assertExact(q.scale, c.scale, `${tag} scale`);
    assertExact(q.zeroPoint, c.zero_point, `${tag} zero point`);
    n++;
  }
  return n;
}
