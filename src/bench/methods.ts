// The benchmark's methods, by name. A method turns the shared float model (and a recipe) into the graph a cell
// measures. A new method plugs in with registerMethod; the runner and the matrix format do not change.
import type { Dataset } from '../data/datasets.js';
import type { Graph } from '../graph/ir.js';
import { writeOnnx } from '../onnx/model.js';
import { toQdq } from '../onnx/qdq.js';
import { qat, type Budget } from '../pipeline/steps.js';
import { ptq } from '../ptq/calibrate.js';
import { estimatorNames } from '../quant/fakequant.js';
import { observerKinds } from '../quant/observers.js';
import { validateObserver, type ObserverConfig, type Recipe } from '../spec/quantspec.js';
import { MatrixError } from './errors.js';

export interface MethodContext {
  /** the trained float model of this task and seed (shared: do not mutate it) */
  floatGraph: Graph;
  /** null for methods with usesRecipe: false */
  recipe: Recipe | null;
  /** the params as the method's own validator returned them */
  params: Record<string, unknown>;
  /** the matrix's budget for this method (null for methods that do not train) */
  budget: Budget | null;
  train: Dataset;
  seed: number;
  /** a checkpoint path for this cell: a killed cell resumes its training from it */
  checkpoint: string;
  progress: boolean;
  log: (line: string) => void;
}

export interface MethodResult {
  /** the graph the simulation measures (float, or fake-quantized with FakeQuant nodes) */
  graph: Graph;
}

export interface MethodDef {
  description: string;
  /** false: one cell per task and seed, without a recipe (the float baseline) */
  usesRecipe: boolean;
  /** true: the matrix must state this method's training budget */
  trains: boolean;
  /** validate the method's params (plain data from the matrix file) and fill defaults; `at` names the place in errors */
  params(raw: Record<string, unknown>, at: { file: string; field: string }): Record<string, unknown>;
  run(ctx: MethodContext): Promise<MethodResult>;
  /** the deployable ONNX model ONNX Runtime measures; default: QDQ export of the graph */
  export?(g: Graph): Uint8Array;
}

const methods = new Map<string, MethodDef>();

export function registerMethod(name: string, def: MethodDef): void {
  methods.set(name, def);
}
export const getMethod = (name: string): MethodDef | undefined => methods.get(name);
export const methodNames = (): string[] => [...methods.keys()];

export const exportQdqBytes = (g: Graph): Uint8Array => writeOnnx(toQdq(g));

// ---- param helpers: each error names the file and the field ----

type At = { file: string; field: string };
const bad = (at: At, key: string, msg: string): never => {
  throw new MatrixError(`${at.file}: ${at.field}.${key}: ${msg}`);
};

function onlyKeys(raw: Record<string, unknown>, allowed: string[], at: At): void {
  for (const k of Object.keys(raw)) if (!allowed.includes(k)) bad(at, k, `unknown param (allowed: ${allowed.join(', ') || 'none'})`);
}

function intParam(raw: Record<string, unknown>, key: string, dflt: number, at: At): number {
  const v = raw[key] ?? dflt;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1) bad(at, key, `must be an integer >= 1, got ${JSON.stringify(v)}`);
  return v as number;
}

function observerParam(raw: Record<string, unknown>, key: string, at: At): ObserverConfig | null {
  if (raw[key] === undefined || raw[key] === null) return null;
  let o: ObserverConfig;
  try {
    o = validateObserver(raw[key], `${at.file}: ${at.field}.${key}`);
  } catch (e) {
    throw new MatrixError((e as Error).message);
  }
  if (!observerKinds().includes(o.kind)) bad(at, key, `unknown observer '${o.kind}' (known: ${observerKinds().join(', ')})`);
  return o;
}

/** A copy of the recipe with the method's observer / estimator overrides. */
function withOverrides(r: Recipe, o: { observer?: ObserverConfig | null; weightObserver?: ObserverConfig | null; estimator?: string }): Recipe {
  const c = structuredClone(r);
  if (o.observer) c.activations.observer = { ...o.observer };
  if (o.weightObserver) c.weights.observer = { ...o.weightObserver };
  if (o.estimator) c.weights.estimator = c.activations.estimator = o.estimator;
  return c;
}

