// Plain, serializable quantization specs and recipes. No tfjs here.

export type Granularity =
  | { kind: 'per_tensor' }
  | { kind: 'per_channel'; axis: number }
  | { kind: 'per_group'; axis: number; size: number };

/** How one tensor is quantized: the integer grid, nothing about how its range is found. */
export interface QuantSpec {
  bits: number;
  signed: boolean;
  symmetric: boolean;
  /** signed only: use [-(2^(b-1)-1), 2^(b-1)-1] so that the grid is symmetric around 0 */
  narrowRange: boolean;
  granularity: Granularity;
}

export interface ObserverConfig {
  /** registry key: 'minmax' | 'ema_minmax' | 'percentile' | 'mse' (or one registered later) */
  kind: string;
  /** ema_minmax: weight of the old value */
  momentum?: number;
  /** percentile: the percentile kept, e.g. 99.99 */
  percentile?: number;
}

export interface QuantizerConfig {
  spec: QuantSpec;
  observer: ObserverConfig;
  /** gradient estimator, registry key: 'ste' | 'lsq' (or one registered later) */
  estimator: string;
}

export interface Recipe {
  version: 1;
  name: string;
  weights: QuantizerConfig;
  activations: QuantizerConfig;
  /** ops whose weight inputs and data inputs get fake-quant */
  quantizeOps?: string[];
}

export class SpecError extends Error {
  constructor(message: string, readonly where: string) {
    super(`${where}: ${message}`);
    this.name = 'SpecError';
  }
}

export function qrange(spec: Pick<QuantSpec, 'bits' | 'signed' | 'narrowRange'>): { qmin: number; qmax: number } {
  if (spec.signed) {
    const qmax = 2 ** (spec.bits - 1) - 1;
    return { qmin: spec.narrowRange ? -qmax : -qmax - 1, qmax };
  }
  return { qmin: 0, qmax: 2 ** spec.bits - 1 };
}

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

function checkKeys(o: Record<string, unknown>, allowed: string[], where: string): void {
  for (const k of Object.keys(o))
    if (!allowed.includes(k)) throw new SpecError(`unknown field '${k}' (allowed: ${allowed.join(', ')})`, where);
}

function bool(o: Record<string, unknown>, k: string, where: string, dflt?: boolean): boolean {
  const v = o[k] ?? dflt;
  if (typeof v !== 'boolean') throw new SpecError(`field '${k}' must be true or false, got ${JSON.stringify(v)}`, where);
  return v;
}

function intIn(v: unknown, lo: number, hi: number, field: string, where: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi)
    throw new SpecError(`field '${field}' must be an integer in [${lo}, ${hi}], got ${JSON.stringify(v)}`, where);
  return v;
}

export function validateGranularity(x: unknown, where: string): Granularity {
  if (typeof x === 'string') x = { kind: x };
  if (!isObj(x)) throw new SpecError(`granularity must be an object, got ${JSON.stringify(x)}`, where);
  switch (x.kind) {
    case 'per_tensor':
      checkKeys(x, ['kind'], where);
      return { kind: 'per_tensor' };
    case 'per_channel':
      checkKeys(x, ['kind', 'axis'], where);
      return { kind: 'per_channel', axis: intIn(x.axis ?? 0, -8, 8, 'granularity.axis', where) };
    case 'per_group':
      checkKeys(x, ['kind', 'axis', 'size'], where);
      return {
        kind: 'per_group',
        axis: intIn(x.axis ?? 1, -8, 8, 'granularity.axis', where),
        size: intIn(x.size, 1, 1 << 20, 'granularity.size', where),
      };
    default:
      throw new SpecError(`granularity.kind must be per_tensor, per_channel or per_group, got ${JSON.stringify(x.kind)}`, where);
  }
}

/** Validate a QuantSpec. Weights take 2..8 bits; activations 2..8 or 16. */
export function validateQuantSpec(x: unknown, where: string, role: 'weights' | 'activations' = 'weights'): QuantSpec {
  if (!isObj(x)) throw new SpecError(`quant spec must be an object, got ${JSON.stringify(x)}`, where);
  checkKeys(x, ['bits', 'signed', 'symmetric', 'narrowRange', 'granularity'], where);
  const bits = x.bits;
  const ok = typeof bits === 'number' && Number.isInteger(bits) && ((bits >= 2 && bits <= 8) || (role === 'activations' && bits === 16));
  if (!ok)
    throw new SpecError(
      `bits must be an integer in 2..8${role === 'activations' ? ' or 16' : ''} for ${role}, got ${JSON.stringify(bits)}`,
      where,
    );
  const signed = bool(x, 'signed', where, role === 'weights');
  const symmetric = bool(x, 'symmetric', where, role === 'weights');
  const narrowRange = bool(x, 'narrowRange', where, false);
  if (narrowRange && !signed) throw new SpecError('narrowRange applies to signed grids only', where);
  const granularity = validateGranularity(x.granularity ?? { kind: 'per_tensor' }, where);
  return { bits: bits as number, signed, symmetric, narrowRange, granularity };
}

