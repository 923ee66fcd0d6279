// The append-only results file: a header line (the matrix, its hash and cell ids), then one JSON line per finished
// cell, each appended with a single write and an fsync. A crash can only tear the last line (no trailing newline);
// readers ignore it and the writer cuts it off before appending. The file is the only state of a run: rerunning
// skips the cells it holds.
//
// Changed matrix: the header's hash covers the set of cell ids, and a cell id hashes the cell's whole config.
// If a rerun's matrix hashes differently, we refuse to append (old and new results would mix in one report) and
// ask for a new --results file. Environment changes (package version, git commit) do not count: every record
// carries its own.
import { closeSync, existsSync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { QatError } from '../util/errors.js';
import { writeFileAtomicSync } from '../util/fs.js';
import type { CellConfig, Matrix } from './matrix.js';

export const RESULTS_FORMAT = 'qatkit-bench-results';
export const RESULTS_FORMAT_VERSION = 1;

export interface ResultsHeader {
  type: 'header';
  format: typeof RESULTS_FORMAT;
  formatVersion: number;
  matrixName: string;
  matrixHash: string;
  /** the ids of every cell of the matrix, in run order */
  cellIds: string[];
  /** the validated matrix, so a report needs nothing but this file */
  matrix: Matrix;
  createdAt: string;
  version: string;
  commit: string | null;
}

export interface CellRecord {
  type: 'cell';
  id: string;
  label: string;
  config: CellConfig;
  seed: number;
  /** test accuracy of the graph in our simulation (fake-quant) */
  accuracySim: number;
  /** test accuracy of the exported ONNX model in ONNX Runtime */
  accuracyOrt: number;
  /** share of test examples where both predict the same class */
  agreement: number;
  testExamples: number;
  /** size of the exported ONNX file (QDQ keeps sub-8-bit weights in int8 containers) */
  onnxBytes: number;
  /** weights packed at their bit width plus every other parameter as stored: what a packed deployment holds */
  packedBytes: number;
  /** seconds of this cell's work: the method, export, simulated and ORT evaluation (not the shared float training) */
  wallSec: number;
  /** seconds of the method alone (training, calibration; for the float cell: training the float model) */
  methodSec: number;
  /** float cell: the float model came from the cache (methodSec is then the time measured when it was trained) */
  floatCached?: boolean;
  /** the cell's training resumed from a checkpoint of a killed run (methodSec counts this process only) */
  resumed?: boolean;
  backend: string;
  version: string;
  commit: string | null;
  gitDirty: boolean | null;
  finishedAt: string;
}

export interface ParsedResults {
  header: ResultsHeader | null;
  records: CellRecord[];
  /** ids seen more than once (the first record of each is kept); never written by the runner */
  duplicates: string[];
  /** bytes of a torn last line (no trailing newline), ignored */
  tornBytes: number;
  /** bytes up to the end of the last whole line */
  validBytes: number;
}

const NL = 0x0a;

/** Parse the file's bytes. A torn last line is ignored; any other bad line is an error naming the file and line. */
export function parseResults(bytes: Uint8Array, path: string): ParsedResults {
  const end = bytes.lastIndexOf(NL) + 1;
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, end).toString('utf8');
  const lines = text.split('\n');
  lines.pop(); // after the last newline
  let header: ResultsHeader | null = null;
  const records: CellRecord[] = [];
  const seen = new Set<string>();
  let known = new Set<string>();
  const duplicates: string[] = [];
  lines.forEach((line, i) => {
    const where = `${path}, line ${i + 1}`;
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new QatError(`${where}: not valid JSON: the results file is damaged (only a torn last line is repaired automatically)`, 'move the file away and rerun, or remove the damaged line by hand');
    }
    const o = v as { type?: unknown; id?: unknown };
    if (i === 0) {
      if (o.type !== 'header' || (v as ResultsHeader).format !== RESULTS_FORMAT)
        throw new QatError(`${where}: not a qatkit benchmark results file (the first line is not its header)`, 'pass a results file written by `qat bench`');
      if ((v as ResultsHeader).formatVersion !== RESULTS_FORMAT_VERSION)
        throw new QatError(`${where}: results format version ${(v as ResultsHeader).formatVersion}, this qatkit reads version ${RESULTS_FORMAT_VERSION}`);
      header = v as ResultsHeader;
      known = new Set(header.cellIds);
      return;
    }
    if (o.type !== 'cell' || typeof o.id !== 'string') throw new QatError(`${where}: not a cell record (expected {"type": "cell", "id": ...})`);
    if (!known.has(o.id)) throw new QatError(`${where}: cell ${o.id} is not a cell of the matrix in this file's header`);
    if (seen.has(o.id)) {
      duplicates.push(o.id);
      return;
    }
    seen.add(o.id);
    records.push(v as CellRecord);
  });
  return { header, records, duplicates, tornBytes: bytes.length - end, validBytes: end };
}

