// The results file: append and resume, a torn last line dropped and cut off, damage and a changed matrix refused.
import assert from 'node:assert/strict';
import { appendFileSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { expandCells, validateMatrix, type Cell } from './matrix.js';
import { readResults, ResultsFile, type CellRecord } from './results.js';
import { resultsHeader } from './runner.js';

const raw = {
  version: 1,
  name: 'tiny',
  tasks: [{ model: 'mlp', dataset: 'digits', float: { epochs: 1, batchSize: 32, lr: 0.1 } }],
  methods: [
    { name: 'float', method: 'float' },
    { name: 'ptq', method: 'ptq' },
  ],
  recipes: ['w8a8', 'w4a4'],
  seeds: [0],
};
const matrix = validateMatrix(raw, 'tiny.json');
const cells = expandCells(matrix);
const header = resultsHeader(matrix, cells);

const record = (c: Cell): CellRecord => ({
  type: 'cell',
  id: c.id,
  label: c.label,
  config: c.config,
  seed: c.config.seed,
  accuracySim: 0.9,
  accuracyOrt: 0.9,
  agreement: 1,
  testExamples: 10,
  onnxBytes: 100,
  packedBytes: 50,
  wallSec: 0.1,
  methodSec: 0.1,
  backend: 'cpu',
  version: '0.0.0',
  commit: null,
  gitDirty: null,
  finishedAt: '2026-01-01T00:00:00.000Z',
});

const tmp = () => join(mkdtempSync(join(tmpdir(), 'qatkit-results-')), 'r.jsonl');

test('a new file gets the header; records append one line each; reopening resumes with the finished cells', () => {
  assert.equal(cells.length, 3);
  const path = tmp();
  const f = ResultsFile.open(path, header);
  assert.equal(f.done.size, 0);
  f.append(record(cells[0]));
  f.append(record(cells[1]));
  assert.throws(() => f.append(record(cells[1])), /already recorded/);
  f.close();
  const lines = readFileSync(path, 'utf8').split('\n');
  assert.equal(lines.length, 4); // header, 2 records, '' after the last newline
  assert.equal(JSON.parse(lines[0]).matrixHash, header.matrixHash);
  const again = ResultsFile.open(path, header);
  assert.deepEqual([...again.done].sort(), [cells[0].id, cells[1].id].sort());
  again.close();
  const r = readResults(path);
  assert.equal(r.records.length, 2);
  assert.equal(r.tornBytes, 0);
});

test('a torn last line is ignored by readers and cut off by the writer, which says so', () => {
  const path = tmp();
  const f = ResultsFile.open(path, header);
  f.append(record(cells[0]));
  f.appendTornForTest(record(cells[1]));
  f.close();
  const before = readResults(path);
  assert.equal(before.records.length, 1);
  assert.ok(before.tornBytes > 0);
  const logs: string[] = [];
  const g = ResultsFile.open(path, header, (l) => logs.push(l));
  assert.deepEqual([...g.done], [cells[0].id]);
  assert.match(logs.join('\n'), /dropped a torn last line/);
  g.append(record(cells[1]));
  g.close();
  const after = readResults(path);
  assert.equal(after.tornBytes, 0);
  assert.deepEqual(after.records.map((x) => x.id), [cells[0].id, cells[1].id]);
});

test('a torn header (crash while creating the file) starts the file afresh', () => {
  const path = tmp();
  writeFileSync(path, JSON.stringify(header).slice(0, 40));
  const logs: string[] = [];
  const f = ResultsFile.open(path, header, (l) => logs.push(l));
  f.close();
  assert.match(logs.join('\n'), /torn header/);
  assert.equal(readResults(path).header!.matrixHash, header.matrixHash);
});

test('damage in the middle, a foreign first line or a foreign cell is an error naming the file and line', () => {
  const path = tmp();
  const f = ResultsFile.open(path, header);
  f.append(record(cells[0]));
  f.close();
  appendFileSync(path, '{"type": "cell", oops\n');
  appendFileSync(path, JSON.stringify(record(cells[1])) + '\n');
  assert.throws(() => readResults(path), (e: Error) => e.message.includes(`${path}, line 3: not valid JSON`));

  const other = tmp();
  writeFileSync(other, '{"hello": 1}\n');
  assert.throws(() => readResults(other), /line 1: not a qatkit benchmark results file/);

  const foreign = tmp();
  const g = ResultsFile.open(foreign, header);
  g.close();
  appendFileSync(foreign, JSON.stringify({ ...record(cells[0]), id: 'ffffffffffffffff' }) + '\n');
  assert.throws(() => readResults(foreign), /line 2: cell ffffffffffffffff is not a cell of the matrix/);
});

test('duplicate records: the first is kept and the duplicate reported', () => {
  const path = tmp();
  const f = ResultsFile.open(path, header);
  f.append(record(cells[0]));
  f.close();
  appendFileSync(path, JSON.stringify({ ...record(cells[0]), accuracyOrt: 0.1 }) + '\n');
  const r = readResults(path);
  assert.equal(r.records.length, 1);
  assert.equal(r.records[0].accuracyOrt, 0.9);
  assert.deepEqual(r.duplicates, [cells[0].id]);
});

test('a changed matrix is refused with a hint to use a new results file', () => {
  const path = tmp();
  ResultsFile.open(path, header).close();
  const changed = validateMatrix({ ...raw, methods: [raw.methods[0], { name: 'ptq', method: 'ptq', params: { calibrationBatches: 4 } }] }, 'tiny.json');
  const h2 = resultsHeader(changed, expandCells(changed));
  assert.notEqual(h2.matrixHash, header.matrixHash);
  assert.throws(
    () => ResultsFile.open(path, h2),
    (e: Error & { hint?: string }) =>
      /another version of matrix 'tiny'.*2 cells are new or changed and 2 of the old ones are gone/.test(e.message) && /new --results file/.test(e.hint ?? ''),
  );
});

test('one writer at a time: the lock of a live writer is refused, that of a dead one taken over', () => {
  const path = tmp();
  const f = ResultsFile.open(path, header);
  assert.throws(() => ResultsFile.open(path, header), new RegExp(`being written by another qat bench \\(pid ${process.pid}\\)`));
  f.close();
  // a lock left by a process that no longer exists (pid far above any pid_max)
  writeFileSync(`${path}.lock`, '2000000000\n');
  const logs: string[] = [];
  const g = ResultsFile.open(path, header, (l) => logs.push(l));
  assert.match(logs.join('\n'), /taking over the lock of a run that is gone \(pid 2000000000\)/);
  g.close();
  assert.ok(!existsSync(`${path}.lock`));
});
