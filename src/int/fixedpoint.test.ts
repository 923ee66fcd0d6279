import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  multiplierValue, multiplyByQuantizedMultiplier, multiplyByQuantizedMultiplierSingle, quantizeMultiplier, quantizeMultipliers,
  roundingDivideByPOT, saturatingRoundingDoublingHighMul,
} from './fixedpoint.js';

const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

// ---- BigInt references, written straight from gemmlowp's fixedpoint.h and TFLite's common.h ----

function srdhmRef(a: number, b: number): number {
  if (a === INT32_MIN && b === INT32_MIN) return INT32_MAX;
  const ab = BigInt(a) * BigInt(b);
  const nudge = ab >= 0n ? 1n << 30n : 1n - (1n << 30n);
  return Number((ab + nudge) / (1n << 31n)); // BigInt division truncates toward zero, like C
}

function rdbpotRef(x: number, e: number): number {
  // round to nearest, ties away from zero
  const d = 2n ** BigInt(e);
  const X = BigInt(x);
  const q = (X < 0n ? -X : X) * 2n + d; // |x| / 2^e + 1/2, scaled by 2 * 2^e
  const r = q / (2n * d);
  return Number(X < 0n ? -r : r);
}

function mbqmRef(x: number, m: number, shift: number): number {
  const left = shift > 0 ? shift : 0;
  const right = shift > 0 ? 0 : -shift;
  const shifted = Number(BigInt.asIntN(32, BigInt(x) << BigInt(left)));
  return rdbpotRef(srdhmRef(shifted, m), right);
}

/** TFLite's TFLITE_SINGLE_ROUNDING MultiplyByQuantizedMultiplier (x pre-shifted left, wrapping, as above). */
function mbqmSingleRef(x: number, m: number, shift: number): number {
  const left = shift > 0 ? shift : 0;
  const T = 31n + BigInt(shift > 0 ? 0 : -shift);
  const a = BigInt.asIntN(32, BigInt(x) << BigInt(left));
  return Number((a * BigInt(m) + (1n << (T - 1n))) >> T); // >> on BigInt floors
}

/** Deterministic int32s, biased toward the edges where rounding bugs live. */
function* int32s(seed: number, n: number): Generator<number> {
  let s = seed >>> 0;
  const next = (): number => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) | 0;
  };
  const edges = [0, 1, -1, INT32_MIN, INT32_MAX, INT32_MIN + 1, 1 << 30, -(1 << 30), (1 << 30) - 1, 46341, -46341];
  for (let i = 0; i < n; i++) {
    const r = next();
    const kind = i % 4;
    yield kind === 0 ? edges[(r >>> 0) % edges.length] : kind === 1 ? r >> ((r >>> 0) % 31) : r;
  }
}

test('SaturatingRoundingDoublingHighMul: known gemmlowp values', () => {
  assert.equal(saturatingRoundingDoublingHighMul(1 << 30, 1 << 30), 1 << 29); // 0.5 * 0.5 = 0.25 in Q31
  assert.equal(saturatingRoundingDoublingHighMul(INT32_MIN, INT32_MIN), INT32_MAX); // the one saturating case
  assert.equal(saturatingRoundingDoublingHighMul(INT32_MIN, 1 << 30), -(1 << 30)); // -1 * 0.5
  assert.equal(saturatingRoundingDoublingHighMul(INT32_MAX, INT32_MAX), 2147483646);
  assert.equal(saturatingRoundingDoublingHighMul(1, 1 << 30), 1); // 0.5 -> 1
  // the nudge 1 - 2^30 for negative products makes ties go up, not away from zero: -0.5 -> 0, -1.5 -> -1
  assert.equal(saturatingRoundingDoublingHighMul(-1, 1 << 30), 0);
  assert.equal(saturatingRoundingDoublingHighMul(-3, 1 << 30), -1);
  assert.equal(saturatingRoundingDoublingHighMul(-3, 1 << 29), -1); // -0.75 -> -1
  assert.equal(saturatingRoundingDoublingHighMul(3, 1 << 29), 1); // 0.75 -> 1
  assert.equal(saturatingRoundingDoublingHighMul(1, (1 << 30) - 1), 0); // just under 0.5 -> 0
  assert.equal(saturatingRoundingDoublingHighMul(0, INT32_MIN), 0);
});