const needRecipe = (ctx: MethodContext): Recipe => {
  if (!ctx.recipe) throw new Error('method needs a recipe');
  return ctx.recipe;
};

// ---- built-in methods ----

registerMethod('float', {
  description: 'the float model itself (fp32), the baseline every other method starts from',
  usesRecipe: false,
  trains: false,
  params(raw, at) {
    onlyKeys(raw, [], at);
    return {};
  },
  async run(ctx) {
    return { graph: ctx.floatGraph };
  },
  export: (g) => writeOnnx(g),
});

registerMethod('ptq', {
  description: 'post-training quantization: calibrate observers on a few training batches, no training',
  usesRecipe: true,
  trains: false,
  params(raw, at) {
    onlyKeys(raw, ['observer', 'weightObserver', 'calibrationBatches', 'batchSize'], at);
    return {
      observer: observerParam(raw, 'observer', at),
      weightObserver: observerParam(raw, 'weightObserver', at),
      calibrationBatches: intParam(raw, 'calibrationBatches', 16, at),
      batchSize: intParam(raw, 'batchSize', 64, at),
    };
  },
  async run(ctx) {
    const p = ctx.params as { observer: ObserverConfig | null; weightObserver: ObserverConfig | null; calibrationBatches: number; batchSize: number };
    const recipe = withOverrides(needRecipe(ctx), p);
    return { graph: ptq(ctx.floatGraph, recipe, ctx.train, { batches: p.calibrationBatches, batchSize: p.batchSize, seed: ctx.seed }) };
  },
});

interface QatParams {
  estimator: string;
  observer: ObserverConfig | null;
  distill: { temperature: number; alpha: number } | null;
  calibrationBatches: number;
}

registerMethod('qat', {
  description: 'quantization-aware training from the float model (estimator ste or lsq; optional distillation from the float model)',
  usesRecipe: true,
  trains: true,
  params(raw, at) {
    onlyKeys(raw, ['estimator', 'observer', 'distill', 'calibrationBatches'], at);
    const est = raw.estimator ?? 'ste';
    if (typeof est !== 'string' || !estimatorNames().includes(est)) bad(at, 'estimator', `unknown estimator ${JSON.stringify(est)} (known: ${estimatorNames().join(', ')})`);
    let distill: QatParams['distill'] = null;
    const d = raw.distill;
    if (d !== undefined && d !== null && d !== false) {
      const o = d === true ? {} : d;
      if (typeof o !== 'object' || Array.isArray(o)) return bad(at, 'distill', 'must be true or {temperature, alpha}');
      const r = o as Record<string, unknown>;
      onlyKeys(r, ['temperature', 'alpha'], { ...at, field: `${at.field}.distill` });
      const temperature = r.temperature ?? 4;
      const alpha = r.alpha ?? 0.5;
      if (typeof temperature !== 'number' || !(temperature > 0)) bad(at, 'distill.temperature', `must be a positive number, got ${JSON.stringify(temperature)}`);
      if (typeof alpha !== 'number' || !(alpha >= 0 && alpha <= 1)) bad(at, 'distill.alpha', `must be in [0, 1], got ${JSON.stringify(alpha)}`);
      distill = { temperature: temperature as number, alpha: alpha as number };
    }
    const out: QatParams = { estimator: est as string, observer: observerParam(raw, 'observer', at), distill, calibrationBatches: intParam(raw, 'calibrationBatches', 8, at) };
    return out as unknown as Record<string, unknown>;
  },
  async run(ctx) {
    const p = ctx.params as unknown as QatParams;
    const recipe = withOverrides(needRecipe(ctx), p);
    const budget = { ...ctx.budget!, seed: ctx.seed };
    const { graph } = await qat(ctx.floatGraph, recipe, ctx.train, budget, {
      checkpoint: ctx.checkpoint,
      distill: p.distill ?? undefined,
      calibrationBatches: p.calibrationBatches,
      progress: ctx.progress,
      log: ctx.log,
    });
    return { graph };
  },
});


