// Observers: watch tensors, keep a range per tensor / channel / group, turn it into qparams (qparams.ts).
// A registry keyed by ObserverConfig.kind; state is plain JSON so that checkpoints can hold it.
//
// Rows: per_tensor has one; per_channel one per index of `axis`; per_group one per run of `size` consecutive indices
// of `axis` (row r covers indices r*size .. r*size+size-1). qparams() returns one entry per row, in that order.

import * as tf from '@tensorflow/tfjs-core';
import { qrange, type Granularity, type ObserverConfig, type QuantSpec } from '../spec/quantspec.js';
import { qparamsFromRanges, roundHalfEven } from './qparams.js';

export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

export interface ObserverState {
  kind: string;
  version: 1;
  [field: string]: Json;
}

export interface Observer {
  readonly kind: string;
  /** Fold a tensor into the running statistics (synchronous: reads the data). */
  observe(x: tf.Tensor): void;
  /** The clip range per row, from which qparams() is computed. Throws before the first observe(). */
  range(): { min: Float32Array; max: Float32Array };
  qparams(): { scale: Float32Array; zeroPoint: Float32Array };
  reset(): void;
  state(): ObserverState;
  load(state: ObserverState): void;
}

export type ObserverFactory = (cfg: ObserverConfig, spec: QuantSpec) => Observer;

const factories = new Map<string, ObserverFactory>();

export function registerObserver(kind: string, factory: ObserverFactory): void {
  factories.set(kind, factory);
}

export function observerKinds(): string[] {
  return [...factories.keys()];
}

export function createObserver(cfg: ObserverConfig, spec: QuantSpec): Observer {
  const f = factories.get(cfg.kind);
  if (!f) throw new Error(`createObserver: unknown observer kind '${cfg.kind}' (known: ${observerKinds().join(', ')})`);
  return f(cfg, spec);
}

// ---- rows ---------------------------------------------------------------------------------------------------------

interface Layout {
  rows: number;
  outer: number;
  axisLen: number;
  inner: number;
  group: number;
}

function layoutOf(shape: number[], g: Granularity, where: string): Layout {
  const size = shape.reduce((a, b) => a * b, 1);
  if (g.kind === 'per_tensor') return { rows: 1, outer: 1, axisLen: 1, inner: size, group: 1 };
  const rank = shape.length;
  if (g.axis < -rank || g.axis >= rank)
    throw new RangeError(`${where}: ${g.kind} axis ${g.axis} is out of range for shape [${shape}]`);
  const axis = g.axis < 0 ? g.axis + rank : g.axis;
  const axisLen = shape[axis];
  const group = g.kind === 'per_group' ? g.size : 1;
  if (axisLen % group !== 0)
    throw new RangeError(`${where}: per_group size ${group} does not divide axis ${axis} of length ${axisLen} (shape [${shape}])`);
  const outer = shape.slice(0, axis).reduce((a, b) => a * b, 1);
  const inner = shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  return { rows: axisLen / group, outer, axisLen, inner, group };
}

/** Calls fn(row, start, end) for every contiguous run of elements that belong to one row. */
function forEachRun(l: Layout, fn: (row: number, start: number, end: number) => void): void {
  for (let o = 0; o < l.outer; o++)
    for (let c = 0; c < l.axisLen; c++) {
      const start = (o * l.axisLen + c) * l.inner;
      fn(Math.floor(c / l.group), start, start + l.inner);
    }
}

