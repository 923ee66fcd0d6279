// Reports from hand-made records whose means, spreads and Pareto front are known: the Markdown numbers, the chart
// data, and the HTML as headless Chromium renders it (series and points drawn, no network, no errors).
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { expandCells, validateMatrix } from './matrix.js';
import { aggregate, chartSpecs, htmlReport, markdownReport, paretoFront, stat } from './report.js';
import { parseResults, type CellRecord, type ParsedResults } from './results.js';
import { resultsHeader } from './runner.js';
import { artifactsDir, renderReport } from './test_browser.js';

const matrix = validateMatrix(
  {
    version: 1,
    name: 'synthetic',
    tasks: [{ model: 'mlp', dataset: 'digits', float: { epochs: 1, batchSize: 32, lr: 0.1 } }],
    methods: [
      { name: 'float', method: 'float' },
      { name: 'ptq-minmax', method: 'ptq', params: { observer: 'minmax' } },
      { name: 'qat-ste', method: 'qat', budget: { epochs: 1, batchSize: 32, lr: 0.01 } },
    ],
    recipes: ['w8a8', 'w4a4', 'w2a2'],
    seeds: [0, 1, 2],
  },
  'synthetic.json',
);

// accuracy = base + (seed - 1) / 100: mean = base, sample std = 1 point
const BASE: Record<string, number> = {
  'float fp32': 0.95,
  'ptq-minmax w8a8': 0.94,
  'ptq-minmax w4a4': 0.9,
  'ptq-minmax w2a2': 0.5,
  'qat-ste w8a8': 0.945,
  'qat-ste w4a4': 0.93,
  'qat-ste w2a2': 0.8,
};
const BYTES: Record<string, number> = { fp32: 1000, w8a8: 300, w4a4: 170, w2a2: 105 };

function synthetic(): ParsedResults {
  const cells = expandCells(matrix);
  const records: CellRecord[] = cells
    // one cell missing: qat-ste w2a2 seed 2, so that group has n = 2
    .filter((c) => !(c.config.method.name === 'qat-ste' && c.config.recipe?.name === 'w2a2' && c.config.seed === 2))
    .map((c) => {
      const recipe = c.config.recipe?.name ?? 'fp32';
      const acc = BASE[`${c.config.method.name} ${recipe}`] + (c.config.seed - 1) / 100;
      return {
        type: 'cell',
        id: c.id,
        label: c.label,
        config: c.config,
        seed: c.config.seed,
        accuracySim: acc,
        accuracyOrt: acc,
        agreement: 1,
        testExamples: 359,
        onnxBytes: 2000,
        packedBytes: BYTES[recipe],
        wallSec: 1,
        methodSec: 0.5,
        backend: 'cpu',
        version: '0.0.0',
        commit: null,
        gitDirty: null,
        finishedAt: '2026-01-01T00:00:00.000Z',
      };
    });
  const text = [resultsHeader(matrix, cells), ...records].map((r) => JSON.stringify(r)).join('\n') + '\n';
  return parseResults(new TextEncoder().encode(text), 'synthetic.results.jsonl');
}

test('stat: mean and sample standard deviation', () => {
  const s = stat([1, 2, 3, 4]);
  assert.equal(s.mean, 2.5);
  assert.ok(Math.abs(s.std - Math.sqrt(5 / 3)) < 1e-12);
  assert.deepEqual([s.min, s.max], [1, 4]);
  assert.equal(stat([7]).std, 0);
});

test('paretoFront keeps the points nothing beats on both size and accuracy', () => {
  const pts = [
    { x: 100, y: 0.5 },
    { x: 100, y: 0.8 },
    { x: 200, y: 0.7 },
    { x: 300, y: 0.9 },
    { x: 400, y: 0.9 },
    { x: 500, y: 0.95 },
  ];
  assert.deepEqual(paretoFront(pts), [pts[1], pts[3], pts[5]]);
});