export function readResults(path: string): ParsedResults {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new QatError(`${path}: cannot read the results file: ${code === 'ENOENT' ? 'no such file' : (code ?? (e as Error).message)}`);
  }
  return parseResults(new Uint8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength), path);
}

/** An open results file: created with its header, or resumed after checking that the matrix is the same. */
export class ResultsFile {
  /** ids of the cells the file holds */
  readonly done: Set<string>;
  private fd: number | null;

  private constructor(readonly path: string, fd: number, done: Set<string>, private readonly lock: string) {
    this.fd = fd;
    this.done = done;
  }

  static open(path: string, header: ResultsHeader, log: (line: string) => void = () => {}): ResultsFile {
    mkdirSync(dirname(path), { recursive: true });
    const lock = takeLock(path, log);
    try {
      return ResultsFile.openLocked(path, header, log, lock);
    } catch (e) {
      rmSync(lock, { force: true });
      throw e;
    }
  }

  private static openLocked(path: string, header: ResultsHeader, log: (line: string) => void, lock: string): ResultsFile {
    let done = new Set<string>();
    const existing = existsSync(path) ? readFileSync(path) : null;
    const parsed = existing && existing.length > 0 ? parseResults(new Uint8Array(existing.buffer, existing.byteOffset, existing.byteLength), path) : null;
    if (!parsed || !parsed.header) {
      // new file, or a crash tore the header itself: the header goes in atomically, so a file is never without one
      if (parsed?.tornBytes) log(`${path}: dropped a torn header line (${parsed.tornBytes} bytes) from a killed run`);
      writeFileAtomicSync(path, JSON.stringify(header) + '\n');
    } else {
      const old = parsed.header;
      if (old.matrixHash !== header.matrixHash) {
        const now = new Set(header.cellIds);
        const before = new Set(old.cellIds);
        const added = header.cellIds.filter((id) => !before.has(id)).length;
        const gone = old.cellIds.filter((id) => !now.has(id)).length;
        throw new QatError(
          `${path} holds results of another version of matrix '${old.matrixName}' (hash ${old.matrixHash}, ${old.cellIds.length} cells); ` +
            `this matrix '${header.matrixName}' is hash ${header.matrixHash}: ${added} cells are new or changed and ${gone} of the old ones are gone. ` +
            'Results of different configs are not mixed in one file.',
          `pass a new --results file for the changed matrix (or delete ${path} to start over)`,
        );
      }
      if (parsed.tornBytes > 0) {
        log(`${path}: dropped a torn last line (${parsed.tornBytes} bytes) left by a killed run; that cell runs again`);
        const fd = openSync(path, 'r+');
        try {
          ftruncateSync(fd, parsed.validBytes);
          fsyncSync(fd);
        } finally {
          closeSync(fd);
        }
      }
      if (parsed.duplicates.length) log(`${path}: ${parsed.duplicates.length} duplicate records ignored (the first of each is kept)`);
      done = new Set(parsed.records.map((r) => r.id));
    }
    return new ResultsFile(path, openSync(path, 'a'), done, lock);
  }

  /** Append one record as one line: a single write, then fsync, so a crash loses at most this line. */
  append(rec: CellRecord): void {
    if (this.done.has(rec.id)) throw new Error(`results: cell ${rec.id} (${rec.label}) is already recorded`);
    this.write(Buffer.from(JSON.stringify(rec) + '\n', 'utf8'));
    this.done.add(rec.id);
  }

  /** Test hook: write the first half of a record, as a crash in the middle of the write would leave it. */
  appendTornForTest(rec: CellRecord): void {
    const b = Buffer.from(JSON.stringify(rec) + '\n', 'utf8');
    this.write(b.subarray(0, b.length >> 1));
  }

  private write(b: Buffer): void {
    if (this.fd === null) throw new Error(`results: ${this.path} is closed`);
    let off = 0;
    while (off < b.length) off += writeSync(this.fd, b, off, b.length - off);
    fsyncSync(this.fd);
  }

  close(): void {
    if (this.fd === null) return;
    closeSync(this.fd);
    this.fd = null;
    rmSync(this.lock, { force: true });
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
};

/**
 * One writer per results file: two runs appending the same file would run cells twice. The lock file holds the
 * writer's pid; a lock whose process is gone (a killed run) is taken over.
 */
function takeLock(path: string, log: (line: string) => void): string {
  const lock = `${path}.lock`;
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(lock, `${process.pid}\n`, { flag: 'wx' });
      return lock;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const pid = Number(readFileSync(lock, 'utf8').trim());
    if (Number.isInteger(pid) && pid > 0 && alive(pid))
      throw new QatError(`${path} is being written by another qat bench (pid ${pid})`, `wait for it to finish, or pass another --results file`);
    log(`${path}: taking over the lock of a run that is gone (pid ${pid})`);
    rmSync(lock, { force: true });
  }
  throw new QatError(`${path}: could not take the lock ${lock}`);
}
