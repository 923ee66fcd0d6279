// Helpers shared by the backend tests: run the same computation on several backends and
// compare with a norm-wise relative error (robust for sums, where element-wise relative
// error is meaningless near zero).
import * as tf from '@tensorflow/tfjs-core';

/** Deterministic PRNG (mulberry32) so failures reproduce. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randArray(r: () => number, n: number, lo = -1, hi = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = lo + (hi - lo) * r();
  return a;
}

export function randInt(r: () => number, lo: number, hi: number): number {
  return lo + Math.floor(r() * (hi - lo + 1));
}

/** ||a-b||_2 / max(||b||_2, 1e-30); Infinity on length mismatch or NaN. */
export function relErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  const e = Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
  return Number.isNaN(e) ? Infinity : e;
}

export interface Result { shape: number[]; data: Float32Array | Int32Array }

/** Runs fn on the named backend and returns its outputs as plain arrays. */
export async function runOn(backend: string, fn: () => tf.Tensor | tf.Tensor[]): Promise<Result[]> {
  if (!(await tf.setBackend(backend))) throw new Error(`backend ${backend} unavailable`);
  const before = tf.memory().numTensors;
  const outs = tf.tidy(() => {
    const r = fn();
    return Array.isArray(r) ? r : [r];
  });
  const res = outs.map((t) => ({ shape: t.shape.slice(), data: t.dataSync() as Float32Array | Int32Array }));
  tf.dispose(outs);
  const leaked = tf.memory().numTensors - before;
  if (leaked !== 0) throw new Error(`${backend}: ${leaked} tensors leaked`);
  return res;
}

/** Compares fn on `backend` against tfjs's cpu backend; returns the worst relative error. */
export async function compareWithCpu(backend: string, fn: () => tf.Tensor | tf.Tensor[]): Promise<number> {
  const ref = await runOn('cpu', fn);
  const got = await runOn(backend, fn);
  if (ref.length !== got.length) throw new Error('output count differs');
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    if (ref[i].shape.join() !== got[i].shape.join()) {
      throw new Error(`output ${i}: shape ${got[i].shape} vs cpu ${ref[i].shape}`);
    }
    worst = Math.max(worst, relErr(got[i].data, ref[i].data));
  }
  return worst;
}
