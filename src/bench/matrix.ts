// Experiment matrices: plain JSON files (bench/matrices/NAME.json) validated here with errors that name the file and
// the field, expanded into cells. A cell = (task, method, recipe, seed); its id hashes its whole config, budgets
// included, so a changed setting gives a different cell and never mixes with results of the old one.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { datasetNames } from '../data/datasets.js';
import type { Budget } from '../pipeline/steps.js';
import { recipeByName, validateRecipe, type Recipe } from '../spec/quantspec.js';
import { QatError } from '../util/errors.js';
import { hashConfig } from '../util/hash.js';
import { modelNames } from '../zoo/models.js';
import { MatrixError } from './errors.js';
import { getMethod, methodNames } from './methods.js';
import { packageRoot } from './provenance.js';

/** A (model, dataset) pair with the budget of its float model, which every cell of the task starts from. */
export interface Task {
  model: string;
  dataset: string;
  /** use only the first N training / test examples (null: all) */
  trainLimit: number | null;
  testLimit: number | null;
  float: Budget;
}

/** One named method instance of a matrix: a registered method with its params and (if it trains) its budget. */
export interface MethodSpec {
  name: string;
  method: string;
  params: Record<string, unknown>;
  budget: Budget | null;
}

export interface Matrix {
  version: 1;
  name: string;
  description: string;
  tasks: Task[];
  methods: MethodSpec[];
  recipes: Recipe[];
  seeds: number[];
}

/** Everything that determines a cell's result. Its hash is the cell id. */
export interface CellConfig {
  task: { model: string; dataset: string; trainLimit: number | null; testLimit: number | null };
  /** the float model's budget: every cell starts from (or is) that model */
  float: Budget;
  method: MethodSpec;
  /** null for methods that take no recipe (the float baseline) */
  recipe: Recipe | null;
  seed: number;
}

export interface Cell {
  id: string;
  /** for people: 'digits/mlp qat-ste w4a4 seed 0' */
  label: string;
  config: CellConfig;
  /** the float model this cell starts from, by config hash (the float cache key) */
  floatKey: string;
}

/** Bumped when the meaning of a cell config changes, so old results files are not resumed by mistake. */
export const CELL_FORMAT = 1;

const isObj = (x: unknown): x is Record<string, unknown> => typeof x === 'object' && x !== null && !Array.isArray(x);

const shown = (v: unknown) => (v === undefined ? 'nothing (the field is required)' : JSON.stringify(v));

const fail = (file: string, field: string, msg: string): never => {
  throw new MatrixError(`${file}: ${field}: ${msg}`);
};

function checkKeys(o: Record<string, unknown>, allowed: string[], file: string, field: string): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) fail(file, field, `unknown field '${k}' (allowed: ${allowed.join(', ')})`);
}

export function posInt(v: unknown, file: string, field: string, min = 1): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min) fail(file, field, `must be an integer >= ${min}, got ${shown(v)}`);
  return v as number;
}

export function num(v: unknown, file: string, field: string, ok: (x: number) => boolean, what: string): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || !ok(v)) fail(file, field, `must be ${what}, got ${shown(v)}`);
  return v as number;
}

const OPTIMIZERS = ['sgd', 'adam', 'adamw'];

/** A training budget: epochs, batch size, learning rate, and optional optimizer settings. Seeds come from the matrix. */
export function validateBudget(x: unknown, file: string, field: string): Budget {
  if (!isObj(x)) return fail(file, field, `must be an object like {"epochs": 5, "batchSize": 64, "lr": 0.01}, got ${shown(x)}`);
  checkKeys(x, ['epochs', 'batchSize', 'lr', 'optimizer', 'momentum', 'weightDecay', 'warmupSteps'], file, field);
  const b: Budget = {
    epochs: posInt(x.epochs, file, `${field}.epochs`),
    batchSize: posInt(x.batchSize, file, `${field}.batchSize`),
    lr: num(x.lr, file, `${field}.lr`, (v) => v > 0, 'a positive number'),
  };
  if (x.optimizer !== undefined) {
    if (typeof x.optimizer !== 'string' || !OPTIMIZERS.includes(x.optimizer)) fail(file, `${field}.optimizer`, `must be one of ${OPTIMIZERS.join(', ')}, got ${JSON.stringify(x.optimizer)}`);
    b.optimizer = x.optimizer as string;
  }
  if (x.momentum !== undefined) b.momentum = num(x.momentum, file, `${field}.momentum`, (v) => v >= 0 && v < 1, 'in [0, 1)');
  if (x.weightDecay !== undefined) b.weightDecay = num(x.weightDecay, file, `${field}.weightDecay`, (v) => v >= 0, '>= 0');
  if (x.warmupSteps !== undefined) b.warmupSteps = posInt(x.warmupSteps, file, `${field}.warmupSteps`, 0);
  return b;
}

