// The qat commands. Each: parse flags, do the work through the library, write outputs atomically.
import { mkdirSync } from 'node:fs';
import type { Graph } from '../graph/ir.js';
import { writeOnnx } from '../onnx/model.js';
import { toQdq } from '../onnx/qdq.js';
import { formatModelSizes, modelSizes, stripFakeQuant, toQOperator } from '../onnx/qoperator.js';
import { convert } from '../int/convert.js';
import { readPacked, writePacked } from '../int/packed.js';
import { intEvaluate, ortEvaluate } from '../pipeline/ort.js';
import { evaluateGraph, qat, trainFloat, type Budget } from '../pipeline/steps.js';
import { ptq } from '../ptq/calibrate.js';
import { recipeByName, validateObserver, type Recipe } from '../spec/quantspec.js';
import { QatError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';
import { buildModel, modelNames } from '../zoo/models.js';
import { parseArgs, usage, type FlagSpec } from './args.js';
import { checkFits, DATA_FLAGS, loadData, loadModel, need, saveModel } from './common.js';

export interface Command {
  name: string;
  synopsis: string;
  summary: string;
  flags: Record<string, FlagSpec>;
  run(flags: Record<string, unknown>, positionals: string[]): Promise<void>;
}

const commands = new Map<string, Command>();
export const registerCommand = (c: Command) => commands.set(c.name, c);
export const getCommand = (name: string) => commands.get(name);
export const allCommands = () => [...commands.values()];

export async function runCommand(name: string, argv: string[]): Promise<void> {
  const c = commands.get(name);
  if (!c) throw new QatError(`unknown command '${name}' (known: ${[...commands.keys()].join(', ')})`, "run 'qat --help'");
  if (argv.includes('--help') || argv.includes('-h')) {
    console.log(`${c.summary}\n\n${usage(c.name, c.synopsis, c.flags)}`);
    return;
  }
  const { flags, positionals } = parseArgs(argv, c.flags, c.name);
  await c.run(flags, positionals);
}

const log = (s: string) => console.error(s);
const pct = (a: number) => `${(100 * a).toFixed(2)}%`;

const TRAIN_FLAGS: Record<string, FlagSpec> = {
  epochs: { type: 'number', help: 'training epochs' },
  batch: { type: 'number', help: 'batch size', default: 64 },
  lr: { type: 'number', help: 'base learning rate (cosine schedule)' },
  optimizer: { type: 'string', help: 'sgd (momentum 0.9, nesterov) or adam', default: 'sgd' },
  'weight-decay': { type: 'number', help: 'L2 weight decay', default: 5e-4 },
  seed: { type: 'number', help: 'seed for init and shuffling', default: 0 },
  checkpoint: { type: 'string', help: 'checkpoint file: a crashed run resumes from it' },
};

function budgetOf(f: Record<string, unknown>, epochs: number, lr: number): Budget {
  return {
    epochs: (f.epochs as number | undefined) ?? epochs,
    batchSize: f.batch as number,
    lr: (f.lr as number | undefined) ?? lr,
    optimizer: f.optimizer as string,
    weightDecay: f['weight-decay'] as number,
    seed: f.seed as number,
  };
}

/** The recipe from --recipe, with --estimator / --observer applied. */
function recipeOf(f: Record<string, unknown>): Recipe {
  const r = recipeByName(String(f.recipe));
  const est = f.estimator as string | undefined;
  if (est) {
    r.weights.estimator = est;
    r.activations.estimator = est;
  }
  const obs = f.observer as string | undefined;
  if (obs) r.activations.observer = validateObserver(obs, '--observer');
  return r;
}

registerCommand({
  name: 'train',
  synopsis: '--model NAME --data NAME --out MODEL.onnx [options]',
  summary: 'Train a float model from the zoo and save it as ONNX.',
  flags: { model: { type: 'string', help: `zoo model: ${modelNames().join(', ')}`, default: 'lenet5' }, ...DATA_FLAGS, ...TRAIN_FLAGS, out: { type: 'string', help: 'output .onnx file' } },
  async run(f) {
    const out = need(f.out as string, '--out', 'train');
    const { train, test } = loadData(f);
    const g = buildModel(String(f.model), { inputShape: train.shape, numClasses: train.numClasses, seed: f.seed as number });
    const { graph } = await trainFloat(g, train, budgetOf(f, 4, 0.05), { checkpoint: f.checkpoint as string | undefined, progress: true, log });
    const acc = evaluateGraph(graph, test).accuracy;
    const bytes = await saveModel(out, graph);
    console.log(`${f.model} on ${train.name}: test accuracy ${pct(acc)}; wrote ${out} (${bytes} bytes)`);
  },
});

const QUANT_FLAGS: Record<string, FlagSpec> = {
  recipe: { type: 'string', help: 'w8a8, w4a8, w4a4, w3a3, w2a2, or any w<bits>a<bits>', default: 'w8a8' },
  estimator: { type: 'string', help: 'gradient estimator: ste or lsq' },
  observer: { type: 'string', help: 'activation observer: minmax, ema_minmax, percentile, mse' },
  out: { type: 'string', help: 'output .onnx file (fake-quantized graph, ai.qatkit ops)' },
};

registerCommand({
  name: 'ptq',
  synopsis: 'MODEL.onnx --recipe w8a8 --data NAME --out Q.onnx',
  summary: 'Post-training quantization: calibrate observers on a few batches, no training.',
  flags: { ...QUANT_FLAGS, ...DATA_FLAGS, 'calib-batches': { type: 'number', help: 'calibration batches', default: 16 }, batch: { type: 'number', help: 'batch size', default: 64 }, seed: { type: 'number', help: 'seed', default: 0 } },
  async run(f, [model]) {
    const path = need(model, 'MODEL.onnx', 'ptq');
    const out = need(f.out as string, '--out', 'ptq');
    const recipe = recipeOf(f);
    const g = await loadModel(path);
    const { train, test } = loadData(f);
    checkFits(g, train, path);
    const q = ptq(g, recipe, train, { batches: f['calib-batches'] as number, batchSize: f.batch as number, seed: f.seed as number });
    const acc = evaluateGraph(q, test).accuracy;
    await saveModel(out, q);
    console.log(`PTQ ${recipe.name}: simulated test accuracy ${pct(acc)}; wrote ${out}`);
  },
});

registerCommand({
  name: 'qat',
  synopsis: 'MODEL.onnx --recipe w4a4 --data NAME --out Q.onnx [options]',
  summary: 'Quantization-aware training from a float model.',
  flags: {
    ...QUANT_FLAGS,
    ...DATA_FLAGS,
    ...TRAIN_FLAGS,
    'freeze-observers': { type: 'number', help: 'freeze observers after N steps (default: a quarter of the run)' },
    'freeze-bn': { type: 'number', help: 'freeze BatchNorm statistics after N steps (default: three quarters)' },
    distill: { type: 'boolean', help: 'distill from the float model (KL on logits, T=4, alpha=0.5)' },
  },
  async run(f, [model]) {
    const path = need(model, 'MODEL.onnx', 'qat');
    const out = need(f.out as string, '--out', 'qat');
    const recipe = recipeOf(f);
    const g = await loadModel(path);
    const { train, test } = loadData(f);
    checkFits(g, train, path);
    const { graph } = await qat(g, recipe, train, budgetOf(f, 1, 0.01), {
      checkpoint: f.checkpoint as string | undefined,
      freezeObserversAfter: f['freeze-observers'] as number | undefined,
      freezeBnAfter: f['freeze-bn'] as number | undefined,
      distill: f.distill ? { temperature: 4, alpha: 0.5 } : undefined,
      progress: true,
      log,
    });
    const acc = evaluateGraph(graph, test).accuracy;
    await saveModel(out, graph);
    console.log(`QAT ${recipe.name}: simulated test accuracy ${pct(acc)}; wrote ${out}`);
  },
});

registerCommand({
  name: 'eval',
  synopsis: 'MODEL --data NAME [--ort | --int]',
  summary: 'Test accuracy of a model: in our tfjs executor (float or fake-quantized ONNX), ONNX Runtime (--ort), or our integer engine (--int; .qatk files always).',
  flags: {
    ...DATA_FLAGS,
    ort: { type: 'boolean', help: 'run the ONNX file in ONNX Runtime (export it first)' },
    int: { type: 'boolean', help: 'run in our integer engine: a fake-quantized model is converted first; .qatk and QOperator files run as they are' },
  },
  async run(f, [model]) {
    const path = need(model, 'MODEL', 'eval');
    const { test } = loadData({ ...f, limit: 1 });
    const { readFile } = await import('node:fs/promises');
    if (path.endsWith('.qatk') || f.int) {
      const g = path.endsWith('.qatk') ? readPacked(new Uint8Array(await readFile(path)), path) : await loadModel(path);
      checkFits(g, test, path);
      const isPrepared = g.nodes.some((n) => n.op === 'FakeQuant');
      const r = intEvaluate(isPrepared ? convert(g) : g, test);
      console.log(`${path}: integer engine test accuracy ${pct(r.accuracy)} on ${r.n} examples`);
      return;
    }
    const g = await loadModel(path);
    checkFits(g, test, path);
    if (f.ort) {
      const r = await ortEvaluate(new Uint8Array(await readFile(path)), test);
      console.log(`${path}: ONNX Runtime test accuracy ${pct(r.accuracy)} on ${r.n} examples`);
    } else {
      const r = evaluateGraph(g, test);
      console.log(`${path}: test accuracy ${pct(r.accuracy)} on ${r.n} examples (loss ${r.loss.toFixed(4)})`);
    }
  },
});

export function exportQdq(g: Graph): Uint8Array {
  return writeOnnx(toQdq(g));
}

const EXPORTERS: Record<string, { what: string; write(g: Graph): Uint8Array }> = {
  qdq: { what: 'ONNX QDQ (QuantizeLinear/DequantizeLinear around float ops; ONNX Runtime fuses them into integer kernels)', write: exportQdq },
  qoperator: { what: 'ONNX QOperator (QLinearConv, QGemm, QLinearAdd, ...: integer ops, int8 containers)', write: (g) => writeOnnx(toQOperator(g)) },
  'qoperator-int4': { what: 'ONNX QOperator with 4-bit weights stored as ONNX INT4 (opset 21)', write: (g) => writeOnnx(toQOperator(g, { int4Weights: true })) },
  packed: { what: "qatkit's packed integer model (.qatk: int4 two per byte, int2 four per byte), run by our integer engine", write: (g) => writePacked(convert(g)) },
};

registerCommand({
  name: 'export',
  synopsis: 'Q.onnx --format qdq|qoperator|qoperator-int4|packed --out FILE',
  summary: 'Export a fake-quantized model for deployment: ONNX (QDQ or QOperator) or the packed integer format.',
  flags: {
    format: { type: 'string', help: Object.keys(EXPORTERS).join(', '), default: 'qdq' },
    out: { type: 'string', help: 'output file' },
    sizes: { type: 'boolean', help: 'also print the size of every format against the float model' },
  },
  async run(f, [model]) {
    const path = need(model, 'Q.onnx', 'export');
    const out = need(f.out as string, '--out', 'export');
    const ex = EXPORTERS[String(f.format)];
    if (!ex) throw new QatError(`qat export: unknown --format '${f.format}' (known: ${Object.keys(EXPORTERS).join(', ')})`);
    const g = await loadModel(path);
    const bytes = ex.write(g);
    await writeFileAtomic(out, bytes);
    console.log(`wrote ${out} (${bytes.length} bytes): ${ex.what}`);
    if (f.sizes) console.log(formatModelSizes(modelSizes(g, stripFakeQuant(g)), path));
  },
});

export function ensureDir(d: string): string {
  mkdirSync(d, { recursive: true });
  return d;
}
