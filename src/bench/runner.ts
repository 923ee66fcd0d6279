// The benchmark runner: runs the cells of a matrix that the results file does not hold yet, in order, and appends
// each finished cell to it. The float model of each (task, seed) is trained once, cached in the results folder by
// its config hash, and shared by every cell that starts from it.
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { loadDataset, type Dataset } from '../data/datasets.js';
import type { Graph } from '../graph/ir.js';
import { loadOnnxFile, saveOnnxFile } from '../onnx/file.js';
import { normalize } from '../onnx/normalize.js';
import { ortEvaluate } from '../pipeline/ort.js';
import { evaluateGraph, trainFloat } from '../pipeline/steps.js';
import { writeFileAtomic } from '../util/fs.js';
import { hashConfig } from '../util/hash.js';
import { buildModel } from '../zoo/models.js';
import { expandCells, floatConfig, matrixHash, type Cell, type Matrix, type Task } from './matrix.js';
import { exportQdqBytes, getMethod } from './methods.js';
import { provenance } from './provenance.js';
import { RESULTS_FORMAT, RESULTS_FORMAT_VERSION, ResultsFile, type CellRecord, type ResultsHeader } from './results.js';
import { packedBytes } from './size.js';

export interface RunOptions {
  /** the results file (JSON lines); created, or resumed */
  results: string;
  log?: (line: string) => void;
  /** per-step training progress (default: one line per cell) */
  verbose?: boolean;
}

export interface RunSummary {
  total: number;
  /** cells the file already held */
  skipped: number;
  /** cells run and recorded now */
  ran: number;
  /** labels of the cells that failed (not recorded) */
  failed: string[];
  results: string;
}

/** Where the float models are cached: beside the results file, shared by every results file in that folder. */
export const floatCacheDir = (results: string) => join(dirname(results), 'float-cache');
const checkpointDir = (results: string) => join(dirname(results), 'checkpoints');

/**
 * Crash injection for tests, QATKIT_BENCH_CRASH: 'after:K' kills the process (SIGKILL) once it has appended K
 * records; 'torn:K' writes half of record K+1 first, as a crash in the middle of the write would.
 */
function crashHook(): { kind: 'after' | 'torn'; k: number } | null {
  const v = process.env.QATKIT_BENCH_CRASH;
  if (!v) return null;
  const m = /^(after|torn):(\d+)$/.exec(v);
  if (!m) throw new Error(`QATKIT_BENCH_CRASH must be after:K or torn:K, got '${v}'`);
  return { kind: m[1] as 'after' | 'torn', k: Number(m[2]) };
}

const pct = (a: number) => `${(100 * a).toFixed(2)}%`;
const secs = (t0: number) => (performance.now() - t0) / 1000;

interface FloatMeta {
  config: ReturnType<typeof floatConfig>;
  trainSec: number;
  trainedAt: string;
  version: string;
  commit: string | null;
}

/** The trained float model of a task and seed: from the cache, or trained now (resuming its checkpoint) and cached. */
async function floatModel(task: Task, seed: number, key: string, train: Dataset, opts: RunOptions, log: (s: string) => void): Promise<{ graph: Graph; meta: FloatMeta; cached: boolean }> {
  const dir = floatCacheDir(opts.results);
  const onnx = join(dir, `${key}.onnx`);
  const metaPath = join(dir, `${key}.json`);
  // the meta file is written last, so its presence means the model is complete
  if (existsSync(metaPath) && existsSync(onnx)) {
    const meta = JSON.parse(readFileSync(metaPath, 'utf8')) as FloatMeta;
    if (hashConfig(meta.config) === key) {
      log(`float ${task.dataset}/${task.model} seed ${seed}: cached ${onnx}`);
      return { graph: normalize(await loadOnnxFile(onnx), { file: onnx }), meta, cached: true };
    }
  }
  mkdirSync(dir, { recursive: true });
  const b = task.float;
  log(`float ${task.dataset}/${task.model} seed ${seed}: training (${b.epochs} epochs, batch ${b.batchSize}, lr ${b.lr}, ${train.n} examples)`);
  const t0 = performance.now();
  const g0 = buildModel(task.model, { inputShape: train.shape, numClasses: train.numClasses, seed });
  const ckpt = join(dir, `${key}.ckpt`);
  const { graph } = await trainFloat(g0, train, { ...b, seed }, { checkpoint: ckpt, progress: opts.verbose, log: opts.verbose ? log : undefined });
  const p = provenance();
  const meta: FloatMeta = { config: floatConfig(task, seed), trainSec: secs(t0), trainedAt: new Date().toISOString(), version: p.version, commit: p.commit };
  await saveOnnxFile(onnx, graph);
  await writeFileAtomic(metaPath, JSON.stringify(meta, null, 2) + '\n');
  rmSync(ckpt, { force: true });
  // every cell measures the model as read back from the cache, whether it was trained now or by an earlier run
  return { graph: normalize(await loadOnnxFile(onnx), { file: onnx }), meta, cached: false };
}

export function resultsHeader(matrix: Matrix, cells: Cell[]): ResultsHeader {
  const p = provenance();
  return {
    type: 'header',
    format: RESULTS_FORMAT,
    formatVersion: RESULTS_FORMAT_VERSION,
    matrixName: matrix.name,
    matrixHash: matrixHash(cells),
    cellIds: cells.map((c) => c.id),
    matrix,
    createdAt: new Date().toISOString(),
    version: p.version,
    commit: p.commit,
  };
}

