// convert(prepared): a fake-quantized graph (FakeQuant nodes, BatchNorm folded: PTQ output or the folded QAT
// output) to a true integer graph in ONNX QOperator form, which this engine and ONNX Runtime both run:
//
//   QuantizeLinear at the float input(s)
//   Conv            -> QLinearConv, int8 per-channel weights, int32 bias at scale s_x * s_w[c]
//   Gemm (+bias)    -> com.microsoft QGemm (same, per column); MatMul -> QLinearMatMul
//   residual Add    -> com.microsoft QLinearAdd; GlobalAveragePool -> com.microsoft QLinearGlobalAveragePool
//   MaxPool, Flatten, Reshape, ... directly on the 8-bit tensor (they keep its grid)
//   a ReLU before an output quantizer folds into the output clamp [max(qmin, zp), qmax]; so does a grid narrower
//     than its 8-bit container (4 bits: [0, 15] in uint8): a Clip on the 8-bit tensor, which ONNX Runtime runs as
//     such and this engine folds into the requantization (engine.ts clampFusions)
//   a weighted op with no output quantizer (the classifier) -> ConvInteger / MatMulInteger + Add (int32 bias) +
//     DequantizeLinear (per-channel scale s_x * s_w[c]): the float logits come from exact int32 accumulators
//   DequantizeLinear before each float graph output
//
// Requantization: this engine follows the graph meta 'qatkit.requant', here 'fixedpoint-single' by default: the
// int32 multiplier in [0.5, 1) and shift of gemmlowp (quantizeMultiplier), the product rounded once (TFLite's
// single rounding). ONNX Runtime ignores the meta and requantizes in float32. The two agree except where
// acc * M lies within float32 rounding error of a .5 tie. gemmlowp's double rounding ('fixedpoint') is off by one
// far more often: up to 6 % of a conv layer's outputs on MNIST LeNet (test/int_parity.test.ts prints the counts).
//
// Imports fakeQuantParams / quantizeWeight from ../onnx/qdq.js so that QDQ and QOperator exports hold the very
// same integer weights (both browser-safe, no tfjs).
import {
  type DType, type Graph, type Node, type TensorData, type ValueInfo, GraphError, QATKIT_DOMAIN, allNames, attrFloat, attrInt,
  cloneGraph, elementCount, int, topoSort, uniqueName,
} from '../graph/ir.js';
import { fakeQuantParams, quantizeWeight, type FakeQuantParams } from '../onnx/qdq.js';
import type { Requant } from './registry.js';

export const MS_DOMAIN = 'com.microsoft';

export interface ConvertOptions {
  /** requantization this engine applies to the result (graph meta 'qatkit.requant'); default 'fixedpoint-single' */
  requant?: Requant;
}

/** An integer grid: real = (q - zp) * scale, q in [qmin, qmax], stored in an 8-bit container. */
interface Grid {
  scale: number;
  zp: number;
  qmin: number;
  qmax: number;
  dtype: 'uint8' | 'int8';
}

/** A weight quantized per its FakeQuant: integers, per-channel (or per-tensor) scales and zero points. */
interface QWeight {
  fq: Node;
  p: FakeQuantParams;
  dims: number[];
  q: Int8Array | Uint8Array;
  dtype: 'uint8' | 'int8';
}

/**
 * How the converted graph holds a value of the source graph:
 * float: as a float tensor; q: as an integer tensor on a grid; pending: an integer op (QLinearConv, QGemm,
 * QLinearAdd, ...) not emitted yet, because its output grid is that of the FakeQuant that follows (and a ReLU
 * in between folds into its clamp).
 */
type Rep =
  | { kind: 'float'; name: string }
  | { kind: 'q'; name: string; grid: Grid }
  | { kind: 'pending'; op: Pending; relu: boolean };

interface Pending {
  node: Node;
  /** emit the op requantized to `grid`, writing `out` (clamped to [lo, grid.qmax]) */
  toGrid(grid: Grid, lo: number, out: string): void;
  /** emit the op ending in a float tensor `out` (no output quantizer); relu applied after dequantization */
  toFloat(out: string, relu: boolean): void;
}

const containerOf = (signed: boolean): Grid['dtype'] => (signed ? 'int8' : 'uint8');
const containerRange = (d: Grid['dtype']): [number, number] => (d === 'int8' ? [-128, 127] : [0, 255]);
const sameGrid = (a: Grid, b: Grid): boolean =>
  Math.fround(a.scale) === Math.fround(b.scale) && a.zp === b.zp && a.qmin === b.qmin && a.qmax === b.qmax && a.dtype === b.dtype;