export function validateObserver(x: unknown, where: string): ObserverConfig {
  if (typeof x === 'string') x = { kind: x };
  if (!isObj(x)) throw new SpecError(`observer must be an object or a name, got ${JSON.stringify(x)}`, where);
  checkKeys(x, ['kind', 'momentum', 'percentile'], where);
  if (typeof x.kind !== 'string') throw new SpecError(`observer.kind must be a string`, where);
  const out: ObserverConfig = { kind: x.kind };
  if (x.momentum !== undefined) {
    if (typeof x.momentum !== 'number' || !(x.momentum >= 0 && x.momentum < 1))
      throw new SpecError(`observer.momentum must be in [0, 1), got ${JSON.stringify(x.momentum)}`, where);
    out.momentum = x.momentum;
  }
  if (x.percentile !== undefined) {
    if (typeof x.percentile !== 'number' || !(x.percentile > 50 && x.percentile <= 100))
      throw new SpecError(`observer.percentile must be in (50, 100], got ${JSON.stringify(x.percentile)}`, where);
    out.percentile = x.percentile;
  }
  return out;
}

function validateQuantizer(x: unknown, where: string, role: 'weights' | 'activations'): QuantizerConfig {
  if (!isObj(x)) throw new SpecError(`${role} must be an object`, where);
  checkKeys(x, ['spec', 'observer', 'estimator'], where);
  const est = x.estimator ?? 'ste';
  if (typeof est !== 'string') throw new SpecError(`estimator must be a string`, `${where}.estimator`);
  return {
    spec: validateQuantSpec(x.spec, `${where}.spec`, role),
    observer: validateObserver(x.observer ?? (role === 'weights' ? 'minmax' : 'ema_minmax'), `${where}.observer`),
    estimator: est,
  };
}

export function validateRecipe(x: unknown, where = 'recipe'): Recipe {
  if (!isObj(x)) throw new SpecError('recipe must be an object', where);
  checkKeys(x, ['version', 'name', 'weights', 'activations', 'quantizeOps'], where);
  if (x.version !== 1) throw new SpecError(`version must be 1, got ${JSON.stringify(x.version)}`, where);
  if (typeof x.name !== 'string' || !x.name) throw new SpecError(`name must be a non-empty string`, where);
  const r: Recipe = {
    version: 1,
    name: x.name,
    weights: validateQuantizer(x.weights, `${where}.weights`, 'weights'),
    activations: validateQuantizer(x.activations, `${where}.activations`, 'activations'),
  };
  if (x.quantizeOps !== undefined) {
    if (!Array.isArray(x.quantizeOps) || !x.quantizeOps.every((s) => typeof s === 'string'))
      throw new SpecError('quantizeOps must be an array of op names', where);
    r.quantizeOps = [...x.quantizeOps] as string[];
  }
  return r;
}

/** Weights: signed, symmetric, narrow range, per output channel. Activations: unsigned, asymmetric, per tensor. */
export function makeRecipe(wBits: number, aBits: number, name = `w${wBits}a${aBits}`): Recipe {
  return validateRecipe({
    version: 1,
    name,
    weights: {
      spec: { bits: wBits, signed: true, symmetric: true, narrowRange: true, granularity: { kind: 'per_channel', axis: 0 } },
      observer: { kind: 'minmax' },
      estimator: 'ste',
    },
    activations: {
      spec: { bits: aBits, signed: false, symmetric: false, narrowRange: false, granularity: { kind: 'per_tensor' } },
      observer: { kind: 'ema_minmax', momentum: 0.9 },
      estimator: 'ste',
    },
  });
}

export const BUILTIN_RECIPES = ['w8a8', 'w4a8', 'w4a4', 'w3a3', 'w2a2', 'w8a16'] as const;

/** A built-in recipe by name ('w<bits>a<bits>'), or throws naming the known ones. */
export function recipeByName(name: string): Recipe {
  const m = /^w(\d+)a(\d+)$/.exec(name);
  if (!m) throw new SpecError(`unknown recipe '${name}' (known: ${BUILTIN_RECIPES.join(', ')}, or any w<2..8>a<2..8|16>)`, 'recipe');
  return makeRecipe(Number(m[1]), Number(m[2]), name);
}