function rowMinMax(data: Float32Array, l: Layout, where: string): { min: Float32Array; max: Float32Array } {
  const min = new Float32Array(l.rows).fill(Infinity);
  const max = new Float32Array(l.rows).fill(-Infinity);
  forEachRun(l, (r, s, e) => {
    let lo = min[r];
    let hi = max[r];
    for (let i = s; i < e; i++) {
      const v = data[i];
      if (v !== v) throw new RangeError(`${where}: observed a NaN at flat index ${i}`);
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    min[r] = lo;
    max[r] = hi;
  });
  return { min, max };
}

function gatherRows(data: Float32Array, l: Layout): Float32Array[] {
  const per = data.length / l.rows;
  const rows = Array.from({ length: l.rows }, () => new Float32Array(per));
  const fill = new Array<number>(l.rows).fill(0);
  forEachRun(l, (r, s, e) => {
    rows[r].set(data.subarray(s, e), fill[r]);
    fill[r] += e - s;
  });
  return rows;
}

function readData(x: tf.Tensor, where: string): Float32Array {
  if (x.size === 0) throw new RangeError(`${where}: cannot observe an empty tensor (shape [${x.shape}])`);
  const d = x.dataSync();
  return d instanceof Float32Array ? d : Float32Array.from(d as ArrayLike<number>);
}

// ---- shared state plumbing ----------------------------------------------------------------------------------------

function numArray(v: Json | undefined, n: number | null, field: string, where: string): number[] {
  if (!Array.isArray(v) || !v.every((e) => typeof e === 'number') || (n !== null && v.length !== n))
    throw new RangeError(`${where}: state field '${field}' must be an array of ${n ?? 'some'} numbers`);
  return v as number[];
}

function checkState(s: ObserverState, kind: string, where: string): void {
  if (s?.kind !== kind) throw new RangeError(`${where}: state is for observer '${s?.kind}', not '${kind}'`);
  if (s.version !== 1) throw new RangeError(`${where}: state version ${String(s.version)} is not supported (expected 1)`);
}

/** The pieces every range observer shares: running per-row min/max, a fold rule, qparams from the range. */
function rangeObserver(
  kind: string,
  spec: QuantSpec,
  fold: (cur: { min: Float32Array; max: Float32Array }, prev: { min: Float32Array; max: Float32Array }) => void,
  extra: Record<string, Json> = {},
): Observer {
  const where = `observer '${kind}'`;
  let min: Float32Array | null = null;
  let max: Float32Array | null = null;
  const obs: Observer = {
    kind,
    observe(x) {
      const l = layoutOf(x.shape, spec.granularity, where);
      const cur = rowMinMax(readData(x, where), l, where);
      if (min && max) {
        if (min.length !== l.rows) throw new RangeError(`${where}: observed ${l.rows} rows, earlier ${min.length} (shape [${x.shape}])`);
        fold(cur, { min, max });
      } else {
        min = cur.min;
        max = cur.max;
      }
    },
    range() {
      if (!min || !max) throw new Error(`${where}: range()/qparams() called before any observe()`);
      return { min: min.slice(), max: max.slice() };
    },
    qparams() {
      const r = obs.range();
      return qparamsFromRanges(r.min, r.max, spec);
    },
    reset() {
      min = max = null;
    },
    state() {
      return { kind, version: 1, ...extra, min: min ? Array.from(min) : null, max: max ? Array.from(max) : null };
    },
    load(s) {
      checkState(s, kind, where);
      if (s.min === null || s.max === null) {
        min = max = null;
        return;
      }
      const lo = numArray(s.min, null, 'min', where);
      min = Float32Array.from(lo);
      max = Float32Array.from(numArray(s.max, lo.length, 'max', where));
    },
  };
  return obs;
}

// ---- minmax / ema_minmax ------------------------------------------------------------------------------------------

/** Running min and max of everything observed (torch's MinMaxObserver / PerChannelMinMaxObserver). */
export const minMaxObserver: ObserverFactory = (_cfg, spec) =>
  rangeObserver('minmax', spec, (cur, prev) => {
    for (let i = 0; i < cur.min.length; i++) {
      prev.min[i] = Math.min(prev.min[i], cur.min[i]);
      prev.max[i] = Math.max(prev.max[i], cur.max[i]);
    }
  });

/**
 * Exponential moving average of each batch's min and max; momentum (default 0.9) is the weight of the old value.
 * The first batch is taken as is. Computed as torch's MovingAverage(PerChannel)MinMaxObserver does, in float32:
 * old + c*(cur - old) with c = 1 - momentum.
 */
export const emaMinMaxObserver: ObserverFactory = (cfg, spec) => {
  const momentum = cfg.momentum ?? 0.9;
  if (!(momentum >= 0 && momentum < 1)) throw new RangeError(`observer 'ema_minmax': momentum must be in [0, 1), got ${momentum}`);
  const c = Math.fround(1 - momentum);
  const f = Math.fround;
  const ema = (old: number, cur: number): number => f(old + f(c * f(cur - old)));
  return rangeObserver(
    'ema_minmax',
    spec,
    (cur, prev) => {
      for (let i = 0; i < cur.min.length; i++) {
        prev.min[i] = ema(prev.min[i], cur.min[i]);
        prev.max[i] = ema(prev.max[i], cur.max[i]);
      }
    },
    { momentum },
  );
};

// ---- histogram (percentile, mse) ----------------------------------------------------------------------------------

/** Fixed bin count; the range grows by doubling (merging bin pairs, which is exact), so bins stay aligned. */
export const HIST_BINS = 2048;

interface Hist {
  lo: number;
  width: number;
  counts: Float64Array;
  min: number;
  max: number;
}

function histAdd(h: Hist | null, vals: Float32Array): Hist {
  let vmin = Infinity;
  let vmax = -Infinity;
  for (const v of vals) {
    if (v !== v) throw new RangeError('histogram observer: observed a NaN');
    if (v < vmin) vmin = v;
    if (v > vmax) vmax = v;
  }
  if (!h) {
    // bins a little wider than the data's span, so the max lands inside; tiny for constant data
    const span = vmax - vmin;
    const width = span > 0 ? (span / HIST_BINS) * (1 + 2 ** -20) : Math.max(Math.abs(vmin) * 2 ** -20, 2 ** -100);
    const lo = span > 0 ? vmin : vmin - (width * HIST_BINS) / 2;
    h = { lo, width, counts: new Float64Array(HIST_BINS), min: vmin, max: vmax };
  }
  const B = HIST_BINS;
  while (vmin < h.lo || vmax >= h.lo + B * h.width) {
    const c = h.counts;
    const n = new Float64Array(B);
    if (vmin < h.lo) {
      // extend below: the old range becomes the upper half
      for (let j = 0; j < B / 2; j++) n[B / 2 + j] = c[2 * j] + c[2 * j + 1];
      h.lo -= B * h.width;
    } else {
      for (let j = 0; j < B / 2; j++) n[j] = c[2 * j] + c[2 * j + 1];
    }
    h.width *= 2;
    h.counts = n;
  }
  for (const v of vals) h.counts[Math.min(B - 1, Math.floor((v - h.lo) / h.width))]++;
  h.min = Math.min(h.min, vmin);
  h.max = Math.max(h.max, vmax);
  return h;
}

/** q-quantile (0..1), linear within the bin where the cumulative count crosses q*N; exact at q = 0 and 1. */
function histQuantile(h: Hist, q: number): number {
  if (q <= 0) return h.min;
  if (q >= 1) return h.max;
  let total = 0;
  for (const c of h.counts) total += c;
  const target = q * total;
  let cum = 0;
  for (let j = 0; j < h.counts.length; j++) {
    const c = h.counts[j];
    if (c > 0 && cum + c >= target) {
      const v = h.lo + (j + (target - cum) / c) * h.width;
      return Math.min(Math.max(v, h.min), h.max);
    }
    cum += c;
  }
  return h.max;
}

function histToJson(h: Hist): Json {
  return { lo: h.lo, width: h.width, min: h.min, max: h.max, counts: Array.from(h.counts) };
}

function histFromJson(v: Json, where: string): Hist {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new RangeError(`${where}: histogram state must be an object`);
  const num = (k: string): number => {
    const x = v[k];
    if (typeof x !== 'number') throw new RangeError(`${where}: histogram field '${k}' must be a number`);
    return x;
  };
  return {
    lo: num('lo'), width: num('width'), min: num('min'), max: num('max'),
    counts: Float64Array.from(numArray(v.counts, HIST_BINS, 'counts', where)),
  };
}

/** An observer that keeps a histogram per row and derives the range from it with `pick`. */
function histObserver(
  kind: string,
  spec: QuantSpec,
  pick: (h: Hist) => [number, number],
  extra: Record<string, Json> = {},
): Observer {
  const where = `observer '${kind}'`;
  let hists: Hist[] | null = null;
  let cached: { min: Float32Array; max: Float32Array } | null = null;
  const obs: Observer = {
    kind,
    observe(x) {
      const l = layoutOf(x.shape, spec.granularity, where);
      if (hists && hists.length !== l.rows)
        throw new RangeError(`${where}: observed ${l.rows} rows, earlier ${hists.length} (shape [${x.shape}])`);
      const rows = gatherRows(readData(x, where), l);
      const prev = hists;
      hists = rows.map((r, i) => histAdd(prev ? prev[i] : null, r));
      cached = null;
    },
    range() {
      if (!hists) throw new Error(`${where}: range()/qparams() called before any observe()`);
      if (!cached) {
        const min = new Float32Array(hists.length);
        const max = new Float32Array(hists.length);
        hists.forEach((h, i) => ([min[i], max[i]] = pick(h)));
        cached = { min, max };
      }
      return { min: cached.min.slice(), max: cached.max.slice() };
    },
    qparams() {
      const r = obs.range();
      return qparamsFromRanges(r.min, r.max, spec);
    },
    reset() {
      hists = null;
      cached = null;
    },
    state() {
      return { kind, version: 1, ...extra, hists: hists ? hists.map(histToJson) : null };
    },
    load(s) {
      checkState(s, kind, where);
      cached = null;
      if (s.hists === null) {
        hists = null;
        return;
      }
      if (!Array.isArray(s.hists)) throw new RangeError(`${where}: state field 'hists' must be an array or null`);
      hists = s.hists.map((h) => histFromJson(h, where));
    },
  };
  return obs;
}

/**
 * Percentile clipping: range = [quantile(1 - p/100), quantile(p/100)] per row (p = cfg.percentile, default 99.99), both
 * tails cut. Computed from a HIST_BINS-bin histogram per row accumulated over all batches, so the quantiles are
 * approximate, to within one bin width (row range / HIST_BINS); p = 100 gives the exact min and max.
 */
export const percentileObserver: ObserverFactory = (cfg, spec) => {
  const p = cfg.percentile ?? 99.99;
  if (!(p > 50 && p <= 100)) throw new RangeError(`observer 'percentile': percentile must be in (50, 100], got ${p}`);
  const q = p / 100;
  return histObserver('percentile', spec, (h) => [histQuantile(h, 1 - q), histQuantile(h, q)], { percentile: p });
};

/** The MSE observer's search: MSE_STEPS shrink factors alpha = k/MSE_STEPS, then MSE_STEPS finer ones around the best. */
export const MSE_STEPS = 100;

/**
 * MSE-optimal clipping: among the ranges alpha*[min(x,0), max(x,0)], alpha in (0, 1], pick the one whose grid (qparams
 * for the spec) gives the lowest squared quantization error on the data observed so far. A one-parameter search
 * (coarse, then refined around the best); the error is evaluated on the row's histogram (each value taken at its bin's
 * center), so it approximates the error on the raw data, closely when bins are much finer than grid steps.
 */
export const mseObserver: ObserverFactory = (_cfg, spec) =>
  histObserver('mse', spec, (h) => {
    const lo0 = Math.min(h.min, 0);
    const hi0 = Math.max(h.max, 0);
    let bestA = 1;
    let bestErr = histQuantError(h, lo0, hi0, spec);
    const tryA = (a: number): void => {
      if (!(a > 0 && a <= 1)) return;
      const err = histQuantError(h, lo0 * a, hi0 * a, spec);
      if (err < bestErr) [bestA, bestErr] = [a, err];
    };
    for (let k = MSE_STEPS - 1; k >= 1; k--) tryA(k / MSE_STEPS);
    const a0 = bestA;
    for (let j = -MSE_STEPS / 2; j <= MSE_STEPS / 2; j++) tryA(a0 + j / (MSE_STEPS * MSE_STEPS / 2));
    return bestA === 1 ? [h.min, h.max] : [lo0 * bestA, hi0 * bestA];
  });

/** Sum over bins of count * (fakequant(center) - center)^2 for the grid that qparams give [lo, hi]. */
function histQuantError(h: Hist, lo: number, hi: number, spec: QuantSpec): number {
  const { scale, zeroPoint } = qparamsFromRanges([lo], [hi], spec);
  const s = scale[0];
  const z = zeroPoint[0];
  const inv = 1 / s;
  const { qmin, qmax } = qrange(spec);
  let err = 0;
  for (let j = 0; j < h.counts.length; j++) {
    const c = h.counts[j];
    if (c === 0) continue;
    const x = h.lo + (j + 0.5) * h.width;
    const q = Math.min(Math.max(roundHalfEven(x * inv) + z, qmin), qmax);
    const d = (q - z) * s - x;
    err += c * d * d;
  }
  return err;
}

registerObserver('minmax', minMaxObserver);
registerObserver('ema_minmax', emaMinMaxObserver);
registerObserver('percentile', percentileObserver);
registerObserver('mse', mseObserver);
