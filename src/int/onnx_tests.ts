// Node-only: runs ONNX backend node tests (model.onnx + test_data_set_*/input_*.pb, output_*.pb) through
// the integer engine. Kept apart from the engine so that the engine never imports node:fs.
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { Graph, TensorData } from '../graph/ir.js';
import { UnsupportedModelError, readOnnx } from '../onnx/model.js';
import { readTensorProto } from '../onnx/tensor.js';
import { createIntSession, unsupportedNodes } from './engine.js';
import './native_gemm.js'; // Node: the native addon's int8 GEMM for the integer engine, when built
import type { Requant } from './registry.js';
import { f16ToF32 } from './tensor.js';

export interface OnnxTestOptions {
  /** run only cases whose folder name matches */
  filter?: string | RegExp | ((name: string) => boolean);
  requant?: Requant;
  /** float outputs: |got - want| <= atol + rtol * |want| (onnx's backend runner: rtol 1e-3, atol 1e-7) */
  rtol?: number;
  atol?: number;
}

export type OnnxTestStatus = 'passed' | 'failed' | 'skipped';

export interface OnnxTestResult {
  name: string;
  status: OnnxTestStatus;
  reason?: string;
}

export interface OnnxTestSummary {
  passed: number;
  failed: number;
  skipped: number;
  results: OnnxTestResult[];
}

const byIndex = (prefix: string) => (a: string, b: string): number =>
  Number(a.slice(prefix.length).replace(/\D.*$/, '')) - Number(b.slice(prefix.length).replace(/\D.*$/, ''));

function listPb(dir: string, prefix: string): string[] {
  return readdirSync(dir).filter((f) => f.startsWith(prefix) && f.endsWith('.pb')).sort(byIndex(prefix));
}

function dataSets(caseDir: string): string[] {
  return readdirSync(caseDir)
    .filter((f) => f.startsWith('test_data_set_') && statSync(join(caseDir, f)).isDirectory())
    .sort(byIndex('test_data_set_'));
}

function isCase(dir: string): boolean {
  return existsSync(join(dir, 'model.onnx')) && dataSets(dir).length > 0;
}

function readPb(path: string): TensorData {
  const b = readFileSync(path);
  return readTensorProto(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), path);
}

function floats(t: TensorData): ArrayLike<number> | undefined {
  if (t.data instanceof Float32Array || t.data instanceof Float64Array) return t.data;
  if (t.dtype === 'float16' && t.data instanceof Uint16Array) return Array.from(t.data, f16ToF32);
  return undefined;
}

/** Why got differs from want, or undefined when it matches (exactly, or within tolerance for floats). */
export function compareTensors(got: TensorData, want: TensorData, rtol: number, atol: number): string | undefined {
  if (got.dtype !== want.dtype) return `dtype ${got.dtype}, expected ${want.dtype}`;
  if (got.dims.length !== want.dims.length || got.dims.some((d, i) => d !== want.dims[i]))
    return `shape [${got.dims.join(', ')}], expected [${want.dims.join(', ')}]`;
  const fg = floats(got);
  const fw = floats(want);
  const g = (fg ?? got.data) as ArrayLike<unknown>;
  const w = (fw ?? want.data) as ArrayLike<unknown>;
  let bad = 0;
  let first = -1;
  for (let i = 0; i < w.length; i++) {
    let ok: boolean;
    if (fg && fw) {
      const a = fg[i];
      const e = fw[i];
      ok = (Number.isNaN(a) && Number.isNaN(e)) || a === e || Math.abs(a - e) <= atol + rtol * Math.abs(e);
    } else ok = g[i] === w[i];
    if (!ok) {
      bad++;
      if (first < 0) first = i;
    }
  }
  if (!bad) return undefined;
  return `${bad} of ${w.length} values differ; first at flat index ${first}: got ${String(g[first])}, expected ${String(w[first])}`;
}

