// qat bench: run a benchmark matrix into an append-only results file (resumable), and report on a results file.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { expandCells, loadMatrix, shippedMatrices } from '../bench/matrix.js';
import { getMethod, methodNames } from '../bench/methods.js';
import { writeReports } from '../bench/report.js';
import { readResults } from '../bench/results.js';
import { runBench } from '../bench/runner.js';
import { QatError } from '../util/errors.js';
import { registerCommand } from './commands.js';

const log = (s: string) => console.error(s);

/** Default results file: runs/bench/NAME.results.jsonl (NAME from the matrix file's `name`). */
export const defaultResultsPath = (matrixName: string) => join('runs', 'bench', `${matrixName}.results.jsonl`);

registerCommand({
  name: 'bench',
  synopsis: 'NAME|MATRIX.json [--results FILE] [--verbose] | bench report RESULTS.jsonl | bench list',
  summary: 'Run a benchmark matrix (resumable; one JSON line per finished cell) and write its Markdown and HTML report.',
  flags: {
    results: { type: 'string', help: 'results file (default runs/bench/NAME.results.jsonl); a rerun resumes it' },
    verbose: { type: 'boolean', help: 'per-step training progress' },
    'dry-run': { type: 'boolean', help: 'list the cells and say how many are left, run nothing' },
  },
  async run(f, positionals) {
    const [first, second] = positionals;
    if (!first) throw new QatError('a matrix name, a matrix file, `report FILE` or `list` is required', `shipped matrices: ${shippedMatrices().join(', ')}`);
    if (first === 'list') {
      console.log(`shipped matrices: ${shippedMatrices().join(', ')}`);
      console.log('methods:');
      for (const m of methodNames()) console.log(`  ${m.padEnd(8)}${getMethod(m)!.description}`);
      return;
    }
    if (first === 'report') {
      if (!second) throw new QatError('bench report: the results file is required', 'qat bench report runs/bench/NAME.results.jsonl');
      const r = await writeReports(second);
      console.log(`${r.parsed.records.length} of ${r.parsed.header!.cellIds.length} cells; wrote ${r.md} and ${r.html}`);
      return;
    }
    if (second) throw new QatError(`one matrix at a time, got '${first}' and '${second}'`);
    const { matrix, file } = loadMatrix(first);
    const results = (f.results as string | undefined) ?? defaultResultsPath(matrix.name);
    if (f['dry-run']) {
      const cells = expandCells(matrix);
      const done = existsSync(results) ? new Set(readResults(results).records.map((r) => r.id)) : new Set<string>();
      for (const c of cells) console.log(`${done.has(c.id) ? 'done' : 'todo'}  ${c.id}  ${c.label}`);
      console.log(`${cells.length} cells in ${file}; ${cells.filter((c) => !done.has(c.id)).length} not in ${results}`);
      return;
    }
    log(`matrix ${file}`);
    const s = await runBench(matrix, { results, log, verbose: !!f.verbose });
    const r = await writeReports(results);
    console.log(`bench ${matrix.name}: ${s.total} cells (${s.skipped} from earlier runs, ${s.ran} run now) in ${results}; report: ${r.md}, ${r.html}`);
    if (s.failed.length) throw new QatError(`${s.failed.length} cells failed (see the lines above); they are not in ${results}`, 'fix the cause and rerun the same command: finished cells are skipped');
  },
});