/** The float32 values a quantized weight stands for: (q - zp) * scale, per channel along its axis. */
function dequantizeWeight(w: QWeight): TensorData {
  const { p } = w;
  const axis = p.axis === undefined ? 0 : p.axis < 0 ? p.axis + w.dims.length : p.axis;
  const inner = p.axis === undefined ? elementCount(w.dims) : elementCount(w.dims.slice(axis + 1));
  const C = p.scale.length;
  return {
    dtype: 'float32', dims: [...w.dims],
    data: Float32Array.from(w.q, (q, i) => {
      const c = Math.floor(i / inner) % C;
      return (q - p.zeroPoint[c]) * p.scale[c];
    }),
  };
}

const isFakeQuant = (n: Node): boolean => n.op === 'FakeQuant' && n.domain === QATKIT_DOMAIN;

const WEIGHTED = new Set(['Conv', 'Gemm', 'MatMul']);

/** Ops that only move or select values: run on the integer tensor, output on the input's grid. */
const GRID_PRESERVING = new Set(['MaxPool', 'Flatten', 'Reshape', 'Identity', 'Transpose', 'Squeeze', 'Unsqueeze']);

function intArray(dtype: DType, vals: ArrayLike<number>): Int8Array | Uint8Array | Int32Array {
  if (dtype === 'int8') return Int8Array.from(vals);
  if (dtype === 'uint8') return Uint8Array.from(vals);
  return Int32Array.from(vals);
}

/** Round half to even (ONNX, MLAS), exact for |v| < 2^51. */
const rne = (v: number): number => v + 6755399441055744 - 6755399441055744;

/**
 * A float bias as the int32 the integer op adds to its accumulator: rne(b * factor / (s_x * s_w[c])), saturated.
 * factor is beta / alpha for Gemm (1 otherwise). Its rounding (up to half of s_x * s_w) is the one place where the
 * integer model departs from the fake-quant simulation, which adds the float bias: see withIntegerBiases.
 */
function biasToInt32(g: Graph, name: string, channels: number, sx: number, sw: Float32Array, factor: number, n: Node): Int32Array {
  const b = g.initializers.get(name);
  if (!b || b.dtype !== 'float32') throw new GraphError(`bias '${name}' must be a float32 initializer`, n);
  const bv = b.data as Float32Array;
  if (bv.length !== channels && bv.length !== 1) throw new GraphError(`bias '${name}' has ${bv.length} values, expected ${channels}`, n);
  const out = new Int32Array(channels);
  for (let c = 0; c < channels; c++) {
    const v = rne((bv[bv.length === 1 ? 0 : c] * factor) / (sx * sw[sw.length === 1 ? 0 : c]));
    out[c] = Math.max(-2147483648, Math.min(2147483647, v));
  }
  return out;
}

/**
 * The prepared graph with each Conv / Gemm bias replaced by the value its int32 form stands for
 * (b_int * s_x * s_w[c] * alpha / beta). The fake-quant simulation of the result computes what the converted integer
 * model does, up to float32 accumulation order: use it to tell bias rounding apart from other differences, or as
 * the graph to evaluate when the simulation must match deployment exactly. Does not change `prepared`.
 */
export function withIntegerBiases(prepared: Graph): Graph {
  const g = cloneGraph(prepared);
  const fq = new Map(g.nodes.filter(isFakeQuant).map((n) => [n.outputs[0], n]));
  for (const n of g.nodes) {
    if ((n.op !== 'Conv' && n.op !== 'Gemm') || (n.domain ?? '') !== '' || !n.inputs[2]) continue;
    const xq = fq.get(n.inputs[0]);
    const wq = fq.get(n.inputs[1]);
    if (!xq || !wq || g.initializers.has(xq.inputs[0])) continue; // not quantized: convert rejects it anyway
    const px = fakeQuantParams(g, xq);
    const pw = fakeQuantParams(g, wq);
    const alpha = n.op === 'Gemm' ? attrFloat(n, 'alpha', 1) : 1;
    const beta = n.op === 'Gemm' ? attrFloat(n, 'beta', 1) : 1;
    const b = g.initializers.get(n.inputs[2])!;
    const channels = elementCount(b.dims);
    const q = biasToInt32(g, n.inputs[2], channels, px.scale[0], pw.scale, beta / alpha, n);
    const name = uniqueName(g, `${n.inputs[2]}_int32_grid`);
    g.initializers.set(name, {
      dtype: 'float32', dims: [...b.dims],
      data: Float32Array.from(q, (v, c) => (v * px.scale[0] * pw.scale[pw.scale.length === 1 ? 0 : c] * alpha) / beta),
    });
    n.inputs[2] = name;
  }
  return g;
}

