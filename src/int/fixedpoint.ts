// Fixed-point requantization as gemmlowp and TFLite do it (Jacob et al. 2018, section 2.2):
// a positive real multiplier M becomes M0 * 2^shift with M0 an int32 in [2^30, 2^31), i.e. [0.5, 1) in Q31,
// and int32 * M is computed with int32 integer arithmetic only. Everything here is exact: no BigInt,
// no float rounding error (the one float product below is corrected with the exact low word).

const TWO30 = 1073741824;
const TWO31 = 2147483648;
const TWO32 = 4294967296;
const INT32_MIN = -2147483648;
const INT32_MAX = 2147483647;

export interface QuantizedMultiplier {
  /** int32 in [2^30, 2^31) (or 0 for a zero multiplier) */
  multiplier: number;
  /** power of two: real = multiplier / 2^31 * 2^shift; > 0 is a left shift */
  shift: number;
}

/**
 * TFLite's QuantizeMultiplier: frexp, round the mantissa to Q31 (half away from zero), renormalize
 * when it rounds up to 2^31, and flush to zero below 2^-31 (all bits would be shifted out).
 */
export function quantizeMultiplier(realMultiplier: number): QuantizedMultiplier {
  if (!Number.isFinite(realMultiplier) || realMultiplier < 0)
    throw new RangeError(`quantizeMultiplier: multiplier must be a finite number >= 0, got ${realMultiplier}`);
  if (realMultiplier === 0) return { multiplier: 0, shift: 0 };
  // frexp: q in [0.5, 1), realMultiplier = q * 2^shift. Scaling by powers of two is exact.
  let shift = Math.floor(Math.log2(realMultiplier)) + 1;
  let q = realMultiplier / 2 ** shift;
  while (q >= 1) { q /= 2; shift++; }
  while (q < 0.5) { q *= 2; shift--; }
  let qFixed = Math.round(q * TWO31); // q > 0, so Math.round (half up) is half away from zero
  if (qFixed === TWO31) {
    qFixed /= 2;
    shift++;
  }
  if (shift < -31) return { multiplier: 0, shift: 0 };
  // a left shift of 31 would overflow x * 2^shift before the multiply
  if (shift > 30) throw new RangeError(`quantizeMultiplier: multiplier ${realMultiplier} too large (needs a left shift of ${shift} > 30)`);
  return { multiplier: qFixed, shift };
}

/** The real number a quantized multiplier stands for. */
export function multiplierValue(q: QuantizedMultiplier): number {
  return (q.multiplier / TWO31) * 2 ** q.shift;
}

/**
 * gemmlowp SaturatingRoundingDoublingHighMul: (a * b * 2 + 2^31 rounding) >> 32, i.e. round(a*b / 2^31)
 * with the nudge (+2^30, or 1 - 2^30 for a negative product: ties round up), saturating the one overflow case (-2^31 * -2^31).
 * The 64-bit product is split exactly: Math.imul gives its low 32 bits, and the double product
 * (error < 2^10) gives the high word after subtracting them.
 */
export function saturatingRoundingDoublingHighMul(a: number, b: number): number {
  if (a === INT32_MIN && b === INT32_MIN) return INT32_MAX;
  const lo = Math.imul(a, b) >>> 0;
  const hi = Math.round((a * b - lo) / TWO32);
  // product = hi * 2^32 + lo; C's int64 division truncates toward zero, so floor for >= 0, ceil for < 0
  return hi >= 0
    ? 2 * hi + Math.floor((lo + TWO30) / TWO31)
    : 2 * hi + Math.ceil((lo + 1 - TWO30) / TWO31);
}

/** gemmlowp RoundingDivideByPOT: x / 2^exponent rounded to nearest, ties away from zero. exponent in [0, 31]. */
export function roundingDivideByPOT(x: number, exponent: number): number {
  const mask = ((1 << exponent) - 1) | 0;
  const remainder = x & mask;
  const threshold = (mask >> 1) + (x < 0 ? 1 : 0);
  return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/** TFLite MultiplyByQuantizedMultiplier: x * multiplier * 2^shift, int32 in, int32 out. */
export function multiplyByQuantizedMultiplier(x: number, multiplier: number, shift: number): number {
  const left = shift > 0 ? shift : 0;
  const right = shift > 0 ? 0 : -shift;
  // x * 2^left wraps in int32 like the C code does (UB there, wrap in practice)
  return roundingDivideByPOT(saturatingRoundingDoublingHighMul(Math.imul(x, 1 << left), multiplier), right);
}

/** Per-channel multipliers as two Int32Arrays, the layout the kernels' loops read. */
export function quantizeMultipliers(reals: ArrayLike<number>): { multiplier: Int32Array; shift: Int32Array } {
  const multiplier = new Int32Array(reals.length);
  const shift = new Int32Array(reals.length);
  for (let i = 0; i < reals.length; i++) {
    const q = quantizeMultiplier(reals[i]);
    multiplier[i] = q.multiplier;
    shift[i] = q.shift;
  }
  return { multiplier, shift };
}

/**
 * MultiplyByQuantizedMultiplier with a single rounding (TFLite's TFLITE_SINGLE_ROUNDING; XNNPACK's "rndnu"):
 * round(x * 2^left * multiplier / 2^(31 + right)), ties toward +infinity, computed exactly in int64 arithmetic.
 * gemmlowp's double rounding (above) first rounds x * multiplier to Q31 and then again by 2^right, which is off by
 * one whenever the first rounding lands on the second's tie: often when accumulators are small (few-bit operands)
 * and a few values repeat (constant image backgrounds). x * 2^left wraps in int32 as above.
 */
export function multiplyByQuantizedMultiplierSingle(x: number, multiplier: number, shift: number): number {
  const left = shift > 0 ? shift : 0;
  const T = 31 + (shift > 0 ? 0 : -shift); // total right shift, 31 .. 62
  const a = Math.imul(x, 1 << left);
  // exact product a * multiplier = hi * 2^32 + lo, as in saturatingRoundingDoublingHighMul
  const lo = Math.imul(a, multiplier) >>> 0;
  const hi = Math.round((a * multiplier - lo) / TWO32);
  // floor((product + 2^(T-1)) / 2^T)
  if (T <= 32) return hi * 2 ** (32 - T) + Math.floor((lo + 2 ** (T - 1)) / 2 ** T);
  return Math.floor((hi + 2 ** (T - 33)) / 2 ** (T - 32));
}