test('SaturatingRoundingDoublingHighMul equals the BigInt reference on 200k inputs', () => {
  const a = [...int32s(1, 200000)];
  const b = [...int32s(2, 200000)];
  for (let i = 0; i < a.length; i++) {
    const got = saturatingRoundingDoublingHighMul(a[i], b[i]);
    if (got !== srdhmRef(a[i], b[i])) assert.fail(`srdhm(${a[i]}, ${b[i]}) = ${got}, reference ${srdhmRef(a[i], b[i])}`);
  }
});

test('RoundingDivideByPOT: ties away from zero, and the BigInt reference for every exponent', () => {
  assert.equal(roundingDivideByPOT(5, 1), 3);
  assert.equal(roundingDivideByPOT(-5, 1), -3);
  assert.equal(roundingDivideByPOT(4, 1), 2);
  assert.equal(roundingDivideByPOT(7, 2), 2);
  assert.equal(roundingDivideByPOT(-6, 2), -2);
  assert.equal(roundingDivideByPOT(6, 2), 2);
  assert.equal(roundingDivideByPOT(-1, 1), -1);
  assert.equal(roundingDivideByPOT(INT32_MIN, 31), -1);
  assert.equal(roundingDivideByPOT(INT32_MAX, 31), 1);
  assert.equal(roundingDivideByPOT(123, 0), 123);
  let i = 0;
  for (const x of int32s(3, 64000)) {
    const e = i++ % 32;
    const got = roundingDivideByPOT(x, e);
    if (got !== rdbpotRef(x, e)) assert.fail(`rdbpot(${x}, ${e}) = ${got}, reference ${rdbpotRef(x, e)}`);
  }
});

test('QuantizeMultiplier: TFLite quantization_util_test values', () => {
  const q = (d: number): [number, number] => {
    const r = quantizeMultiplier(d);
    return [r.multiplier, r.shift];
  };
  assert.deepEqual(q(0), [0, 0]);
  assert.deepEqual(q(0.125), [1073741824, -2]);
  assert.deepEqual(q(0.25), [1073741824, -1]);
  assert.deepEqual(q(0.5), [1073741824, 0]);
  assert.deepEqual(q(1), [1073741824, 1]);
  assert.deepEqual(q(2), [1073741824, 2]);
  assert.deepEqual(q(4), [1073741824, 3]);
  // the mantissa rounds up to 2^31 and renormalizes
  assert.deepEqual(q(0.99999999999), [1073741824, 1]);
  assert.deepEqual(q(1.99999999999), [1073741824, 2]);
  // below 2^-31 every bit would be shifted out
  assert.deepEqual(q(1e-40), [0, 0]);
  assert.deepEqual(q(0.75), [1610612736, 0]);
  assert.throws(() => quantizeMultiplier(-0.5), /finite number >= 0/);
  assert.throws(() => quantizeMultiplier(Number.NaN), /finite number >= 0/);
  assert.throws(() => quantizeMultiplier(2 ** 31), /too large/);
});

test('QuantizeMultiplier: normalized to [2^30, 2^31) and within half a Q31 step of the real value', () => {
  let s = 12345;
  for (let i = 0; i < 20000; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const real = 2 ** ((s / 2 ** 32) * 40 - 30); // 2^-30 .. 2^10
    const q = quantizeMultiplier(real);
    assert.ok(q.multiplier >= 2 ** 30 && q.multiplier < 2 ** 31, `multiplier ${q.multiplier} for ${real}`);
    assert.ok(Math.abs(multiplierValue(q) - real) <= 2 ** (q.shift - 32), `value of ${real}`);
  }
});

