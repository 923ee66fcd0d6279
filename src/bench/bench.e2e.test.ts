// `qat bench quick` end to end, in child processes: a crash that tears a record, a SIGKILL from outside mid-run,
// then a rerun that finishes the matrix with every cell exactly once; a rerun that does nothing; a changed matrix
// refused; the report written, and its HTML rendered in headless Chromium.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { test } from 'node:test';
import { expandCells, loadMatrix } from './matrix.js';
import { packageRoot } from './provenance.js';
import { aggregate, paretoFront, reportPaths } from './report.js';
import { readResults } from './results.js';
import { artifactsDir, renderReport } from './test_browser.js';

const MAIN = fileURLToPath(new URL('../cli/main.js', import.meta.url));
// until main.ts imports the bench command itself, preload it (harmless once it does)
const BENCH_CMD = pathToFileURL(fileURLToPath(new URL('../cli/bench.js', import.meta.url))).href;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stderr: string;
  stdout: string;
}

/** Run `qat bench ...`; `killWhen` is polled every 50 ms and SIGKILLs the child once it returns true. */
function qatBench(args: string[], env: Record<string, string> = {}, killWhen?: () => boolean): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', BENCH_CMD, MAIN, 'bench', ...args], {
      env: { ...process.env, QATKIT_BACKEND: 'wasm', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = killWhen
      ? setInterval(() => {
          if (killWhen()) child.kill('SIGKILL');
        }, 50)
      : undefined;
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer) clearInterval(timer);
      resolve({ code, signal, stderr, stdout });
    });
  });
}

/** Finished records in the file right now, read the way a resumed run reads them. */
const finished = (path: string) => (existsSync(path) ? readResults(path).records.length : 0);

