// Reports from a results file: a Markdown table (mean and spread over seeds) and a self-contained HTML page whose
// charts Chart.js draws (its UMD bundle is inlined): accuracy against bit width per method, and accuracy against
// packed model bytes with the Pareto front, one of each per task. Everything shown is computed from the records.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../util/fs.js';
import { expandCells, type Matrix } from './matrix.js';
import { readResults, type CellRecord, type ParsedResults } from './results.js';

export interface Stat {
  mean: number;
  /** sample standard deviation (n - 1); 0 for a single value */
  std: number;
  min: number;
  max: number;
}

export function stat(xs: number[]): Stat {
  const n = xs.length;
  const mean = xs.reduce((a, b) => a + b, 0) / n;
  const std = n > 1 ? Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, min: Math.min(...xs), max: Math.max(...xs) };
}

/** The records of one (task, method, recipe), over seeds. */
export interface Group {
  task: string;
  method: string;
  /** the recipe's name, or 'fp32' for methods without one */
  recipe: string;
  /** weight and activation bits (32 for fp32) */
  wBits: number;
  aBits: number;
  seeds: number[];
  accuracyOrt: Stat;
  accuracySim: Stat;
  agreement: Stat;
  packedBytes: Stat;
  onnxBytes: Stat;
  methodSec: Stat;
  wallSec: Stat;
}

const taskOf = (r: CellRecord) => `${r.config.task.dataset}/${r.config.task.model}`;

/** Groups in the matrix's order: tasks, then methods, then recipes. */
export function aggregate(records: CellRecord[], matrix: Matrix): Group[] {
  const byKey = new Map<string, CellRecord[]>();
  const key = (task: string, method: string, recipe: string) => `${task}\u0000${method}\u0000${recipe}`;
  for (const r of records) {
    const k = key(taskOf(r), r.config.method.name, r.config.recipe?.name ?? 'fp32');
    if (!byKey.has(k)) byKey.set(k, []);
    byKey.get(k)!.push(r);
  }
  const groups: Group[] = [];
  for (const t of matrix.tasks)
    for (const m of matrix.methods)
      for (const recipe of ['fp32', ...matrix.recipes.map((r) => r.name)]) {
        const rs = byKey.get(key(`${t.dataset}/${t.model}`, m.name, recipe));
        if (!rs?.length) continue;
        const rec = rs[0].config.recipe;
        const s = (f: (r: CellRecord) => number) => stat(rs.map(f));
        groups.push({
          task: `${t.dataset}/${t.model}`,
          method: m.name,
          recipe,
          wBits: rec ? rec.weights.spec.bits : 32,
          aBits: rec ? rec.activations.spec.bits : 32,
          seeds: rs.map((r) => r.seed).sort((a, b) => a - b),
          accuracyOrt: s((r) => r.accuracyOrt),
          accuracySim: s((r) => r.accuracySim),
          agreement: s((r) => r.agreement),
          packedBytes: s((r) => r.packedBytes),
          onnxBytes: s((r) => r.onnxBytes),
          methodSec: s((r) => r.methodSec),
          wallSec: s((r) => r.wallSec),
        });
      }
  return groups;
}

// ---- charts, as plain data (the HTML draws them; the test checks them against the records) ----

export interface ChartPoint {
  x: number;
  y: number;
  /** what the tooltip names: method and recipe, spread and seeds */
  label: string;
}

export interface ChartSeries {
  label: string;
  points: ChartPoint[];
  line: boolean;
  dashed?: boolean;
  color: string;
}