/** Loads data and float models as the cells need them, keeping only the current ones in memory. */
class CellRunner {
  private data: { key: string; train: Dataset; test: Dataset } | undefined;
  private float: { key: string; graph: Graph; meta: FloatMeta; cached: boolean } | undefined;
  private readonly prov = provenance();

  constructor(private readonly matrix: Matrix, private readonly opts: RunOptions, private readonly log: (s: string) => void) {}

  private inputs(cell: Cell) {
    const t = cell.config.task;
    const key = `${t.dataset}:${t.trainLimit}:${t.testLimit}`;
    if (this.data?.key !== key) {
      this.data = undefined; // let the old arrays go before loading the next
      this.data = {
        key,
        train: loadDataset(t.dataset, { split: 'train', limit: t.trainLimit ?? undefined }),
        test: loadDataset(t.dataset, { split: 'test', limit: t.testLimit ?? undefined }),
      };
    }
    return this.data;
  }

  private async floatFor(cell: Cell, train: Dataset) {
    if (this.float?.key !== cell.floatKey) {
      const t = cell.config.task;
      const task = this.matrix.tasks.find((x) => x.model === t.model && x.dataset === t.dataset)!;
      this.float = undefined;
      this.float = { key: cell.floatKey, ...(await floatModel(task, cell.config.seed, cell.floatKey, train, this.opts, this.log)) };
    }
    return this.float;
  }

  /** Run one cell: the method, the ONNX export, the simulated and the ONNX Runtime evaluation. */
  async run(cell: Cell): Promise<CellRecord> {
    const { seed, method } = cell.config;
    const { train, test } = this.inputs(cell);
    const float = await this.floatFor(cell, train);
    const def = getMethod(method.method)!;
    const ckpt = join(checkpointDir(this.opts.results), `${cell.id}.ckpt`);
    const resumed = existsSync(ckpt);
    const t0 = performance.now();
    const { graph } = await def.run({
      floatGraph: float.graph,
      recipe: cell.config.recipe,
      params: method.params,
      budget: method.budget,
      train,
      seed,
      checkpoint: ckpt,
      progress: !!this.opts.verbose,
      log: this.opts.verbose ? this.log : () => {},
    });
    const methodSec = secs(t0);
    const onnx = (def.export ?? exportQdqBytes)(graph);
    const sim = evaluateGraph(graph, test);
    const ort = await ortEvaluate(onnx, test);
    let same = 0;
    for (let i = 0; i < test.n; i++) if (sim.predictions[i] === ort.predictions[i]) same++;
    // a cell that measures the shared float model itself reports the float training time as its method time
    const isFloat = graph === float.graph;
    return {
      type: 'cell',
      id: cell.id,
      label: cell.label,
      config: cell.config,
      seed,
      accuracySim: sim.accuracy,
      accuracyOrt: ort.accuracy,
      agreement: same / test.n,
      testExamples: test.n,
      onnxBytes: onnx.length,
      packedBytes: packedBytes(graph),
      wallSec: secs(t0),
      methodSec: isFloat ? float.meta.trainSec : methodSec,
      ...(isFloat ? { floatCached: float.cached } : {}),
      ...(resumed ? { resumed: true } : {}),
      backend: tf.getBackend(),
      version: this.prov.version,
      commit: this.prov.commit,
      gitDirty: this.prov.gitDirty,
      finishedAt: new Date().toISOString(),
    };
  }
}

export async function runBench(matrix: Matrix, opts: RunOptions): Promise<RunSummary> {
  const log = opts.log ?? ((s: string) => console.error(s));
  const cells = expandCells(matrix);
  const file = ResultsFile.open(opts.results, resultsHeader(matrix, cells), log);
  const todo = cells.filter((c) => !file.done.has(c.id));
  const skipped = cells.length - todo.length;
  log(`bench ${matrix.name}: ${cells.length} cells; ${skipped} already in ${opts.results}, ${todo.length} to run`);
  const crash = crashHook();
  const runner = new CellRunner(matrix, opts, log);
  const failed: string[] = [];
  let appended = 0;
  try {
    for (const cell of todo) {
      let rec: CellRecord;
      try {
        rec = await runner.run(cell);
      } catch (e) {
        // a failed cell is not recorded, so a rerun tries it again; the other cells still run
        failed.push(cell.label);
        log(`[failed] ${cell.label}: ${(e as Error).message}`);
        if (process.env.QATKIT_DEBUG) log((e as Error).stack ?? '');
        continue;
      }
      if (crash?.kind === 'torn' && appended === crash.k) {
        file.appendTornForTest(rec);
        process.kill(process.pid, 'SIGKILL');
      }
      file.append(rec);
      appended++;
      rmSync(join(checkpointDir(opts.results), `${cell.id}.ckpt`), { force: true });
      log(
        `[${file.done.size}/${cells.length}] ${cell.label}: ORT ${pct(rec.accuracyOrt)}, sim ${pct(rec.accuracySim)}, ` +
          `agree ${pct(rec.agreement)}, ${rec.packedBytes} B packed, ${rec.wallSec.toFixed(1)}s`,
      );
      if (crash?.kind === 'after' && appended === crash.k) process.kill(process.pid, 'SIGKILL');
    }
  } finally {
    file.close();
    try {
      rmdirSync(checkpointDir(opts.results)); // only when empty: a killed cell's checkpoint stays for the rerun
    } catch {
      // not empty, or never made
    }
  }
  if (failed.length) log(`bench ${matrix.name}: ${failed.length} cells failed and were not recorded (a rerun tries them again): ${failed.join('; ')}`);
  return { total: cells.length, skipped, ran: todo.length - failed.length, failed, results: opts.results };
}
