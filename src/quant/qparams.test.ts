import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { FLOAT32_EPS, qparamsFromRange, qparamsFromRanges, roundHalfEven } from './qparams.js';
import { checkQParams, loadFixture } from './torch_fixtures.js';

const spec = (bits: number, signed: boolean, symmetric: boolean, narrowRange = false) => ({ bits, signed, symmetric, narrowRange });

test('qparams match torch observers bit for bit (2..8 bits, signed/unsigned, symmetric/affine, narrow)', () => {
  const n = checkQParams(loadFixture('qparams'));
  assert.ok(n > 400, `checked ${n} ranges`);
});

test('roundHalfEven rounds ties to even, others to nearest', () => {
  assert.deepEqual([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5].map(roundHalfEven), [-4, -2, -2, -0, 0, 2, 2, 4]);
  assert.deepEqual([0.49999997, -0.50000006, 2.5000002].map(roundHalfEven), [0, -1, 3]);
});

test('zero is exactly representable: the range is widened to include it', () => {
  for (const [lo, hi] of [[1, 5], [-3, -1], [-0.7, 0.3], [0.25, 0.25]]) {
    for (const s of [spec(8, false, false), spec(4, true, false), spec(3, true, true, true)]) {
      const { scale, zeroPoint } = qparamsFromRange(lo, hi, s);
      assert.ok(Number.isInteger(zeroPoint), `zero point ${zeroPoint} is an integer`);
      // 0 maps to the integer zeroPoint, which dequantizes back to exactly 0
      assert.equal((zeroPoint - zeroPoint) * scale, 0);
      const qmin = s.signed ? -(2 ** (s.bits - 1)) + (s.narrowRange ? 1 : 0) : 0;
      const qmax = s.signed ? 2 ** (s.bits - 1) - 1 : 2 ** s.bits - 1;
      assert.ok(zeroPoint >= qmin && zeroPoint <= qmax);
    }
  }
  // a negative-only range puts the zero point at qmax, a positive-only one at qmin
  assert.equal(qparamsFromRange(-3, -1, spec(8, false, false)).zeroPoint, 255);
  assert.equal(qparamsFromRange(1, 5, spec(8, false, false)).zeroPoint, 0);
});

test('zero-width ranges give scale = float32 eps', () => {
  assert.equal(FLOAT32_EPS, 1.1920928955078125e-7);
  assert.deepEqual(qparamsFromRange(0, 0, spec(8, true, true)), { scale: FLOAT32_EPS, zeroPoint: 0 });
  assert.deepEqual(qparamsFromRange(0, 0, spec(8, false, false)), { scale: FLOAT32_EPS, zeroPoint: 0 });
});

test('symmetric unsigned zero point is the middle of the grid', () => {
  assert.equal(qparamsFromRange(-1, 1, spec(8, false, true)).zeroPoint, 128);
  assert.equal(qparamsFromRange(-1, 1, spec(4, false, true)).zeroPoint, 8);
  assert.equal(qparamsFromRange(-1, 1, spec(4, true, true)).zeroPoint, 0);
  // symmetric scale: max(|min|, |max|) / ((qmax - qmin) / 2)
  assert.equal(qparamsFromRange(-2, 1, spec(8, true, true, true)).scale, Math.fround(2 / 127));
  assert.equal(qparamsFromRange(-2, 1, spec(8, true, true)).scale, Math.fround(2 / 127.5));
});

test('per-channel form agrees with the per-tensor one and validates its input', () => {
  const mins = new Float32Array([-1, 0, -0.5]);
  const maxs = new Float32Array([2, 0, 3]);
  const r = qparamsFromRanges(mins, maxs, spec(4, false, false));
  mins.forEach((m, i) => assert.deepEqual(qparamsFromRange(m, maxs[i], spec(4, false, false)), { scale: r.scale[i], zeroPoint: r.zeroPoint[i] }));
  assert.throws(() => qparamsFromRanges([0, 1], [1], spec(8, true, true)), /2 mins but 1 maxs/);
  assert.throws(() => qparamsFromRanges([0, 2], [1, 1], spec(8, true, true)), /qparamsFromRanges\[1\]: min 2 is greater than max 1/);
  assert.throws(() => qparamsFromRange(Infinity, -Infinity, spec(8, true, true)), /must be finite.*observed/);
});