test('qat bench quick: killed twice, rerun, finishes with every cell exactly once; reports render', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'qatkit-bench-'));
  const results = join(dir, 'quick.results.jsonl');
  const { matrix } = loadMatrix('quick');
  const cells = expandCells(matrix);
  assert.equal(cells.length, 26);
  const stderrs: string[] = [];

  // 1. a crash in the middle of writing the 5th record (injected): 4 records and a torn line
  const r1 = await qatBench(['quick', '--results', results], { QATKIT_BENCH_CRASH: 'torn:4' });
  stderrs.push(r1.stderr);
  assert.equal(r1.signal, 'SIGKILL', r1.stderr);
  const p1 = readResults(results);
  assert.equal(p1.records.length, 4);
  assert.ok(p1.tornBytes > 0, 'a torn last line');

  // 2. killed from outside (SIGKILL) once 9 cells are in, wherever it is at that moment
  const r2 = await qatBench(['quick', '--results', results], {}, () => finished(results) >= 9);
  stderrs.push(r2.stderr);
  assert.equal(r2.signal, 'SIGKILL', r2.stderr);
  assert.match(r2.stderr, /dropped a torn last line \(\d+ bytes\) left by a killed run/);
  assert.match(r2.stderr, /26 cells; 4 already in .*, 22 to run/);
  assert.match(r2.stderr, /float digits\/mlp seed 0: cached/);
  const p2 = readResults(results);
  assert.ok(p2.records.length >= 9 && p2.records.length < 26, `killed midway (${p2.records.length} records)`);

  // 3. the rerun finishes the matrix
  const r3 = await qatBench(['quick', '--results', results]);
  stderrs.push(r3.stderr);
  assert.equal(r3.code, 0, r3.stderr);
  assert.match(r3.stderr, new RegExp(`26 cells; ${p2.records.length} already in .*, ${26 - p2.records.length} to run`));
  const bytes = readFileSync(results);
  const p3 = readResults(results);
  assert.equal(p3.tornBytes, 0);
  assert.deepEqual(p3.duplicates, []);
  const lines = bytes.toString('utf8').split('\n').filter(Boolean);
  assert.equal(lines.length, 1 + 26, 'header and one line per cell, nothing else');
  const ids = lines.slice(1).map((l) => JSON.parse(l).id as string);
  assert.deepEqual([...ids].sort(), cells.map((c) => c.id).sort(), 'every cell exactly once');

  // each float model was trained once, by the run that first needed it, and cached
  const all = stderrs.join('\n');
  for (const seed of [0, 1]) assert.equal(all.split(`float digits/mlp seed ${seed}: training`).length - 1, 1, `float seed ${seed} trained once`);
  assert.equal(readdirSync(join(dir, 'float-cache')).filter((f) => f.endsWith('.onnx')).length, 2);

  // the records: measured numbers and provenance
  const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };
  let head: string | null = null;
  try {
    head = execFileSync('git', ['rev-parse', 'HEAD'], { cwd: packageRoot(), encoding: 'utf8' }).trim();
  } catch {
    head = null;
  }
  for (const r of p3.records) {
    assert.equal(r.testExamples, 359);
    assert.ok(r.accuracyOrt > 0.1 && r.accuracyOrt <= 1 && r.accuracySim > 0.1 && r.accuracySim <= 1, `${r.label}: accuracies`);
    assert.ok(r.onnxBytes > 1000 && r.wallSec >= 0 && r.methodSec >= 0);
    assert.equal(r.version, pkg.version);
    assert.equal(r.commit, head);
    assert.equal(r.backend, 'wasm');
  }
  const bytesOf = (recipe: string | null) => new Set(p3.records.filter((r) => (r.config.recipe?.name ?? null) === recipe).map((r) => r.packedBytes));
  const [fp, w8, w2] = [bytesOf(null), bytesOf('w8a8'), bytesOf('w2a2')];
  assert.ok(fp.size === 1 && w8.size === 1 && w2.size === 1, 'packed size depends on the recipe only');
  assert.ok([...w2][0] < [...w8][0] && [...w8][0] < [...fp][0], 'fewer bits, fewer bytes');

  // 4. a rerun of a finished matrix runs nothing and leaves the file as it is
  const r4 = await qatBench(['quick', '--results', results]);
  assert.equal(r4.code, 0, r4.stderr);
  assert.match(r4.stderr, /26 cells; 26 already in .*, 0 to run/);
  assert.deepEqual(readFileSync(results), bytes);

  // 5. a changed matrix is not mixed into the old file
  const changed = JSON.parse(readFileSync(join(packageRoot(), 'bench/matrices/quick.json'), 'utf8'));
  changed.methods.find((m: { name: string }) => m.name === 'qat-ste').budget.epochs = 1;
  const changedFile = join(dir, 'quick-changed.json');
  writeFileSync(changedFile, JSON.stringify(changed));
  const r5 = await qatBench([changedFile, '--results', results]);
  assert.equal(r5.code, 1);
  assert.match(r5.stderr, /holds results of another version of matrix 'quick'.*4 cells are new or changed and 4 of the old ones are gone/);
  assert.match(r5.stderr, /hint: pass a new --results file/);
  assert.deepEqual(readFileSync(results), bytes);

  // 6. the reports, written after the run: Markdown with every method, HTML with the charts drawn
  const { md, html } = reportPaths(results);
  const mdText = readFileSync(md, 'utf8');
  for (const m of matrix.methods) assert.match(mdText, new RegExp(`\\| ${m.name} \\|`));
  assert.match(mdText, /26 of 26 cells finished/);
  const shot = join(artifactsDir(), 'report-quick.png');
  const rendered = await renderReport(html, shot);
  t.diagnostic(`screenshot: ${rendered.screenshot}`);
  console.log(`bench quick report screenshot: ${rendered.screenshot}`);
  assert.deepEqual(rendered.pageErrors, []);
  assert.deepEqual(rendered.externalRequests, []);
  const quantMethods = matrix.methods.filter((m) => m.method !== 'float').map((m) => m.name);
  const [bits, pareto] = rendered.charts;
  assert.equal(rendered.charts.length, 2);
  assert.deepEqual(
    bits.series.map((s) => [s.label, s.points, s.elements]),
    [['float (fp32)', 2, 2], ...quantMethods.map((m) => [m, 2, 2])],
  );
  const groups = aggregate(p3.records, matrix);
  const front = paretoFront(groups.map((g) => ({ x: g.packedBytes.mean, y: g.accuracyOrt.mean })));
  assert.deepEqual(
    pareto.series.map((s) => [s.label, s.points, s.elements]),
    [['float', 1, 1], ...quantMethods.map((m) => [m, 2, 2]), ['Pareto front', front.length, front.length]],
  );
  for (const c of rendered.charts) {
    assert.ok(c.series.every((s) => s.placed), `${c.id}: points inside the chart area`);
    assert.ok(c.inkedPixels > 5000, `${c.id}: canvas drawn`);
  }

  // 7. `qat bench report FILE` writes the same reports on demand
  const r7 = await qatBench(['report', results]);
  assert.equal(r7.code, 0, r7.stderr);
  assert.match(r7.stdout, /26 of 26 cells; wrote .*quick\.results\.md and .*quick\.results\.html/);
  assert.equal(readFileSync(md, 'utf8'), mdText);
});