function optLimit(v: unknown, file: string, field: string): number | null {
  return v === undefined || v === null ? null : posInt(v, file, field);
}

function validateTask(x: unknown, file: string, field: string): Task {
  if (!isObj(x)) return fail(file, field, 'must be an object {model, dataset, float: {epochs, batchSize, lr}}');
  checkKeys(x, ['model', 'dataset', 'trainLimit', 'testLimit', 'float'], file, field);
  if (typeof x.model !== 'string' || !modelNames().includes(x.model)) fail(file, `${field}.model`, `unknown model ${JSON.stringify(x.model)} (known: ${modelNames().join(', ')})`);
  if (typeof x.dataset !== 'string' || !datasetNames().includes(x.dataset))
    fail(file, `${field}.dataset`, `unknown dataset ${JSON.stringify(x.dataset)} (known: ${datasetNames().join(', ')})`);
  return {
    model: x.model as string,
    dataset: x.dataset as string,
    trainLimit: optLimit(x.trainLimit, file, `${field}.trainLimit`),
    testLimit: optLimit(x.testLimit, file, `${field}.testLimit`),
    float: validateBudget(x.float, file, `${field}.float`),
  };
}

function validateMethod(x: unknown, file: string, field: string): MethodSpec {
  if (!isObj(x)) return fail(file, field, 'must be an object {name, method, params?, budget?}');
  checkKeys(x, ['name', 'method', 'params', 'budget'], file, field);
  if (typeof x.name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(x.name)) fail(file, `${field}.name`, `must be a name of letters, digits, '_', '.', '-', got ${JSON.stringify(x.name)}`);
  if (typeof x.method !== 'string') return fail(file, `${field}.method`, `must be a registered method (${methodNames().join(', ')})`);
  const def = getMethod(x.method);
  if (!def) return fail(file, `${field}.method`, `unknown method '${x.method}' (registered: ${methodNames().join(', ')})`);
  if (x.params !== undefined && !isObj(x.params)) fail(file, `${field}.params`, 'must be an object');
  const params = def.params((x.params as Record<string, unknown>) ?? {}, { file, field: `${field}.params` });
  let budget: Budget | null = null;
  if (def.trains) budget = validateBudget(x.budget, file, `${field}.budget`);
  else if (x.budget !== undefined) fail(file, `${field}.budget`, `method '${x.method}' does not train; remove the budget`);
  return { name: x.name as string, method: x.method, params, budget };
}

function validateRecipeEntry(x: unknown, file: string, field: string): Recipe {
  try {
    return typeof x === 'string' ? recipeByName(x) : validateRecipe(x, field);
  } catch (e) {
    return fail(file, field, (e as Error).message);
  }
}

