// The runner in-process: a method registered by the test runs through it like a built-in one; a failing cell is
// reported, not recorded, and a rerun runs only that cell; the float model is trained once and cached.
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { initBackend } from '../backend/index.js';
import { ptq } from '../ptq/calibrate.js';
import { expandCells, validateMatrix } from './matrix.js';
import { registerMethod } from './methods.js';
import { readResults } from './results.js';
import { floatCacheDir, runBench } from './runner.js';
import { packedBytes } from './size.js';

before(async () => {
  await initBackend('wasm');
});

let failNext = true;
registerMethod('test-flaky-ptq', {
  description: 'PTQ with one calibration batch that fails on its first call (a test method)',
  usesRecipe: true,
  trains: false,
  params: () => ({}),
  async run(ctx) {
    if (failNext) {
      failNext = false;
      throw new Error('injected failure');
    }
    return { graph: ptq(ctx.floatGraph, ctx.recipe!, ctx.train, { batches: 1, batchSize: 32, seed: ctx.seed }) };
  },
});

const matrix = validateMatrix(
  {
    version: 1,
    name: 'plug',
    tasks: [{ model: 'mlp', dataset: 'digits', trainLimit: 256, testLimit: 128, float: { epochs: 1, batchSize: 32, lr: 0.05 } }],
    methods: [
      { name: 'float', method: 'float' },
      { name: 'flaky', method: 'test-flaky-ptq' },
    ],
    recipes: ['w8a8', 'w4a4'],
    seeds: [3],
  },
  'plug.json',
);

test('a registered method runs through the runner; a failed cell is retried by the rerun, the rest kept', async () => {
  const results = join(mkdtempSync(join(tmpdir(), 'qatkit-runner-')), 'plug.results.jsonl');
  const logs: string[] = [];
  const s1 = await runBench(matrix, { results, log: (l) => logs.push(l) });
  assert.equal(s1.total, 3);
  assert.equal(s1.ran, 2);
  assert.deepEqual(s1.failed, ['digits/mlp flaky w8a8 seed 3']);
  assert.match(logs.join('\n'), /\[failed\] digits\/mlp flaky w8a8 seed 3: injected failure/);
  assert.match(logs.join('\n'), /float digits\/mlp seed 3: training \(1 epochs, batch 32, lr 0.05, 256 examples\)/);
  assert.equal(readResults(results).records.length, 2);

  const logs2: string[] = [];
  const s2 = await runBench(matrix, { results, log: (l) => logs2.push(l) });
  assert.deepEqual([s2.skipped, s2.ran, s2.failed.length], [2, 1, 0]);
  assert.match(logs2.join('\n'), /float digits\/mlp seed 3: cached/);

  const p = readResults(results);
  assert.deepEqual(p.records.map((r) => r.id).sort(), expandCells(matrix).map((c) => c.id).sort());
  const flt = p.records.find((r) => r.config.method.name === 'float')!;
  assert.equal(flt.floatCached, false);
  assert.ok(flt.methodSec > 0, 'the float cell reports the float training time');
  const w4 = p.records.find((r) => r.config.recipe?.name === 'w4a4')!;
  const w8 = p.records.find((r) => r.config.recipe?.name === 'w8a8')!;
  assert.equal(w4.testExamples, 128);
  assert.ok(w4.packedBytes < w8.packedBytes && w8.packedBytes < flt.packedBytes);
  assert.equal(readdirSync(floatCacheDir(results)).filter((f) => f.endsWith('.onnx')).length, 1);
  assert.ok(!existsSync(join(floatCacheDir(results), readdirSync(floatCacheDir(results))[0].replace(/\..*$/, '.ckpt'))), 'float checkpoint removed');
});

test('packedBytes: quantized weights at their bit width, the rest as stored', async () => {
  const { buildModel } = await import('../zoo/models.js');
  const { loadDataset } = await import('../data/datasets.js');
  const { makeRecipe } = await import('../spec/quantspec.js');
  const train = loadDataset('digits', { split: 'train', limit: 64 });
  const g = buildModel('mlp', { inputShape: [1, 8, 8], numClasses: 10, seed: 0 });
  // mlp: 64*256 + 256*128 + 128*10 weights, 256 + 128 + 10 biases
  const weights = 64 * 256 + 256 * 128 + 128 * 10;
  const biases = 256 + 128 + 10;
  assert.equal(packedBytes(g), 4 * (weights + biases));
  const q = ptq(g, makeRecipe(4, 8), train, { batches: 1, batchSize: 32 });
  // weights at 4 bits; per-channel weight scales (4 B) and zero points (1 B) per output channel; biases fp32;
  // activation quantizers: one scale (4 B) and zero point (1 B) each
  const channels = 256 + 128 + 10;
  const actQuantizers = q.nodes.filter((n) => n.op === 'FakeQuant' && n.attrs.role?.type === 'string' && n.attrs.role.value === 'activation').length;
  assert.ok(actQuantizers > 0);
  assert.equal(packedBytes(q), weights / 2 + 5 * channels + 4 * biases + 5 * actQuantizers);
});

test('canonicalQParams: what LSQ leaves (float zero points, a negative symmetric scale) exports and computes the same', async () => {
  const { buildModel } = await import('../zoo/models.js');
  const { loadDataset } = await import('../data/datasets.js');
  const { makeRecipe } = await import('../spec/quantspec.js');
  const { evaluateGraph } = await import('../pipeline/steps.js');
  const { cloneGraph } = await import('../graph/ir.js');
  const { exportQdqBytes } = await import('./methods.js');
  const { canonicalQParams } = await import('../transform/finalize.js');
  const train = loadDataset('digits', { split: 'train', limit: 128 });
  const test = loadDataset('digits', { split: 'test', limit: 128 });
  const q = ptq(buildModel('mlp', { inputShape: [1, 8, 8], numClasses: 10, seed: 1 }), makeRecipe(4, 8), train, { batches: 2, batchSize: 32 });
  const g = cloneGraph(q);
  const fq = g.nodes.find((n) => n.op === 'FakeQuant' && n.attrs.role?.type === 'string' && n.attrs.role.value === 'weight')!;
  const s = g.initializers.get(fq.inputs[1])!.data as Float32Array;
  const z = g.initializers.get(fq.inputs[2])!.data as Float32Array;
  s[0] = -s[0];
  z[1] = 0.3;
  z[2] = -0.2;
  assert.throws(() => exportQdqBytes(g), /not a positive finite number|not an integer/);
  const c = canonicalQParams(g);
  assert.ok(exportQdqBytes(c).length > 0);
  assert.ok((c.initializers.get(fq.inputs[1])!.data as Float32Array)[0] > 0);
  assert.deepEqual([...(c.initializers.get(fq.inputs[2])!.data as Float32Array).slice(0, 3)], [0, 0, 0]);
  const [a, b] = [evaluateGraph(g, test), evaluateGraph(c, test)];
  assert.equal(a.loss, b.loss);
  assert.deepEqual(a.predictions, b.predictions);
});