test('aggregate and Markdown: mean ± spread over seeds, partial groups counted', () => {
  const p = synthetic();
  const groups = aggregate(p.records, matrix);
  assert.equal(groups.length, 7);
  const g = groups.find((x) => x.method === 'ptq-minmax' && x.recipe === 'w4a4')!;
  assert.ok(Math.abs(g.accuracyOrt.mean - 0.9) < 1e-12);
  assert.ok(Math.abs(g.accuracyOrt.std - 0.01) < 1e-12);
  assert.deepEqual(g.seeds, [0, 1, 2]);
  const partial = groups.find((x) => x.method === 'qat-ste' && x.recipe === 'w2a2')!;
  assert.deepEqual(partial.seeds, [0, 1]);
  const md = markdownReport(p, 'synthetic.results.jsonl');
  assert.match(md, /20 of 21 cells finished/);
  assert.match(md, /\*\*Incomplete:\*\* 1 cells have not run yet/);
  assert.match(md, /Missing: digits\/mlp qat-ste w2a2 seed 2\./);
  assert.match(md, /\| ptq-minmax \| w4a4 \| 90\.00 ± 1\.00 \| 90\.00 ± 1\.00 \|/);
  // (0.79 + 0.80) / 2 = 79.50, sample std 0.707
  assert.match(md, /\| qat-ste \| w2a2 \| 79\.50 ± 0\.71 \|/);
  assert.match(md, /\| float \| 95\.00 ± 1\.00 \|  \|  \|  \|/);
  assert.match(md, /\| qat-ste \| qat \| .* \| 1 epochs, batch 32, lr 0\.01 \|/);
});

test('chart data: one series per method, one point per recipe, the Pareto front', () => {
  const p = synthetic();
  const [bits, pareto] = chartSpecs(aggregate(p.records, matrix), matrix);
  assert.equal(bits.id, 'bits-digits-mlp');
  assert.deepEqual(bits.series.map((s) => [s.label, s.points.length]), [['float (fp32)', 2], ['ptq-minmax', 3], ['qat-ste', 3]]);
  assert.deepEqual(bits.series[1].points.map((q) => q.x), [2, 4, 8]);
  assert.deepEqual(bits.series[0].points.map((q) => q.x), [2, 8]);
  assert.deepEqual(pareto.series.map((s) => [s.label, s.points.length]), [['float', 1], ['ptq-minmax', 3], ['qat-ste', 3], ['Pareto front', 4]]);
  // qat w2a2 (mean of 2 seeds), qat w4a4, qat w8a8, float
  assert.deepEqual(pareto.series[3].points.map((q) => [q.x, Number(q.y.toFixed(2))]), [[105, 79.5], [170, 93], [300, 94.5], [1000, 95]]);
});

test('HTML report renders in headless Chromium: every series and point drawn, self-contained', async (t) => {
  const p = synthetic();
  const dir = mkdtempSync(join(tmpdir(), 'qatkit-report-'));
  const html = join(dir, 'synthetic.results.html');
  writeFileSync(html, htmlReport(p, 'synthetic.results.jsonl'));
  const shot = join(artifactsDir(), 'report-synthetic.png');
  const r = await renderReport(html, shot);
  t.diagnostic(`screenshot: ${r.screenshot}`);
  console.log(`bench report screenshot: ${r.screenshot}`);
  assert.deepEqual(r.pageErrors, []);
  assert.deepEqual(r.externalRequests, []);
  assert.deepEqual(r.charts.map((c) => c.id), ['bits-digits-mlp', 'pareto-digits-mlp']);
  const shape = (c: (typeof r.charts)[number]) => c.series.map((s) => [s.label, s.points, s.elements]);
  assert.deepEqual(shape(r.charts[0]), [['float (fp32)', 2, 2], ['ptq-minmax', 3, 3], ['qat-ste', 3, 3]]);
  assert.deepEqual(shape(r.charts[1]), [['float', 1, 1], ['ptq-minmax', 3, 3], ['qat-ste', 3, 3], ['Pareto front', 4, 4]]);
  for (const c of r.charts) {
    assert.ok(c.series.every((s) => s.placed), `${c.id}: every point inside the chart area`);
    assert.ok(c.inkedPixels > 5000, `${c.id}: canvas drawn (${c.inkedPixels} pixels)`);
  }
});