/** Validate a parsed matrix file; `file` names it in errors. Fills defaults so equal meaning gives equal cells. */
export function validateMatrix(x: unknown, file: string): Matrix {
  if (!isObj(x)) return fail(file, '(top level)', 'must be a JSON object');
  checkKeys(x, ['version', 'name', 'description', 'tasks', 'methods', 'recipes', 'seeds'], file, '(top level)');
  if (x.version !== 1) fail(file, 'version', `must be 1, got ${JSON.stringify(x.version)}`);
  if (typeof x.name !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(x.name)) fail(file, 'name', `must be a name of letters, digits, '_', '.', '-', got ${JSON.stringify(x.name)}`);
  if (x.description !== undefined && typeof x.description !== 'string') fail(file, 'description', 'must be a string');
  const list = (k: string) => {
    const v = x[k];
    if (!Array.isArray(v) || v.length === 0) fail(file, k, `must be a non-empty array, got ${JSON.stringify(v)}`);
    return v as unknown[];
  };
  const tasks = list('tasks').map((t, i) => validateTask(t, file, `tasks[${i}]`));
  const methods = list('methods').map((m, i) => validateMethod(m, file, `methods[${i}]`));
  const recipes = list('recipes').map((r, i) => validateRecipeEntry(r, file, `recipes[${i}]`));
  const seeds = list('seeds').map((s, i) => posInt(s, file, `seeds[${i}]`, 0));
  const dup = (names: string[], field: string) => {
    const seen = new Set<string>();
    for (const n of names) {
      if (seen.has(n)) fail(file, field, `'${n}' appears twice`);
      seen.add(n);
    }
  };
  dup(tasks.map((t) => `${t.dataset}/${t.model}`), 'tasks');
  dup(methods.map((m) => m.name), 'methods[].name');
  dup(recipes.map((r) => r.name), 'recipes');
  dup(seeds.map(String), 'seeds');
  return { version: 1, name: x.name as string, description: (x.description as string | undefined) ?? '', tasks, methods, recipes, seeds };
}

/** The float model a task trains for one seed; its hash keys the float cache. */
export function floatConfig(t: Task, seed: number) {
  return { cellFormat: CELL_FORMAT, model: t.model, dataset: t.dataset, trainLimit: t.trainLimit, float: t.float, seed };
}

/**
 * The cells in run order: per task and seed, every method and recipe (so one float model serves a run of cells).
 * Methods that take no recipe give one cell per task and seed.
 */
export function expandCells(m: Matrix): Cell[] {
  const cells: Cell[] = [];
  for (const t of m.tasks)
    for (const seed of m.seeds) {
      const floatKey = hashConfig(floatConfig(t, seed));
      for (const method of m.methods) {
        const recipes: (Recipe | null)[] = getMethod(method.method)!.usesRecipe ? m.recipes : [null];
        for (const recipe of recipes) {
          const config: CellConfig = {
            task: { model: t.model, dataset: t.dataset, trainLimit: t.trainLimit, testLimit: t.testLimit },
            float: t.float,
            method,
            recipe,
            seed,
          };
          const label = `${t.dataset}/${t.model} ${method.name} ${recipe?.name ?? 'fp32'} seed ${seed}`;
          cells.push({ id: hashConfig({ cellFormat: CELL_FORMAT, ...config }), label, config, floatKey });
        }
      }
    }
  return cells;
}

/** The matrix hash: its set of cell ids, so reordering the file or editing its description changes nothing. */
export function matrixHash(cells: Cell[]): string {
  return hashConfig(cells.map((c) => c.id).sort());
}

export const matricesDir = () => join(packageRoot(), 'bench', 'matrices');

/** Shipped matrices (bench/matrices/*.json), by name. */
export function shippedMatrices(): string[] {
  try {
    return readdirSync(matricesDir()).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
  } catch {
    return [];
  }
}

/** A shipped matrix by name, or a path to a matrix file (anything with a '/' or ending in .json). */
export function resolveMatrixPath(nameOrPath: string): string {
  if (nameOrPath.includes('/') || nameOrPath.endsWith('.json') || isAbsolute(nameOrPath)) return resolve(nameOrPath);
  const p = join(matricesDir(), `${nameOrPath}.json`);
  if (!existsSync(p)) throw new QatError(`no shipped matrix '${nameOrPath}' (shipped: ${shippedMatrices().join(', ') || 'none'})`, 'pass a matrix name or a path to a matrix .json file');
  return p;
}

export function loadMatrix(nameOrPath: string): { matrix: Matrix; file: string } {
  const file = resolveMatrixPath(nameOrPath);
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new QatError(`${file}: cannot read the matrix file: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new MatrixError(`${file}: not valid JSON: ${(e as Error).message}`);
  }
  return { matrix: validateMatrix(raw, file), file };
}