/**
 * Convert a prepared graph to an integer QOperator graph (new graph; `src` is not changed). Throws a GraphError
 * naming the node and op for anything it cannot lower (a per-channel activation grid, a residual Add with no output
 * quantizer, a grid change with no integer op between, a quantized input to an op it does not know).
 */
export function convert(src: Graph, opts: ConvertOptions = {}): Graph {
  const taken = allNames(src);
  const fresh = (base: string): string => uniqueName(src, base, taken);
  const g: Graph = {
    name: src.name,
    nodes: [],
    inputs: src.inputs.filter((i) => !src.initializers.has(i.name)).map((v) => ({ ...v, shape: v.shape ? [...v.shape] : undefined })),
    outputs: src.outputs.map((v) => ({ ...v, shape: v.shape ? [...v.shape] : undefined })),
    initializers: new Map(),
    opsets: {},
    meta: { ...(src.meta ?? {}), 'qatkit.requant': opts.requant ?? 'fixedpoint-single' },
  };
  const outputNames = new Set(src.outputs.map((o) => o.name));
  const reps = new Map<string, Rep>();
  for (const i of g.inputs) reps.set(i.name, { kind: 'float', name: i.name });
  const weights = new Map<string, QWeight>();

  // node names are their own namespace: a lowered node keeps its source node's name where it can
  const nodeNames = new Set<string>();
  const emit = (op: string, base: string, inputs: string[], outputs: string[], attrs: Node['attrs'] = {}, domain?: string): void => {
    let name = base;
    for (let k = 1; nodeNames.has(name); k++) name = `${base}_${k}`;
    nodeNames.add(name);
    const n: Node = { name, op, inputs, outputs, attrs };
    if (domain) n.domain = domain;
    g.nodes.push(n);
  };
  const constant = (base: string, t: TensorData): string => {
    const name = fresh(base);
    g.initializers.set(name, t);
    return name;
  };
  // small constants (scales, zero points, clip bounds) are shared by value: one initializer, named at first use
  const shared = new Map<string, string>();
  const small = (base: string, t: TensorData): string => {
    if (elementCount(t.dims) > 256) return constant(base, t);
    const key = `${t.dtype}|${t.dims.join(',')}|${Array.from(t.data as ArrayLike<number>).join(',')}`;
    let name = shared.get(key);
    if (!name) shared.set(key, (name = constant(base, t)));
    return name;
  };
  const f32 = (base: string, vals: ArrayLike<number>, dims: number[]): string =>
    small(base, { dtype: 'float32', dims, data: Float32Array.from(vals) });
  const ints = (base: string, dtype: DType, vals: ArrayLike<number>, dims: number[]): string =>
    small(base, { dtype, dims, data: intArray(dtype, vals) });
  /** scale and zero point initializers of a per-tensor grid: the scale named after the tensor, the zero point by value */
  const gridParams = (tensor: string, gr: Grid): [string, string] => [
    f32(`${tensor}_scale`, [gr.scale], []),
    ints(`${gr.dtype}_${gr.zp}`, gr.dtype, [gr.zp], []),
  ];
  /** the name an integer tensor gets: the source name unless that is a graph output (which stays float) */
  const intName = (name: string): string => (outputNames.has(name) ? fresh(`${name}_quantized`) : name);
  /** copy an initializer of the source graph that an emitted node reads */
  const useInit = (name: string): string => {
    const t = src.initializers.get(name);
    if (t && !g.initializers.has(name)) g.initializers.set(name, t);
    return name;
  };

  /** `raw` clamped to [lo, hi] as a tensor named `out`, or `raw` itself when that is no narrower than its container. */
  const clampTo = (raw: string, out: string, dtype: Grid['dtype'], lo: number, hi: number, base: string): string => {
    const [cmin, cmax] = containerRange(dtype);
    if (lo <= cmin && hi >= cmax) return raw;
    const [a, b] = [Math.max(lo, cmin), Math.min(hi, cmax)];
    emit('Clip', `${base}/clip`, [raw, ints(`${dtype}_${a}`, dtype, [a], []), ints(`${dtype}_${b}`, dtype, [b], [])], [out]);
    return out;
  };
  /** emit an op producing an 8-bit tensor that must end up clamped to [lo, hi] under the name `out` */
  const emitClamped = (
    op: string, base: string, inputs: string[], out: string, dtype: Grid['dtype'], lo: number, hi: number,
    attrs: Node['attrs'] = {}, domain?: string,
  ): void => {
    const [cmin, cmax] = containerRange(dtype);
    const needsClip = lo > cmin || hi < cmax;
    const raw = needsClip ? fresh(`${out}_unclamped`) : out;
    emit(op, base, inputs, [raw], attrs, domain);
    if (needsClip) clampTo(raw, out, dtype, lo, hi, base);
  };

  const repOf = (name: string, n: Node): Rep => {
    const r = reps.get(name);
    if (r) return r;
    if (src.initializers.has(name)) return { kind: 'float', name: useInit(name) };
    throw new GraphError(`input '${name}' is not produced by any converted node`, n);
  };
  const quantizedInput = (name: string, n: Node, what: string): { name: string; grid: Grid } => {
    const r = repOf(name, n);
    if (r.kind !== 'q') throw new GraphError(`${what} '${name}' is not quantized (no FakeQuant before it), so it has no integer form`, n);
    return r;
  };
  /** A float value of a rep: dequantize an integer tensor, finish a pending op in float. */
  const toFloat = (r: Rep): string => {
    if (r.kind === 'float') return r.name;
    if (r.kind === 'q') {
      const out = fresh(`${r.name}_dequantized`);
      emit('DequantizeLinear', `${r.name}/DequantizeLinear`, [r.name, ...gridParams(r.name, r.grid)], [out]);
      return out;
    }
    const out = fresh(`${r.op.node.outputs[0]}_float`);
    r.op.toFloat(out, r.relu);
    return out;
  };

  const weightOf = (name: string, n: Node): QWeight | undefined => {
    const w = weights.get(name);
    if (!w && src.initializers.has(name))
      throw new GraphError(`weight '${name}' has no FakeQuant; convert needs a prepared graph (prepare() or ptq())`, n);
    return w;
  };

  /** A float bias quantized to int32 at scale s_x * s_w[c] (times beta / alpha for Gemm). */
  const quantizeBias = (name: string | undefined, channels: number, sx: number, w: QWeight, factor: number, n: Node): Int32Array | undefined =>
    name ? biasToInt32(src, name, channels, sx, w.p.scale, factor, n) : undefined;

  /** Per-channel (or per-tensor) weight scale and zero point initializers. */
  const weightParams = (base: string, w: QWeight): [string, string] => {
    const perChannel = w.p.axis !== undefined;
    const dims = perChannel ? [w.p.scale.length] : [];
    const zpName = w.p.zeroPoint.every((z) => z === 0) ? `${w.dtype}_zeros_${dims.join('x') || 'scalar'}` : `${base}_zero_point`;
    return [f32(`${base}_scale`, w.p.scale, dims), ints(zpName, w.dtype, w.p.zeroPoint, dims)];
  };

  /** Scale of the int32 accumulator per output channel: float32(alpha * s_x * s_w[c]). */
  const accScale = (sx: number, w: QWeight, channels: number, alpha = 1): Float32Array =>
    Float32Array.from({ length: channels }, (_, c) => alpha * sx * w.p.scale[w.p.scale.length === 1 ? 0 : c]);

  /** The float tail of a weighted op: int32 accumulator (+ bias) -> DequantizeLinear (-> Relu). */
  const accToFloat = (acc: string, bias: string | undefined, scale: Float32Array, axis: number, out: string, relu: boolean, base: string): void => {
    let a = acc;
    if (bias) {
      a = fresh(`${acc}_biased`);
      emit('Add', `${base}/bias`, [acc, bias], [a]);
    }
    const y = relu ? fresh(`${out}_prerelu`) : out;
    emit('DequantizeLinear', `${base}/DequantizeLinear`, [a, f32(`${base}_acc_scale`, scale, [scale.length])], [y], { axis: int(axis) });
    if (relu) emit('Relu', `${base}/relu`, [y], [out]);
  };

  // ---- lowering of each source op ------------------------------------------------------------------------------

  const lowerConv = (n: Node, w: QWeight): Pending => {
    const x = quantizedInput(n.inputs[0], n, 'input');
    const OC = w.dims[0];
    const bias = quantizeBias(n.inputs[2], OC, x.grid.scale, w, 1, n);
    const attrs = { ...n.attrs };
    return {
      node: n,
      toGrid(grid, lo, out) {
        const inputs = [x.name, ...gridParams(x.name, x.grid), constant(`${n.name}.weight_quantized`, { dtype: w.dtype, dims: w.dims, data: w.q }),
          ...weightParams(`${n.name}.weight`, w), ...gridParams(out, grid)];
        if (bias) inputs.push(ints(`${n.name}.bias_quantized`, 'int32', bias, [OC]));
        emitClamped('QLinearConv', n.name, inputs, out, grid.dtype, lo, grid.qmax, attrs);
      },
      toFloat(out, relu) {
        const acc = fresh(`${n.outputs[0]}_int32`);
        const wzp = w.p.zeroPoint.some((z) => z !== 0) ? [weightParams(`${n.name}.weight`, w)[1]] : [];
        emit('ConvInteger', n.name, [x.name, constant(`${n.name}.weight_quantized`, { dtype: w.dtype, dims: w.dims, data: w.q }),
          gridParams(x.name, x.grid)[1], ...wzp], [acc], attrs);
        const b = bias ? ints(`${n.name}.bias_quantized`, 'int32', bias, [1, OC, ...w.dims.slice(2).map(() => 1)]) : undefined;
        accToFloat(acc, b, accScale(x.grid.scale, w, OC), 1, out, relu, n.name);
      },
    };
  };

  /** Gemm (transB 0/1, alpha, beta) or MatMul with a quantized weight, optionally with a bias (Gemm C or a folded Add). */
  const lowerGemm = (n: Node, w: QWeight, biasName: string | undefined, gemm: { transB: boolean; alpha: number; beta: number }): Pending => {
    const a = quantizedInput(n.inputs[0], n, 'input');
    if (w.dims.length !== 2) throw new GraphError(`weight must be 2-D, got [${w.dims.join(', ')}]`, n);
    const N = gemm.transB ? w.dims[0] : w.dims[1];
    const axis = gemm.transB ? 0 : 1;
    if (w.p.axis !== undefined && (w.p.axis + 2) % 2 !== axis)
      throw new GraphError(`weight quantized along axis ${w.p.axis}, but its output channels are on axis ${axis}`, n);
    const bias = quantizeBias(biasName, N, a.grid.scale, w, gemm.beta / gemm.alpha, n);
    /** the weight as [K, N] for MatMulInteger / QLinearMatMul */
    const kn = (): TensorData => {
      if (!gemm.transB) return { dtype: w.dtype, dims: w.dims, data: w.q };
      const [Nn, K] = w.dims;
      const t = w.dtype === 'int8' ? new Int8Array(K * Nn) : new Uint8Array(K * Nn);
      for (let i = 0; i < Nn; i++) for (let k = 0; k < K; k++) t[k * Nn + i] = w.q[i * K + k];
      return { dtype: w.dtype, dims: [K, Nn], data: t };
    };
    return {
      node: n,
      toGrid(grid, lo, out) {
        const aParams = gridParams(a.name, a.grid);
        if (!bias && gemm.alpha === 1 && n.op === 'MatMul') {
          emitClamped('QLinearMatMul', n.name, [a.name, ...aParams, constant(`${n.name}.weight_quantized`, kn()), ...weightParams(`${n.name}.weight`, w),
            ...gridParams(out, grid)], out, grid.dtype, lo, grid.qmax);
          return;
        }
        const attrs: Node['attrs'] = gemm.transB ? { transB: int(1) } : {};
        if (gemm.alpha !== 1) attrs.alpha = { type: 'float', value: gemm.alpha };
        const cIn = bias ? ints(`${n.name}.bias_quantized`, 'int32', bias, [N]) : '';
        emitClamped('QGemm', n.name, [a.name, ...aParams, constant(`${n.name}.weight_quantized`, { dtype: w.dtype, dims: w.dims, data: w.q }),
          ...weightParams(`${n.name}.weight`, w), cIn, ...gridParams(out, grid)], out, grid.dtype, lo, grid.qmax, attrs, MS_DOMAIN);
      },
      toFloat(out, relu) {
        const acc = fresh(`${n.outputs[0]}_int32`);
        const wzp = w.p.zeroPoint.some((z) => z !== 0) ? [weightParams(`${n.name}.weight`, w)[1]] : [];
        emit('MatMulInteger', n.name, [a.name, constant(`${n.name}.weight_quantized`, kn()), gridParams(a.name, a.grid)[1], ...wzp], [acc]);
        const b = bias ? ints(`${n.name}.bias_quantized`, 'int32', bias, [N]) : undefined;
        accToFloat(acc, b, accScale(a.grid.scale, w, N, gemm.alpha), -1, out, relu, n.name);
      },
    };
  };

  /** MatMul of two quantized activations (per-tensor grids): QLinearMatMul, or MatMulInteger + DequantizeLinear. */
  const lowerMatMul2 = (n: Node): Pending => {
    const a = quantizedInput(n.inputs[0], n, 'input A');
    const b = quantizedInput(n.inputs[1], n, 'input B');
    return {
      node: n,
      toGrid(grid, lo, out) {
        emitClamped('QLinearMatMul', n.name, [a.name, ...gridParams(a.name, a.grid), b.name, ...gridParams(b.name, b.grid),
          ...gridParams(out, grid)], out, grid.dtype, lo, grid.qmax);
      },
      toFloat(out, relu) {
        const acc = fresh(`${n.outputs[0]}_int32`);
        emit('MatMulInteger', n.name, [a.name, b.name, gridParams(a.name, a.grid)[1], gridParams(b.name, b.grid)[1]], [acc]);
        const y = relu ? fresh(`${out}_prerelu`) : out;
        emit('DequantizeLinear', `${n.name}/DequantizeLinear`, [acc, f32(`${n.name}_acc_scale`, [a.grid.scale * b.grid.scale], [])], [y]);
        if (relu) emit('Relu', `${n.name}/relu`, [y], [out]);
      },
    };
  };

  const noFloatTail = (n: Node, what: string) => (): never => {
    throw new GraphError(`${what} has no output quantizer; put a FakeQuant after it (prepare() does unless it is a graph output)`, n);
  };

  const lowerAdd = (n: Node): Pending => {
    const a = quantizedInput(n.inputs[0], n, 'input A');
    const b = quantizedInput(n.inputs[1], n, 'input B');
    if (a.grid.dtype !== b.grid.dtype) throw new GraphError(`inputs are ${a.grid.dtype} and ${b.grid.dtype}; QLinearAdd needs one type`, n);
    return {
      node: n,
      toGrid(grid, lo, out) {
        if (grid.dtype !== a.grid.dtype) throw new GraphError(`output grid is ${grid.dtype}, inputs ${a.grid.dtype}; QLinearAdd keeps the type`, n);
        emitClamped('QLinearAdd', n.name, [a.name, ...gridParams(a.name, a.grid), b.name, ...gridParams(b.name, b.grid),
          ...gridParams(out, grid)], out, grid.dtype, lo, grid.qmax, {}, MS_DOMAIN);
      },
      toFloat: noFloatTail(n, 'residual Add'),
    };
  };

  const lowerGap = (n: Node): Pending => {
    const x = quantizedInput(n.inputs[0], n, 'input');
    return {
      node: n,
      toGrid(grid, lo, out) {
        if (grid.dtype !== x.grid.dtype) throw new GraphError(`output grid is ${grid.dtype}, input ${x.grid.dtype}; QLinearGlobalAveragePool keeps the type`, n);
        emitClamped('QLinearGlobalAveragePool', n.name, [x.name, ...gridParams(x.name, x.grid), ...gridParams(out, grid)],
          out, grid.dtype, lo, grid.qmax, { channels_last: int(0) }, MS_DOMAIN);
      },
      toFloat: noFloatTail(n, 'GlobalAveragePool'),
    };
  };

  /** An activation FakeQuant: the tensor enters (or stays on) its grid. */
  const lowerActivationFq = (n: Node, p: FakeQuantParams): void => {
    if (p.axis !== undefined) throw new GraphError('per-channel activation grids have no QOperator form', n);
    // ORT trap, where the activation and weight types are chosen (here and in quantizeWeights): u8 activations
    // times s8 weights can saturate the int16 pair sums of ONNX Runtime's AVX2 u8s8 kernels (vpmaddubsw) on x86
    // CPUs without VNNI, for 8-bit weights and activations; with AVX-512 VNNI / AVX-VNNI (this machine) ORT is exact.
    const grid: Grid = { scale: p.scale[0], zp: p.zeroPoint[0], qmin: p.qmin, qmax: p.qmax, dtype: containerOf(p.signed) };
    const out = n.outputs[0];
    const r = repOf(n.inputs[0], n);
    if (r.kind === 'pending') {
      const name = intName(out);
      r.op.toGrid(grid, r.relu ? Math.max(grid.qmin, grid.zp) : grid.qmin, name);
      reps.set(out, { kind: 'q', name, grid });
      return;
    }
    if (r.kind === 'q') {
      const g0 = r.grid;
      if (sameGrid(g0, grid)) {
        reps.set(out, r);
        return;
      }
      if (Math.fround(g0.scale) === Math.fround(grid.scale) && g0.zp === grid.zp && g0.dtype === grid.dtype) {
        reps.set(out, { kind: 'q', name: clampTo(r.name, intName(out), grid.dtype, grid.qmin, grid.qmax, n.name), grid });
        return;
      }
      throw new GraphError(
        `changes the grid of '${n.inputs[0]}' (scale ${g0.scale}, zero point ${g0.zp}) to scale ${grid.scale}, zero point ${grid.zp} with no integer op between; share the quantizer`,
        n,
      );
    }
    const name = intName(out);
    emitClamped('QuantizeLinear', n.name, [r.name, ...gridParams(name, grid)], name, grid.dtype, grid.qmin, grid.qmax);
    reps.set(out, { kind: 'q', name, grid });
  };

  for (const n of topoSort(src)) {
    if (isFakeQuant(n)) {
      const p = fakeQuantParams(src, n);
      // a FakeQuant on a quantized weight (prepare() puts an activation quantizer on MatMul's weight input too)
      // moves the weight to the second grid: quantize the first grid's real values again
      const w0 = weights.get(n.inputs[0]);
      const w = w0 ? dequantizeWeight(w0) : src.initializers.get(n.inputs[0]);
      if (w) {
        const [lo, hi] = containerRange(containerOf(p.signed));
        if (p.qmin < lo || p.qmax > hi) throw new GraphError(`weight grid [${p.qmin}, ${p.qmax}] does not fit 8 bits`, n);
        weights.set(n.outputs[0], { fq: n, p, dims: [...w.dims], q: quantizeWeight(w, p, n), dtype: containerOf(p.signed) });
      } else lowerActivationFq(n, p);
      continue;
    }
    if (n.domain && n.domain !== 'ai.onnx') throw new GraphError(`no integer lowering for domain ${n.domain}`, n);
    const out = n.outputs[0];
    const inReps = n.inputs.map((i) => (i ? reps.get(i) : undefined));
    const w = WEIGHTED.has(n.op) && n.inputs[1] ? weightOf(n.inputs[1], n) : undefined;
    const pending = (op: Pending): void => void reps.set(out, { kind: 'pending', op, relu: false });
    switch (n.op) {
      case 'Conv':
        if (!w) throw new GraphError('weight is not a quantized initializer', n);
        pending(lowerConv(n, w));
        continue;
      case 'Gemm': {
        if (!w) throw new GraphError('B is not a quantized initializer', n);
        if (attrInt(n, 'transA', 0) !== 0) throw new GraphError('transA=1 is not supported', n);
        pending(lowerGemm(n, w, n.inputs[2] || undefined, { transB: attrInt(n, 'transB', 0) !== 0, alpha: attrFloat(n, 'alpha', 1), beta: attrFloat(n, 'beta', 1) }));
        continue;
      }
      case 'MatMul':
        pending(w ? lowerGemm(n, w, undefined, { transB: false, alpha: 1, beta: 1 }) : lowerMatMul2(n));
        continue;
      case 'Add': {
        // a bias after a MatMul with a quantized weight folds into it (QGemm)
        const bi = n.inputs.findIndex((i) => src.initializers.has(i));
        const other = inReps[1 - bi];
        if (bi >= 0 && other?.kind === 'pending' && !other.relu && other.op.node.op === 'MatMul' && weights.has(other.op.node.inputs[1])) {
          const mm = other.op.node;
          pending(lowerGemm(mm, weights.get(mm.inputs[1])!, n.inputs[bi], { transB: false, alpha: 1, beta: 1 }));
          continue;
        }
        if (inReps.every((r) => r?.kind === 'q')) {
          pending(lowerAdd(n));
          continue;
        }
        break;
      }
      case 'GlobalAveragePool':
        if (inReps[0]?.kind === 'q') {
          pending(lowerGap(n));
          continue;
        }
        break;
      case 'Relu': {
        const r = inReps[0];
        if (r?.kind === 'pending') {
          reps.set(out, { ...r, relu: true });
          continue;
        }
        if (r?.kind === 'q') {
          // ReLU on an integer tensor: clamp at the zero point (the integer of real 0)
          const name = clampTo(r.name, intName(out), r.grid.dtype, Math.max(r.grid.qmin, r.grid.zp), r.grid.qmax, n.name);
          reps.set(out, { kind: 'q', name, grid: r.grid });
          continue;
        }
        break;
      }
    }
    if (GRID_PRESERVING.has(n.op) && inReps[0]?.kind === 'q') {
      const r = inReps[0];
      const outs = n.outputs.map((o, k) => (k === 0 ? intName(o) : o));
      emit(n.op, n.name, [r.name, ...n.inputs.slice(1).map((i) => (i ? useInit(i) : i))], outs, { ...n.attrs });
      reps.set(out, { kind: 'q', name: outs[0], grid: r.grid });
      n.outputs.slice(1).forEach((o) => o && reps.set(o, { kind: 'float', name: o })); // MaxPool indices (int64)
      continue;
    }
    // anything else runs in float: fine before the first quantizer or after the last one (ONNX Runtime runs it;
    // this engine only if it has a kernel for it), an error on a value that has an integer form
    const floatInputs = n.inputs.map((i, k) => {
      if (!i) return i;
      const r = inReps[k] ?? repOf(i, n);
      if (r.kind !== 'float' && !outputNames.has(out))
        throw new GraphError(`no integer lowering for op ${n.op} on the quantized input '${i}'`, n);
      return toFloat(r);
    });
    emit(n.op, n.name, floatInputs, [...n.outputs], { ...n.attrs });
    for (const o of n.outputs) if (o) reps.set(o, { kind: 'float', name: o });
  }

  // float graph outputs: dequantize integer tensors, finish pending ops in float
  for (const o of g.outputs) {
    const r = reps.get(o.name);
    if (!r) throw new GraphError(`graph output '${o.name}' is produced by no converted node`);
    if (r.kind === 'float') {
      if (r.name !== o.name) emit('Identity', `${o.name}/Identity`, [r.name], [o.name]);
    } else if (r.kind === 'q') {
      emit('DequantizeLinear', `${o.name}/DequantizeLinear`, [r.name, ...gridParams(r.name, r.grid)], [o.name]);
    } else r.op.toFloat(o.name, r.relu);
  }

  const domains = new Set(g.nodes.map((n) => n.domain ?? ''));
  g.opsets[''] = Math.max(13, src.opsets[''] ?? src.opsets['ai.onnx'] ?? 13);
  if (domains.has(MS_DOMAIN)) g.opsets[MS_DOMAIN] = 1;
  return g;
}