function runCase(caseDir: string, name: string, opts: OnnxTestOptions): OnnxTestResult {
  let g: Graph;
  try {
    const b = readFileSync(join(caseDir, 'model.onnx'));
    g = readOnnx(new Uint8Array(b.buffer, b.byteOffset, b.byteLength), join(caseDir, 'model.onnx'));
  } catch (e) {
    // a model using what the reader does not support (sequences, optionals, bfloat16, no ai.onnx opset)
    // is out of scope like an unregistered op; any other read error is a failure
    const msg = (e as Error).message;
    const unsupported = e instanceof UnsupportedModelError || /not supported|no opset for the default ONNX domain/.test(msg);
    return { name, status: unsupported ? 'skipped' : 'failed', reason: unsupported ? `model not loadable: ${msg}` : msg };
  }
  const missing = [...new Set(unsupportedNodes(g).map((n) => (n.domain ? `${n.domain}::${n.op}` : n.op)))];
  if (missing.length) return { name, status: 'skipped', reason: `no integer kernel for ${missing.join(', ')}` };
  const rtol = opts.rtol ?? 1e-3;
  const atol = opts.atol ?? 1e-7;
  try {
    const session = createIntSession(g, { requant: opts.requant });
    for (const ds of dataSets(caseDir)) {
      const dsDir = join(caseDir, ds);
      const feeds: Record<string, TensorData> = {};
      listPb(dsDir, 'input_').forEach((f, i) => {
        const inputName = session.inputNames[i];
        if (inputName === undefined) throw new Error(`${ds}/${f}: the graph has only ${session.inputNames.length} inputs`);
        feeds[inputName] = readPb(join(dsDir, f));
      });
      const outs = session.run(feeds);
      const wantFiles = listPb(dsDir, 'output_');
      for (let i = 0; i < wantFiles.length; i++) {
        const outName = session.outputNames[i];
        if (outName === undefined) throw new Error(`${ds}/${wantFiles[i]}: the graph has only ${session.outputNames.length} outputs`);
        const why = compareTensors(outs[outName], readPb(join(dsDir, wantFiles[i])), rtol, atol);
        if (why) return { name, status: 'failed', reason: `${ds} output '${outName}': ${why}` };
      }
    }
    return { name, status: 'passed' };
  } catch (e) {
    return { name, status: 'failed', reason: (e as Error).message };
  }
}

function matcher(filter: OnnxTestOptions['filter']): (name: string) => boolean {
  if (filter === undefined) return () => true;
  if (typeof filter === 'function') return filter;
  if (typeof filter === 'string') return (n) => n.includes(filter);
  return (n) => filter.test(n);
}

/**
 * Run every ONNX node test under dir (or dir itself when it is one test case). A case whose ops are not
 * all registered is skipped, naming them; a case that throws or mismatches fails with the reason.
 */
export function runOnnxNodeTests(dir: string, opts: OnnxTestOptions = {}): OnnxTestSummary {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new Error(`${dir}: not a directory`);
  const keep = matcher(opts.filter);
  const cases: Array<[string, string]> = isCase(dir)
    ? [[dir, dir.replace(/\/+$/, '').split('/').pop() ?? dir]]
    : readdirSync(dir)
        .sort()
        .map((n): [string, string] => [join(dir, n), n])
        .filter(([p, n]) => keep(n) && statSync(p).isDirectory() && isCase(p));
  const results = cases.map(([p, n]) => runCase(p, n, opts));
  const count = (s: OnnxTestStatus): number => results.filter((r) => r.status === s).length;
  return { passed: count('passed'), failed: count('failed'), skipped: count('skipped'), results };
}

/** The summary line: `N passed, M failed, K skipped`. */
export function summaryLine(s: OnnxTestSummary): string {
  return `${s.passed} passed, ${s.failed} failed, ${s.skipped} skipped`;
}

/** Report lines: each failure (and each skip when verbose) with its reason, then the summary line. */
export function formatOnnxTestReport(s: OnnxTestSummary, opts: { verbose?: boolean } = {}): string {
  const lines: string[] = [];
  for (const r of s.results) {
    if (r.status === 'failed') lines.push(`FAIL ${r.name}: ${r.reason}`);
    else if (opts.verbose) lines.push(`${r.status === 'passed' ? 'ok  ' : 'skip'} ${r.name}${r.reason ? `: ${r.reason}` : ''}`);
  }
  lines.push(summaryLine(s));
  return lines.join('\n');
}
