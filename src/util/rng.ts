// Seeded PRNG: xoshiro128** (fast, 128-bit state, good statistics), seeded through splitmix32.
// The state is four uint32s, so a checkpoint can store the exact position and resume it.

export type RngState = [number, number, number, number];

function splitmix32(x: number): number {
  x = (x + 0x9e3779b9) | 0;
  x ^= x >>> 16;
  x = Math.imul(x, 0x21f0aaad);
  x ^= x >>> 15;
  x = Math.imul(x, 0x735a2d97);
  x ^= x >>> 15;
  return x >>> 0;
}

const rotl = (x: number, k: number) => (x << k) | (x >>> (32 - k));

/**
 * One 32-bit seed from any number of integers (seed, epoch, worker...): nearby inputs give unrelated seeds.
 * Integers up to 2^53 are taken whole (both halves are mixed in).
 */
export function mixSeed(...parts: number[]): number {
  let h = 0x6a09e667;
  for (const p of parts) {
    if (!Number.isSafeInteger(p)) throw new RangeError(`mixSeed: ${p} is not a safe integer`);
    const lo = p >>> 0;
    const hi = Math.floor(p / 0x100000000) >>> 0;
    h = splitmix32(h ^ lo);
    h = splitmix32(h ^ hi);
  }
  return h;
}

export class Rng {
  private s: Uint32Array;

  constructor(seed: number) {
    this.s = new Uint32Array(4);
    let x = mixSeed(seed);
    for (let i = 0; i < 4; i++) this.s[i] = x = splitmix32(x);
    // xoshiro must not start from all zeros (it would stay there)
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  static fromState(state: readonly number[]): Rng {
    const r = new Rng(0);
    r.setState(state);
    return r;
  }

  /** a uint32 */
  next(): number {
    const s = this.s;
    const result = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** uniform in [0, 1), 32 bits of resolution */
  float(): number {
    return this.next() / 0x100000000;
  }

  /** uniform integer in [0, n), without modulo bias; n <= 2^32 */
  int(n: number): number {
    if (!(Number.isInteger(n) && n > 0 && n <= 0x100000000)) throw new RangeError(`Rng.int: n must be an integer in [1, 2^32], got ${n}`);
    const limit = 0x100000000 - (0x100000000 % n);
    let x: number;
    do x = this.next();
    while (x >= limit);
    return x % n;
  }

  /** Fisher-Yates, in place; returns the same array */
  shuffle<T, A extends { length: number; [i: number]: T }>(array: A): A {
    for (let i = array.length - 1; i > 0; i--) {
      const j = this.int(i + 1);
      const tmp = array[i];
      array[i] = array[j];
      array[j] = tmp;
    }
    return array;
  }

  state(): RngState {
    return [this.s[0], this.s[1], this.s[2], this.s[3]];
  }

  setState(state: readonly number[]): void {
    if (state.length !== 4 || state.some((v) => !Number.isInteger(v) || v < 0 || v > 0xffffffff))
      throw new RangeError(`Rng.setState: expected four uint32s, got ${JSON.stringify(state)}`);
    if (state.every((v) => v === 0)) throw new RangeError('Rng.setState: the all-zero state is invalid for xoshiro128**');
    this.s.set(state);
  }
}

export const createRng = (seed: number) => new Rng(seed);

/** a permutation of 0..n-1 */
export function permutation(n: number, rng: Rng): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  return rng.shuffle(p);
}