// ---- inspecting converted graphs -------------------------------------------------------------------------------

const SAME_AS_INPUT = new Set(['Clip', 'Relu', 'MaxPool', 'Flatten', 'Reshape', 'Identity', 'Transpose', 'Squeeze', 'Unsqueeze', 'Add']);

/** dtype of every value of a converted graph, from the ops convert emits (others: undefined). */
export function valueDTypes(g: Graph): Map<string, DType> {
  const types = new Map<string, DType>();
  for (const v of g.inputs) types.set(v.name, v.dtype);
  for (const [k, t] of g.initializers) types.set(k, t.dtype);
  const zpType = (n: Node, i: number, dflt: DType | undefined): DType | undefined => (n.inputs[i] ? types.get(n.inputs[i]) : dflt);
  for (const n of topoSort(g)) {
    const o = n.outputs[0];
    let t: DType | undefined;
    switch (n.op) {
      case 'QuantizeLinear': t = zpType(n, 2, 'uint8'); break;
      case 'DequantizeLinear': t = types.get(n.inputs[1]); break;
      case 'QLinearConv': case 'QLinearMatMul': t = zpType(n, 7, types.get(n.inputs[0])); break;
      case 'QLinearAdd': t = zpType(n, 7, types.get(n.inputs[0])); break;
      case 'QLinearGlobalAveragePool': t = zpType(n, 4, types.get(n.inputs[0])); break;
      case 'QGemm': t = n.inputs[7] ? zpType(n, 8, types.get(n.inputs[0])) : 'float32'; break;
      case 'ConvInteger': case 'MatMulInteger': t = 'int32'; break;
      default: if (SAME_AS_INPUT.has(n.op)) t = types.get(n.inputs[0]);
    }
    if (t && o) types.set(o, t);
  }
  return types;
}

/** The integer-valued tensors a converted graph computes (activations on their grids, int32 accumulators). */
export function integerValues(g: Graph): string[] {
  const types = valueDTypes(g);
  const inits = new Set(g.initializers.keys());
  const out: string[] = [];
  for (const n of g.nodes)
    for (const o of n.outputs) {
      const t = o ? types.get(o) : undefined;
      if (t && t !== 'float32' && t !== 'int64' && !inits.has(o)) out.push(o);
    }
  return out;
}

/** A copy of g that also outputs the named intermediate values (to compare engines tensor by tensor). */
export function withOutputs(g: Graph, names: readonly string[]): Graph {
  const types = valueDTypes(g);
  const have = new Set(g.outputs.map((o) => o.name));
  const extra: ValueInfo[] = names.filter((n) => !have.has(n)).map((name) => {
    const dtype = types.get(name);
    if (!dtype) throw new GraphError(`no dtype known for value '${name}'`);
    return { name, dtype };
  });
  return { ...g, outputs: [...g.outputs, ...extra] };
}
