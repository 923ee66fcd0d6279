// qat demo: train a float CNN, quantize it with PTQ and QAT per recipe, export each to ONNX QDQ, check each in ONNX
// Runtime, print one table (and write it as JSON with --out).
import { join } from 'node:path';
import { writeOnnx } from '../onnx/model.js';
import { intEvaluate, ortEvaluate } from '../pipeline/ort.js';
import { convert } from '../int/convert.js';
import { writePacked } from '../int/packed.js';
import { evaluateGraph, qat, trainFloat } from '../pipeline/steps.js';
import { ptq } from '../ptq/calibrate.js';
import { recipeByName, validateObserver } from '../spec/quantspec.js';
import { writeFileAtomic } from '../util/fs.js';
import { buildModel } from '../zoo/models.js';
import { DATA_FLAGS, loadData, saveModel } from './common.js';
import { ensureDir, exportQdq, registerCommand } from './commands.js';
import type { Graph } from '../graph/ir.js';
import type { Dataset } from '../data/datasets.js';

export interface DemoRow {
  dataset: string;
  model: string;
  recipe: string;
  method: 'float' | 'ptq' | 'qat';
  accuracy_sim: number;
  accuracy_ort: number;
  /** share of test examples where ONNX Runtime and the simulation predict the same class */
  agreement: number;
  /** bytes of the exported ONNX model (QDQ for quantized rows) */
  bytes: number;
  /** accuracy of the converted integer model in our integer engine (null for float) */
  accuracy_int: number | null;
  /** bytes of the packed integer model (.qatk; null for float) */
  bytes_packed: number | null;
}

const DEFAULTS: Record<string, { model: string; epochs: number; qatEpochs: number }> = {
  mnist: { model: 'lenet5', epochs: 4, qatEpochs: 2 },
  'fashion-mnist': { model: 'resnet8', epochs: 10, qatEpochs: 3 },
  digits: { model: 'mlp', epochs: 20, qatEpochs: 5 },
};

