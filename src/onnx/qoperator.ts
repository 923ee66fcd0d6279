// QOperator export: a prepared graph as an integer ONNX model (QLinearConv, com.microsoft QGemm / QLinearAdd /
// QLinearGlobalAveragePool, ...), what `qat export --format qoperator` writes. The lowering itself is
// src/int/convert.ts, shared with qatkit's integer engine; here is what is ONNX-only: the INT4 storage variant and
// the size accounting of every export format.
import { type Graph, type Node, QATKIT_DOMAIN, cloneGraph, elementCount } from '../graph/ir.js';
import { type ConvertOptions, convert } from '../int/convert.js';
import { bitsNeeded, writePacked } from '../int/packed.js';
import { writeOnnx } from './model.js';
import { toQdq } from './qdq.js';

/** Ops whose input i is a weight that may be stored as INT4 (QLinearConv / QGemm / QLinearMatMul B, *Integer B). */
const WEIGHT_INPUT: Record<string, number> = { QLinearConv: 3, QGemm: 3, QLinearMatMul: 3, ConvInteger: 1, MatMulInteger: 1 };

/** Opset whose Cast (and initializers) take INT4 / UINT4. */
export const INT4_OPSET = 21;

export interface QOperatorOptions extends ConvertOptions {
  /**
   * Store weights whose values fit 4 bits as ONNX INT4 / UINT4 initializers (two per byte) with a Cast to the 8-bit
   * container in front of the op, at opset 21: QLinearConv and QGemm take no INT4 themselves. ONNX Runtime 1.30 runs
   * this (and folds the Casts at load); qatkit's integer engine has no Cast kernel: it runs the packed format instead.
   */
  int4Weights?: boolean;
}

/** Convert a prepared graph to an ONNX QOperator graph; write it with writeOnnx. Does not change `prepared`. */
export function toQOperator(prepared: Graph, opts: QOperatorOptions = {}): Graph {
  const g = convert(prepared, opts);
  return opts.int4Weights ? withInt4Weights(g) : g;
}

/** Weights that fit 4 bits become INT4 / UINT4 initializers read through a Cast (opset >= 21). */
function withInt4Weights(g: Graph): Graph {
  const casts: Node[] = [];
  const done = new Set<string>();
  for (const n of g.nodes) {
    const i = WEIGHT_INPUT[n.op];
    const name = i === undefined ? undefined : n.inputs[i];
    const t = name ? g.initializers.get(name) : undefined;
    if (!name || !t || done.has(name) || (t.dtype !== 'int8' && t.dtype !== 'uint8')) continue;
    const signed = t.dtype === 'int8';
    if (bitsNeeded(t.data as Int8Array | Uint8Array, signed) > 4) continue;
    done.add(name);
    const packed = `${name}_4bit`;
    g.initializers.set(packed, { dtype: signed ? 'int4' : 'uint4', dims: [...t.dims], data: t.data });
    g.initializers.delete(name);
    casts.push({ name: `${name}/Cast`, op: 'Cast', inputs: [packed], outputs: [name], attrs: { to: { type: 'int', value: signed ? 3 : 2 } } });
  }
  g.nodes = [...casts, ...g.nodes];
  if (casts.length) g.opsets[''] = Math.max(INT4_OPSET, g.opsets[''] ?? 0);
  return g;
}

/** The prepared graph with its FakeQuant nodes bypassed: the float model it simulates (BatchNorm folded). */
export function stripFakeQuant(prepared: Graph): Graph {
  const g = cloneGraph(prepared);
  const alias = new Map<string, string>();
  const resolve = (v: string): string => alias.get(v) ?? v;
  g.nodes = g.nodes.filter((n) => {
    if (n.op !== 'FakeQuant' || n.domain !== QATKIT_DOMAIN) return true;
    alias.set(n.outputs[0], resolve(n.inputs[0]));
    return false;
  });
  for (const n of g.nodes) n.inputs = n.inputs.map(resolve);
  for (const o of g.outputs) o.name = resolve(o.name);
  const used = new Set(g.nodes.flatMap((n) => n.inputs));
  for (const k of [...g.initializers.keys()]) if (!used.has(k)) g.initializers.delete(k);
  delete g.opsets[QATKIT_DOMAIN];
  if (g.meta) {
    delete g.meta['qatkit.recipe'];
    delete g.meta['qatkit.mode'];
  }
  return g;
}

/** Bytes of one model in each export format. */
export interface ModelSizes {
  /** the float ONNX model given, else the prepared graph without its fake-quant (BatchNorm folded) */
  float: number;
  /** toQdq: int8-container weights + QuantizeLinear/DequantizeLinear */
  qdq: number;
  /** toQOperator: int8-container weights, integer ops */
  qoperator: number;
  /** toQOperator with int4Weights: weights that fit 4 bits as ONNX INT4 (opset 21) */
  qoperatorInt4: number;
  /** writePacked(convert(...)): 2/4/8-bit packed integers, qatkit's own format */
  packed: number;
  /** number of weight elements (the integer tensors packed below 8 bits or kept at 8) */
  weightElements: number;
}

/** Sizes of every export format of one prepared graph (all encoded in memory). */
export function modelSizes(prepared: Graph, float?: Graph): ModelSizes {
  const converted = convert(prepared);
  let weightElements = 0;
  for (const n of converted.nodes) {
    const i = WEIGHT_INPUT[n.op];
    const t = i === undefined ? undefined : converted.initializers.get(n.inputs[i]);
    if (t) weightElements += elementCount(t.dims);
  }
  return {
    float: writeOnnx(float ?? stripFakeQuant(prepared)).length,
    qdq: writeOnnx(toQdq(prepared)).length,
    qoperator: writeOnnx(converted).length,
    qoperatorInt4: writeOnnx(toQOperator(prepared, { int4Weights: true })).length,
    packed: writePacked(converted).length,
    weightElements,
  };
}

/** A small table: format, bytes, and the fraction of the float model's size. */
export function formatModelSizes(s: ModelSizes, title = 'model sizes'): string {
  const rows: Array<[string, number]> = [
    ['float ONNX', s.float], ['QDQ ONNX', s.qdq], ['QOperator ONNX', s.qoperator], ['QOperator ONNX, INT4 weights', s.qoperatorInt4],
    ['packed (.qatk)', s.packed],
  ];
  const lines = [`${title} (${s.weightElements} weight elements)`, `${'format'.padEnd(30)} ${'bytes'.padStart(10)}  of float`];
  for (const [k, v] of rows) lines.push(`${k.padEnd(30)} ${String(v).padStart(10)}  1/${(s.float / v).toFixed(2)}`);
  return lines.join('\n');
}