export interface ChartSpec {
  id: string;
  title: string;
  xLabel: string;
  yLabel: string;
  xLog: boolean;
  series: ChartSeries[];
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22', '#7f7f7f'];
const slug = (s: string) => s.replace(/[^A-Za-z0-9]+/g, '-');
const pctStr = (s: Stat) => `${(100 * s.mean).toFixed(2)}% ± ${(100 * s.std).toFixed(2)}`;

/**
 * Per task: accuracy (ORT) against weight bit width, one series per quantizing method (a point per recipe) and a
 * dashed flat line per float method across the bit range; then accuracy against packed bytes, one series per method
 * and the Pareto front (the points no other point beats on both size and accuracy).
 */
export function chartSpecs(groups: Group[], matrix: Matrix): ChartSpec[] {
  const color = new Map(matrix.methods.map((m, i) => [m.name, PALETTE[i % PALETTE.length]]));
  const specs: ChartSpec[] = [];
  for (const t of matrix.tasks) {
    const task = `${t.dataset}/${t.model}`;
    const gs = groups.filter((g) => g.task === task);
    if (!gs.length) continue;
    const point = (g: Group, x: number): ChartPoint => ({
      x,
      y: 100 * g.accuracyOrt.mean,
      label: `${g.method} ${g.recipe}: ${pctStr(g.accuracyOrt)} (${g.seeds.length} seeds), ${Math.round(g.packedBytes.mean)} B packed`,
    });
    const methodsIn = matrix.methods.map((m) => m.name).filter((m) => gs.some((g) => g.method === m));

    const quant = gs.filter((g) => g.recipe !== 'fp32');
    if (quant.length) {
      const xs = quant.map((g) => g.wBits);
      const [lo, hi] = [Math.min(...xs), Math.max(...xs)];
      const series: ChartSeries[] = [];
      for (const m of methodsIn) {
        const mine = gs.filter((g) => g.method === m);
        if (mine.every((g) => g.recipe === 'fp32')) {
          const g = mine[0];
          series.push({ label: `${m} (fp32)`, points: [point(g, lo), point(g, hi)], line: true, dashed: true, color: color.get(m)! });
        } else {
          const pts = mine.filter((g) => g.recipe !== 'fp32').sort((a, b) => a.wBits - b.wBits || a.aBits - b.aBits);
          series.push({ label: m, points: pts.map((g) => point(g, g.wBits)), line: true, color: color.get(m)! });
        }
      }
      specs.push({ id: `bits-${slug(task)}`, title: `${task}: ONNX Runtime accuracy against weight bit width`, xLabel: 'weight bits', yLabel: 'test accuracy (%)', xLog: false, series });
    }

    const all: ChartPoint[] = [];
    const series: ChartSeries[] = methodsIn.map((m) => {
      const pts = gs.filter((g) => g.method === m).map((g) => point(g, g.packedBytes.mean)).sort((a, b) => a.x - b.x);
      all.push(...pts);
      return { label: m, points: pts, line: false, color: color.get(m)! };
    });
    series.push({ label: 'Pareto front', points: paretoFront(all), line: true, dashed: true, color: '#444444' });
    specs.push({ id: `pareto-${slug(task)}`, title: `${task}: accuracy against packed model size`, xLabel: 'packed model bytes (log scale)', yLabel: 'test accuracy (%)', xLog: true, series });
  }
  return specs;
}

/** Points not dominated by another (no other is as small and more accurate, or smaller and as accurate), by size. */
export function paretoFront<P extends { x: number; y: number }>(points: P[]): P[] {
  const sorted = [...points].sort((a, b) => a.x - b.x || b.y - a.y);
  const front: P[] = [];
  for (const p of sorted) if (!front.length || p.y > front[front.length - 1].y) front.push(p);
  return front;
}

// ---- Markdown ----

const fmtPct = (s: Stat, n: number) => (n > 1 ? `${(100 * s.mean).toFixed(2)} ± ${(100 * s.std).toFixed(2)}` : (100 * s.mean).toFixed(2));

function describeBudget(b: { epochs: number; batchSize: number; lr: number; optimizer?: string } | null): string {
  return b ? `${b.epochs} epochs, batch ${b.batchSize}, lr ${b.lr}${b.optimizer ? `, ${b.optimizer}` : ''}` : '-';
}

/** Labels of the cells not in the file (ids when the matrix uses methods this process has not registered). */
export function missingCells(p: ParsedResults): string[] {
  const h = p.header!;
  const have = new Set(p.records.map((r) => r.id));
  let labels: Map<string, string>;
  try {
    labels = new Map(expandCells(h.matrix).map((c) => [c.id, c.label]));
  } catch {
    labels = new Map();
  }
  return h.cellIds.filter((id) => !have.has(id)).map((id) => labels.get(id) ?? `cell ${id}`);
}

function summaryLines(p: ParsedResults, file: string): string[] {
  const h = p.header!;
  const versions = [...new Set(p.records.map((r) => `qatkit ${r.version} at ${r.commit ? r.commit.slice(0, 10) : 'no git commit'}${r.gitDirty ? ' (with local edits)' : ''}, backend ${r.backend}`))];
  const lines = [
    `Matrix \`${h.matrixName}\` (hash ${h.matrixHash}): ${p.records.length} of ${h.cellIds.length} cells finished. Results file: \`${file}\`.`,
    `Made with ${versions.join('; ') || '(no records yet)'}.`,
  ];
  if (h.matrix.description) lines.push('', h.matrix.description);
  if (p.records.length < h.cellIds.length) {
    lines.push('', `**Incomplete:** ${h.cellIds.length - p.records.length} cells have not run yet (or failed: see the run's log); rerun \`qat bench\` with the same --results file to finish.`);
    const missing = missingCells(p);
    lines.push('', `Missing: ${missing.slice(0, 40).join('; ')}${missing.length > 40 ? `; and ${missing.length - 40} more` : ''}.`);
  }
  if (p.duplicates.length) lines.push('', `**Warning:** ${p.duplicates.length} duplicate records ignored.`);
  return lines;
}

const LEGEND =
  'Accuracy: test accuracy in %, mean ± sample standard deviation over the seeds finished (n). ' +
  'ORT: the exported ONNX model in ONNX Runtime; sim: our fake-quant simulation; agree: share of test examples where both predict the same class. ' +
  'Packed bytes: weights at their bit width plus every other parameter as stored; ONNX bytes: the QDQ file (int8 containers). ' +
  'Method s: training or calibration time (float: training the float model); wall s: the whole cell without the shared float training.';

function mdTable(head: string[], rows: string[][]): string[] {
  return [`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)];
}

export function markdownReport(p: ParsedResults, file: string): string {
  const h = p.header!;
  const groups = aggregate(p.records, h.matrix);
  const out = [`# qatkit benchmark: ${h.matrixName}`, '', ...summaryLines(p, file), '', LEGEND, ''];
  const recipes = ['fp32', ...h.matrix.recipes.map((r) => r.name)];
  for (const t of h.matrix.tasks) {
    const task = `${t.dataset}/${t.model}`;
    const gs = groups.filter((g) => g.task === task);
    out.push(`## ${task}`, '');
    out.push(`Float model: ${describeBudget(t.float)}; training examples: ${t.trainLimit ?? 'all'}, test examples: ${t.testLimit ?? 'all'}.`, '');
    if (!gs.length) {
      out.push('No finished cells yet.', '');
      continue;
    }
    const cols = recipes.filter((r) => gs.some((g) => g.recipe === r));
    out.push('ONNX Runtime accuracy (%):', '');
    const methods = h.matrix.methods.map((m) => m.name).filter((m) => gs.some((g) => g.method === m));
    out.push(
      ...mdTable(
        ['method', ...cols],
        methods.map((m) => [m, ...cols.map((r) => {
          const g = gs.find((x) => x.method === m && x.recipe === r);
          return g ? fmtPct(g.accuracyOrt, g.seeds.length) : '';
        })]),
      ),
      '',
    );
    out.push(
      ...mdTable(
        ['method', 'recipe', 'ORT acc', 'sim acc', 'agree', 'packed bytes', 'ONNX bytes', 'method s', 'wall s', 'n'],
        gs.map((g) => [
          g.method,
          g.recipe,
          fmtPct(g.accuracyOrt, g.seeds.length),
          fmtPct(g.accuracySim, g.seeds.length),
          fmtPct(g.agreement, g.seeds.length),
          String(Math.round(g.packedBytes.mean)),
          String(Math.round(g.onnxBytes.mean)),
          g.methodSec.mean.toFixed(1),
          g.wallSec.mean.toFixed(1),
          String(g.seeds.length),
        ]),
      ),
      '',
    );
  }
  out.push('## Methods', '');
  out.push(
    ...mdTable(
      ['name', 'method', 'params', 'budget'],
      h.matrix.methods.map((m) => [m.name, m.method, `\`${JSON.stringify(m.params)}\``, describeBudget(m.budget)]),
    ),
    '',
    `Recipes: ${h.matrix.recipes.map((r) => r.name).join(', ')}. Seeds: ${h.matrix.seeds.join(', ')}.`,
    '',
  );
  return out.join('\n');
}

// ---- HTML ----

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
/** JSON that is safe inside a <script> element */
const scriptJson = (v: unknown) => JSON.stringify(v).replace(/</g, '\\u003c');

/** The Chart.js UMD bundle, to inline: the report must open without a network. */
export function chartJsBundle(): string {
  const main = createRequire(import.meta.url).resolve('chart.js'); // .../chart.js/dist/chart.cjs
  return readFileSync(join(dirname(main), 'chart.umd.min.js'), 'utf8').replace(/<\/script/gi, '<\\/script');
}

/** Minimal Markdown table/heading/paragraph rendering for our own report text (no external input is rendered). */
function mdToHtml(md: string): string {
  const html: string[] = [];
  const lines = md.split('\n');
  const inline = (s: string) => esc(s).replace(/`([^`]+)`/g, '<code>$1</code>').replace(/\*\*([^*]+)\*\*/g, '<strong>$1</strong>');
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i];
    if (l.startsWith('|')) {
      const rows: string[][] = [];
      for (; i < lines.length && lines[i].startsWith('|'); i++) rows.push(lines[i].slice(1, -1).split(' | ').map((c) => c.trim()));
      i--;
      const [head, , ...body] = rows;
      html.push('<table><thead><tr>' + head.map((c) => `<th>${inline(c)}</th>`).join('') + '</tr></thead><tbody>');
      const num = (c: string) => (/^[-\d.,±% ]*\d[-\d.,±% ]*$/.test(c) ? ' class="num"' : '');
      for (const r of body) html.push('<tr>' + r.map((c) => `<td${num(c)}>${inline(c)}</td>`).join('') + '</tr>');
      html.push('</tbody></table>');
    } else if (l.startsWith('# ')) html.push(`<h1>${inline(l.slice(2))}</h1>`);
    else if (l.startsWith('## ')) html.push(`<h2 id="${slug(l.slice(3))}">${inline(l.slice(3))}</h2>`);
    else if (l.trim()) html.push(`<p>${inline(l)}</p>`);
  }
  return html.join('\n');
}

const CHART_SCRIPT = `
(function () {
  const specs = JSON.parse(document.getElementById('qatkit-chart-specs').textContent);
  window.qatkitCharts = [];
  for (const spec of specs) {
    const canvas = document.getElementById(spec.id);
    const chart = new Chart(canvas, {
      type: 'scatter',
      data: {
        datasets: spec.series.map((s) => ({
          label: s.label,
          data: s.points,
          showLine: s.line,
          borderColor: s.color,
          backgroundColor: s.color,
          borderDash: s.dashed ? [6, 4] : [],
          pointRadius: s.dashed && s.label !== 'Pareto front' ? 0 : 4,
          borderWidth: 2,
        })),
      },
      options: {
        animation: false,
        responsive: false,
        plugins: {
          title: { display: true, text: spec.title },
          tooltip: { callbacks: { label: (c) => c.raw.label } },
        },
        scales: {
          x: { type: spec.xLog ? 'logarithmic' : 'linear', title: { display: true, text: spec.xLabel } },
          y: { title: { display: true, text: spec.yLabel } },
        },
      },
    });
    window.qatkitCharts.push({ id: spec.id, chart });
  }
  window.qatkitReady = true;
})();
`;

export function htmlReport(p: ParsedResults, file: string): string {
  const h = p.header!;
  const specs = chartSpecs(aggregate(p.records, h.matrix), h.matrix);
  const md = markdownReport(p, file);
  const cut = md.indexOf('\n## ');
  const [intro, rest] = cut < 0 ? [md, ''] : [md.slice(0, cut), md.slice(cut + 1)];
  const charts = specs.map((s) => `<div class="chart"><canvas id="${esc(s.id)}" width="720" height="400"></canvas></div>`).join('\n');
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>qatkit benchmark: ${esc(h.matrixName)}</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.charts { display: flex; flex-wrap: wrap; gap: 1em; }
.chart { border: 1px solid #eee; padding: 0.5em; }
code { background: #f4f4f4; padding: 0 0.2em; }
</style>
</head>
<body>
${mdToHtml(intro)}
<h2>Charts</h2>
<p>Each point is the mean over seeds of the ONNX Runtime test accuracy; hover a point for its spread and seeds.</p>
<div class="charts">
${charts}
</div>
${mdToHtml(rest)}
<script type="application/json" id="qatkit-chart-specs">${scriptJson(specs)}</script>
<script>${chartJsBundle()}</script>
<script>${CHART_SCRIPT}</script>
</body>
</html>
`;
}

/** Where the reports of a results file go: beside it, '.jsonl' replaced by '.md' and '.html'. */
export function reportPaths(results: string): { md: string; html: string } {
  const stem = results.replace(/\.jsonl$/, '');
  return { md: `${stem}.md`, html: `${stem}.html` };
}

export async function writeReports(results: string): Promise<{ md: string; html: string; parsed: ParsedResults }> {
  const parsed = readResults(results);
  if (!parsed.header) throw new Error(`${results}: the results file has no header line`);
  const paths = reportPaths(results);
  await writeFileAtomic(paths.md, markdownReport(parsed, results));
  await writeFileAtomic(paths.html, htmlReport(parsed, results));
  return { ...paths, parsed };
}