export function formatTable(rows: DemoRow[]): string {
  const head = ['dataset', 'model', 'recipe', 'method', 'acc (sim)', 'acc (ORT)', 'agree', 'acc (int)', 'bytes (ONNX)', 'bytes (packed)'];
  const p = (v: number | null) => (v === null ? '-' : (100 * v).toFixed(2) + '%');
  const body = rows.map((r) => [r.dataset, r.model, r.recipe, r.method, p(r.accuracy_sim), p(r.accuracy_ort), p(r.agreement), p(r.accuracy_int), String(r.bytes), r.bytes_packed === null ? '-' : String(r.bytes_packed)]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (c: string[]) => '| ' + c.map((s, i) => s.padEnd(w[i])).join(' | ') + ' |';
  return [line(head), '|' + w.map((x) => '-'.repeat(x + 2)).join('|') + '|', ...body.map(line)].join('\n');
}

type RowBase = Pick<DemoRow, 'dataset' | 'model' | 'recipe' | 'method'>;

/** Evaluate one model every way: simulation, ONNX Runtime on its ONNX export, and (quantized) our integer engine. */
async function rowFor(g: Graph, test: Dataset, base: RowBase, work: string): Promise<DemoRow> {
  const quantized = base.method !== 'float';
  const stem = join(work, quantized ? `${base.recipe}-${base.method}` : 'float');
  const onnx = quantized ? exportQdq(g) : writeOnnx(g);
  await writeFileAtomic(`${stem}${quantized ? '.qdq' : ''}.onnx`, onnx);
  const sim = evaluateGraph(g, test);
  const ort = await ortEvaluate(onnx, test);
  let same = 0;
  for (let i = 0; i < test.n; i++) if (sim.predictions[i] === ort.predictions[i]) same++;
  let accuracy_int: number | null = null;
  let bytes_packed: number | null = null;
  if (quantized) {
    const integer = convert(g);
    const packed = writePacked(integer);
    await writeFileAtomic(`${stem}.qatk`, packed);
    await writeFileAtomic(`${stem}.qop.onnx`, writeOnnx(integer));
    accuracy_int = intEvaluate(integer, test).accuracy;
    bytes_packed = packed.length;
  }
  return { ...base, accuracy_sim: sim.accuracy, accuracy_ort: ort.accuracy, agreement: same / test.n, bytes: onnx.length, accuracy_int, bytes_packed };
}

registerCommand({
  name: 'demo',
  synopsis: '[--data mnist|fashion-mnist] [--model NAME] [--recipes w8a8,w4a4] [--out table.json]',
  summary: 'Train a float CNN, run PTQ and QAT per recipe, export each to ONNX QDQ and check it in ONNX Runtime.',
  flags: {
    ...DATA_FLAGS,
    model: { type: 'string', help: 'zoo model (default: lenet5 for mnist, resnet8 for fashion-mnist)' },
    recipes: { type: 'string', help: 'comma-separated recipes', default: 'w8a8,w4a4' },
    epochs: { type: 'number', help: 'float training epochs (default per dataset)' },
    'qat-epochs': { type: 'number', help: 'QAT epochs (default per dataset)' },
    lr: { type: 'number', help: 'float learning rate', default: 0.05 },
    'qat-lr': { type: 'number', help: 'QAT learning rate', default: 0.01 },
    batch: { type: 'number', help: 'batch size', default: 64 },
    estimator: { type: 'string', help: 'QAT gradient estimator: ste or lsq', default: 'ste' },
    observer: { type: 'string', help: 'activation observer for PTQ and QAT: minmax, ema_minmax, percentile, mse (default: the recipe\'s)' },
    seed: { type: 'number', help: 'seed', default: 0 },
    workdir: { type: 'string', help: 'where models and checkpoints go (default runs/demo-DATA-MODEL)' },
    out: { type: 'string', help: 'also write the table as JSON here' },
  },
  async run(f) {
    const data = String(f.data);
    const d = DEFAULTS[data] ?? DEFAULTS.mnist;
    const model = (f.model as string | undefined) ?? d.model;
    const recipes = String(f.recipes).split(',').filter(Boolean).map((r) => {
      const recipe = recipeByName(r.trim());
      if (f.observer) recipe.activations.observer = validateObserver(f.observer, '--observer');
      return recipe;
    });
    const work = ensureDir((f.workdir as string | undefined) ?? join('runs', `demo-${data}-${model}`));
    const { train, test } = loadData(f);
    const seed = f.seed as number;
    const batchSize = f.batch as number;
    console.error(`demo: ${model} on ${data} (${train.n} train, ${test.n} test), recipes ${recipes.map((r) => r.name).join(', ')}; files in ${work}`);

    // float model: trained once; a rerun with the same settings resumes from its checkpoint; rowFor writes float.onnx
    const budget = { epochs: (f.epochs as number | undefined) ?? d.epochs, batchSize, lr: f.lr as number, seed };
    const g0 = buildModel(model, { inputShape: train.shape, numClasses: train.numClasses, seed });
    const { graph: float } = await trainFloat(g0, train, budget, { checkpoint: join(work, 'float.ckpt'), progress: true, log: console.error });
    const base = { dataset: data, model };
    const rows: DemoRow[] = [await rowFor(float, test, { ...base, recipe: 'fp32', method: 'float' }, work)];
    console.error(`float: ${(100 * rows[0].accuracy_sim).toFixed(2)}%`);

    for (const recipe of recipes) {
      const p = ptq(float, recipe, train, { batches: 16, batchSize, seed });
      rows.push(await rowFor(p, test, { ...base, recipe: recipe.name, method: 'ptq' }, work));
      console.error(`ptq ${recipe.name}: ${(100 * rows[rows.length - 1].accuracy_sim).toFixed(2)}%`);

      const r = structuredClone(recipe);
      r.weights.estimator = r.activations.estimator = String(f.estimator);
      const qatBudget = { epochs: (f['qat-epochs'] as number | undefined) ?? d.qatEpochs, batchSize, lr: f['qat-lr'] as number, seed };
      const { graph: q } = await qat(float, r, train, qatBudget, { checkpoint: join(work, `${recipe.name}-qat.ckpt`), progress: true, log: console.error });
      await saveModel(join(work, `${recipe.name}-qat.qat.onnx`), q);
      rows.push(await rowFor(q, test, { ...base, recipe: recipe.name, method: 'qat' }, work));
      console.error(`qat ${recipe.name}: ${(100 * rows[rows.length - 1].accuracy_sim).toFixed(2)}%`);
    }

    console.log(formatTable(rows));
    if (f.out) {
      await writeFileAtomic(String(f.out), JSON.stringify(rows, null, 2) + '\n');
      console.error(`wrote ${f.out}`);
    }
  },
});