/** Check fn against its BigInt reference over n int32s (seed xSeed) with multipliers of reals 2^-32 .. 2^4 (seed s). */
function checkAgainstRef(
  what: string, fn: (x: number, m: number, shift: number) => number, ref: typeof fn, xSeed: number, n: number, s: number,
): void {
  const xs = [...int32s(xSeed, n)];
  for (let i = 0; i < xs.length; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const real = 2 ** ((s / 2 ** 32) * 36 - 32); // 2^-32 .. 2^4
    const { multiplier, shift } = quantizeMultiplier(real);
    const x = shift > 0 ? xs[i] >> 8 : xs[i];
    const got = fn(x, multiplier, shift);
    const want = ref(x, multiplier, shift);
    if (got !== want) assert.fail(`${what}(${x}, ${multiplier}, ${shift}) = ${got}, reference ${want}`);
  }
}

test('MultiplyByQuantizedMultiplier equals the BigInt reference, left and right shifts', () => {
  checkAgainstRef('mbqm', multiplyByQuantizedMultiplier, mbqmRef, 4, 50000, 99);
});

test('MultiplyByQuantizedMultiplier approximates x * real within one unit', () => {
  for (const real of [0.0003, 0.0271, 0.3333, 0.5, 0.999, 1.5, 3.75]) {
    const { multiplier, shift } = quantizeMultiplier(real);
    for (const x of [0, 1, -1, 7, -7, 1000, -1000, 123456, -98765, 2 ** 20]) {
      const got = multiplyByQuantizedMultiplier(x, multiplier, shift);
      assert.ok(Math.abs(got - x * real) <= 1, `${x} * ${real}: ${got}`);
    }
  }
  // a gemmlowp example: 1000 * 0.3 -> 300 exactly
  const q = quantizeMultiplier(0.3);
  assert.equal(multiplyByQuantizedMultiplier(1000, q.multiplier, q.shift), 300);
});

test('quantizeMultipliers packs per-channel values', () => {
  const r = quantizeMultipliers([0.5, 0.25, 0]);
  assert.deepEqual([...r.multiplier], [1073741824, 1073741824, 0]);
  assert.deepEqual([...r.shift], [0, -1, 0]);
});

test('MultiplyByQuantizedMultiplierSingle equals the TFLite single-rounding BigInt reference', () => {
  checkAgainstRef('single', multiplyByQuantizedMultiplierSingle, mbqmSingleRef, 7, 60000, 5);
});

test('single rounding is off by at most the multiplier error where gemmlowp double rounding is off by one', () => {
  // 3766 * 0.0025221... = 9.49828 (a LeNet conv output): gemmlowp rounds to 2432 / 256 = 9.5 first, then up to 10
  const q = { multiplier: 1386546468, shift: -8 };
  assert.equal(multiplyByQuantizedMultiplier(3766, q.multiplier, q.shift), 10);
  assert.equal(multiplyByQuantizedMultiplierSingle(3766, q.multiplier, q.shift), 9);
  // ties go toward +infinity
  const half = quantizeMultiplier(0.5);
  assert.deepEqual([5, -5, 3, -3].map((x) => multiplyByQuantizedMultiplierSingle(x, half.multiplier, half.shift)), [3, -2, 2, -1]);
  // |single - x * real| <= 1/2 + x * (Q31 error)
  for (const real of [0.0003, 0.0271, 0.3333, 0.999, 1.5, 3.75]) {
    const m = quantizeMultiplier(real);
    for (const x of [0, 1, -1, 7, -7, 1000, -1000, 123456, -98765, 2 ** 20]) {
      const got = multiplyByQuantizedMultiplierSingle(x, m.multiplier, m.shift);
      assert.ok(Math.abs(got - x * multiplierValue(m)) <= 0.5, `${x} * ${real}: ${got}`);
    }
  }
});
