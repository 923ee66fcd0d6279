// Scale and zero point from an observed range, as PyTorch's observers compute them
// (torch.ao.quantization.observer _calculate_qparams). Pure: no tfjs.
//
// The arithmetic is float32 where torch's is (torch does it on float32 tensors), so that results match torch bit for
// bit: every step goes through Math.fround.

import { qrange, type QuantSpec } from '../spec/quantspec.js';

/** torch.finfo(torch.float32).eps: the floor of every scale, so that zero-width ranges still give a usable grid. */
export const FLOAT32_EPS = 2 ** -23;

export type GridSpec = Pick<QuantSpec, 'bits' | 'signed' | 'symmetric' | 'narrowRange'>;

const f32 = Math.fround;

/** Round half to even, like torch.round / std::nearbyint. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v); // half up
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Zero point of a symmetric grid: 0 when signed; the middle of the grid (qmin+qmax+1)/2 when unsigned (128 for 8 bits,
 *  as torch's default quint8 observer; torch's customized-range observers take (qmin+qmax)//2 instead). */
function symmetricZeroPoint(signed: boolean, qmin: number, qmax: number): number {
  return signed ? 0 : Math.floor((qmin + qmax + 1) / 2);
}

function check(min: number, max: number, where: string): void {
  if (!Number.isFinite(min) || !Number.isFinite(max))
    throw new RangeError(`${where}: range must be finite, got [${min}, ${max}] (was anything observed?)`);
  if (min > max) throw new RangeError(`${where}: min ${min} is greater than max ${max}`);
}

function compute(min: number, max: number, spec: GridSpec, qmin: number, qmax: number): [number, number] {
  // The range is widened to include 0 so that 0.0 is exactly representable (padding, ReLU outputs).
  const lo = Math.min(f32(min), 0);
  const hi = Math.max(f32(max), 0);
  if (spec.symmetric) {
    const half = f32((qmax - qmin) / 2);
    const scale = Math.max(f32(Math.max(-lo, hi) / half), FLOAT32_EPS);
    return [scale, symmetricZeroPoint(spec.signed, qmin, qmax)];
  }
  const scale = Math.max(f32(f32(hi - lo) / (qmax - qmin)), FLOAT32_EPS);
  const zp = qmin - roundHalfEven(f32(lo / scale));
  return [scale, Math.min(Math.max(zp, qmin), qmax)];
}

/** Scale and (integer) zero point for values in [min, max] on the grid of `spec`. */
export function qparamsFromRange(min: number, max: number, spec: GridSpec): { scale: number; zeroPoint: number } {
  check(min, max, 'qparamsFromRange');
  const { qmin, qmax } = qrange(spec);
  const [scale, zeroPoint] = compute(min, max, spec, qmin, qmax);
  return { scale, zeroPoint };
}

/** Per-channel (or per-group) form of qparamsFromRange: one scale and zero point per entry of mins/maxs. */
export function qparamsFromRanges(
  mins: ArrayLike<number>,
  maxs: ArrayLike<number>,
  spec: GridSpec,
): { scale: Float32Array; zeroPoint: Float32Array } {
  if (mins.length !== maxs.length)
    throw new RangeError(`qparamsFromRanges: ${mins.length} mins but ${maxs.length} maxs`);
  const { qmin, qmax } = qrange(spec);
  const scale = new Float32Array(mins.length);
  const zeroPoint = new Float32Array(mins.length);
  for (let i = 0; i < mins.length; i++) {
    check(mins[i], maxs[i], `qparamsFromRanges[${i}]`);
    [scale[i], zeroPoint[i]] = compute(mins[i], maxs[i], spec, qmin, qmax);
  }
  return { scale, zeroPoint };
}
