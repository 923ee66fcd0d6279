// QDQ export: a prepared graph's FakeQuant nodes (domain ai.qatkit) become standard ONNX
// QuantizeLinear/DequantizeLinear pairs that onnxruntime runs.
//
// FakeQuant contract: inputs [x, scale, zero_point], outputs [y]; scale and zero_point are float32
// initializers (dims [] per-tensor, [C] per-channel along attribute `axis`); zero_point holds integers;
// attrs qmin, qmax, axis (per-channel only), bits, signed, narrow, role, estimator.
// Semantics (PyTorch fake_quantize_*, ONNX QuantizeLinear): q = clamp(rne(x / scale) + zp, qmin, qmax),
// y = (q - zp) * scale, with x / scale a float32 division as onnxruntime does it.

import { GraphError, QATKIT_DOMAIN, attrFloat, attrInt, cloneGraph, elementCount, uniqueName, allNames, type Attr, type Graph, type Node, type TensorData } from '../graph/ir.js';
import { domainVersion } from './model.js';

/** Per-channel DequantizeLinear (axis attribute) exists from opset 13. */
export const QDQ_MIN_OPSET = 13;

/** Round half to even, as nearbyint in the default rounding mode and ONNX QuantizeLinear. */
export function roundHalfEven(v: number): number {
  const r = Math.round(v); // rounds .5 up
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The fake-quant of one value on a grid; float32 arithmetic as the runtimes do it. */
export function fakeQuantValue(x: number, scale: number, zp: number, qmin: number, qmax: number): number {
  const q = Math.min(qmax, Math.max(qmin, roundHalfEven(Math.fround(x / scale)) + zp));
  return Math.fround((q - zp) * scale);
}

export interface FakeQuantParams {
  scale: Float32Array;
  zeroPoint: Float32Array;
  qmin: number;
  qmax: number;
  /** channel axis of x when per-channel, else undefined */
  axis?: number;
  signed: boolean;
}

/** Read and check the parameters of one FakeQuant node against its contract. */
export function fakeQuantParams(g: Graph, n: Node): FakeQuantParams {
  const [, sName, zName] = n.inputs;
  const s = g.initializers.get(sName);
  const z = g.initializers.get(zName);
  if (!s || s.dtype !== 'float32') throw new GraphError(`scale '${sName}' must be a float32 initializer`, n);
  if (!z || z.dtype !== 'float32') throw new GraphError(`zero_point '${zName}' must be a float32 initializer`, n);
  const scale = s.data as Float32Array;
  const zeroPoint = z.data as Float32Array;
  if (scale.length !== zeroPoint.length) throw new GraphError(`scale has ${scale.length} values, zero_point ${zeroPoint.length}`, n);
  const qmin = attrInt(n, 'qmin');
  const qmax = attrInt(n, 'qmax');
  if (qmin === undefined || qmax === undefined || !(qmin < qmax)) throw new GraphError(`needs int attributes qmin < qmax, got qmin=${qmin} qmax=${qmax}`, n);
  const axis = attrInt(n, 'axis');
  const perChannel = s.dims.length === 1;
  if (perChannel && axis === undefined) throw new GraphError(`per-channel scale (dims [${s.dims}]) needs attribute 'axis'`, n);
  if (!perChannel && (s.dims.length !== 0 || z.dims.length !== 0)) throw new GraphError(`scale and zero_point must have dims [] or [C], got [${s.dims}] and [${z.dims}]`, n);
  for (let i = 0; i < scale.length; i++) {
    if (!(scale[i] > 0) || !Number.isFinite(scale[i])) throw new GraphError(`scale[${i}] = ${scale[i]} is not a positive finite number`, n);
    if (!Number.isInteger(zeroPoint[i]) || zeroPoint[i] < qmin || zeroPoint[i] > qmax)
      throw new GraphError(`zero_point[${i}] = ${zeroPoint[i]} is not an integer in [qmin, qmax] = [${qmin}, ${qmax}]`, n);
  }
  const signed = attrInt(n, 'signed', qmin < 0 ? 1 : 0) !== 0;
  return { scale, zeroPoint, qmin, qmax, axis: perChannel ? axis : undefined, signed };
}

/** Quantize a weight tensor to integers per the FakeQuant parameters (per-channel along p.axis). */
export function quantizeWeight(w: TensorData, p: FakeQuantParams, node: Node): Int8Array | Uint8Array {
  if (w.dtype !== 'float32') throw new GraphError(`weight must be float32, got ${w.dtype}`, node);
  const x = w.data as Float32Array;
  const out = p.signed ? new Int8Array(x.length) : new Uint8Array(x.length);
  let inner = 1;
  let channels = 1;
  if (p.axis !== undefined) {
    const axis = p.axis < 0 ? p.axis + w.dims.length : p.axis;
    if (!(axis >= 0 && axis < w.dims.length)) throw new GraphError(`axis ${p.axis} is outside weight dims [${w.dims}]`, node);
    channels = w.dims[axis];
    if (channels !== p.scale.length) throw new GraphError(`weight has ${channels} channels on axis ${axis}, scale has ${p.scale.length}`, node);
    inner = elementCount(w.dims.slice(axis + 1));
  }
  for (let i = 0; i < x.length; i++) {
    const c = Math.floor(i / inner) % channels;
    const s = p.scale[c], zp = p.zeroPoint[c];
    out[i] = Math.min(p.qmax, Math.max(p.qmin, roundHalfEven(Math.fround(x[i] / s)) + zp));
  }
  return out;
}

/** The 8-bit container the grid is stored in; QDQ export supports grids that fit in 8 bits. */
function container(p: FakeQuantParams, n: Node): { dtype: 'int8' | 'uint8'; lo: number; hi: number } {
  const c = p.signed ? { dtype: 'int8' as const, lo: -128, hi: 127 } : { dtype: 'uint8' as const, lo: 0, hi: 255 };
  if (p.qmin < c.lo || p.qmax > c.hi)
    throw new GraphError(`grid [${p.qmin}, ${p.qmax}] does not fit ${c.dtype}; QDQ export supports up to 8 bits`, n);
  return c;
}

const isFakeQuant = (n: Node): boolean => n.op === 'FakeQuant' && n.domain === QATKIT_DOMAIN;

/**
 * Conv/Gemm biases as int32 at scale s_x * s_w[c] behind a DequantizeLinear, the form ONNX Runtime's QDQ fusion
 * needs to run the op as QLinearConv / QGemm (a float bias keeps it a float op on dequantized values). Exact for
 * biases already on that grid (the pipeline snaps them there: int/convert.ts withIntegerBiases).
 */
function quantizeBiases(g: Graph, fresh: (base: string) => string): void {
  const dq = new Map(g.nodes.filter((n) => n.op === 'DequantizeLinear').map((n) => [n.outputs[0], n]));
  const scaleOf = (v: string) => {
    const n = dq.get(v);
    const s = n && g.initializers.get(n.inputs[1]);
    return s ? (s.data as Float32Array) : undefined;
  };
  const extra: Node[] = [];
  for (const n of g.nodes) {
    if ((n.op !== 'Conv' && n.op !== 'Gemm') || n.domain || !n.inputs[2]) continue;
    const b = g.initializers.get(n.inputs[2]);
    const sx = scaleOf(n.inputs[0]);
    const sw = scaleOf(n.inputs[1]);
    if (!b || b.dtype !== 'float32' || !sx || sx.length !== 1 || !sw) continue;
    if (n.op === 'Gemm' && (attrFloat(n, 'alpha', 1) !== 1 || attrFloat(n, 'beta', 1) !== 1)) continue;
    const bv = b.data as Float32Array;
    const C = bv.length;
    if (sw.length !== 1 && sw.length !== C) continue;
    const scale = Float32Array.from({ length: C }, (_, c) => sx[0] * sw[sw.length === 1 ? 0 : c]);
    const q = Int32Array.from(bv, (v, c) => Math.max(-2147483648, Math.min(2147483647, roundHalfEven(v / scale[c]))));
    const [qName, sName, zName, out] = ['bias_int32', 'bias_scale', 'bias_zero_point', 'bias_dq'].map((k) => fresh(`${n.name}_${k}`));
    g.initializers.set(qName, { dtype: 'int32', dims: [C], data: q });
    g.initializers.set(sName, { dtype: 'float32', dims: [C], data: scale });
    g.initializers.set(zName, { dtype: 'int32', dims: [C], data: new Int32Array(C) });
    extra.push({ name: fresh(`${n.name}/bias/DequantizeLinear`), op: 'DequantizeLinear', inputs: [qName, sName, zName], outputs: [out], attrs: { axis: { type: 'int', value: 0 } } });
    n.inputs[2] = out;
  }
  g.nodes.unshift(...extra);
}

/**
 * Export a prepared (fake-quantized) graph to QDQ form. Weight FakeQuants (x is an initializer) become an
 * int8/uint8 initializer of the quantized integers + DequantizeLinear; activation FakeQuants become
 * QuantizeLinear -> DequantizeLinear. The result declares opset max(13, original). Does not mutate `src`.
 */
export function toQdq(src: Graph): Graph {
  const g = cloneGraph(src);
  const taken = allNames(g);
  const fresh = (base: string) => uniqueName(g, base, taken);
  const out: Node[] = [];
  for (const n of g.nodes) {
    if (!isFakeQuant(n)) {
      if (n.domain === QATKIT_DOMAIN) throw new GraphError(`op has no QDQ export (only FakeQuant in domain ${QATKIT_DOMAIN} does)`, n);
      out.push(n);
      continue;
    }
    const p = fakeQuantParams(g, n);
    const c = container(p, n);
    const [x] = n.inputs;
    const perChannel = p.axis !== undefined;
    const dims = perChannel ? [p.scale.length] : [];
    const scaleName = fresh(`${n.name}_scale`);
    const zpName = fresh(`${n.name}_zero_point`);
    g.initializers.set(scaleName, { dtype: 'float32', dims, data: p.scale.slice() });
    g.initializers.set(zpName, { dtype: c.dtype, dims, data: c.dtype === 'int8' ? Int8Array.from(p.zeroPoint) : Uint8Array.from(p.zeroPoint) });
    const axisAttr: Record<string, Attr> = perChannel ? { axis: { type: 'int', value: p.axis! } } : {};
    const w = g.initializers.get(x);
    let qName: string;
    if (w) {
      qName = fresh(`${x}_quantized`);
      g.initializers.set(qName, { dtype: c.dtype, dims: [...w.dims], data: quantizeWeight(w, p, n) });
    } else {
      let xin = x;
      if (p.qmin > c.lo || p.qmax < c.hi) {
        // QuantizeLinear saturates to the container (e.g. [-128, 127]), not to a narrower grid such as
        // 4-bit [-8, 7] or narrow-range [-127, 127]; clipping x to the grid's float range first keeps every
        // value on the grid, and rne(lo / scale) is exactly qmin - zp, so results equal the clamp.
        if (perChannel) throw new GraphError(`per-channel activation grid [${p.qmin}, ${p.qmax}] narrower than ${c.dtype} has no QDQ export (Clip takes scalar bounds)`, n);
        const zp = p.zeroPoint[0], s = p.scale[0];
        const lo = fresh(`${n.name}_clip_min`), hi = fresh(`${n.name}_clip_max`);
        g.initializers.set(lo, { dtype: 'float32', dims: [], data: Float32Array.of((p.qmin - zp) * s) });
        g.initializers.set(hi, { dtype: 'float32', dims: [], data: Float32Array.of((p.qmax - zp) * s) });
        xin = fresh(`${x}_clipped`);
        out.push({ name: fresh(`${n.name}/Clip`), op: 'Clip', inputs: [x, lo, hi], outputs: [xin], attrs: {} });
      }
      qName = fresh(`${x}_quantized`);
      out.push({ name: fresh(`${n.name}/QuantizeLinear`), op: 'QuantizeLinear', inputs: [xin, scaleName, zpName], outputs: [qName], attrs: { ...axisAttr } });
    }
    out.push({ name: fresh(`${n.name}/DequantizeLinear`), op: 'DequantizeLinear', inputs: [qName, scaleName, zpName], outputs: [n.outputs[0]], attrs: { ...axisAttr } });
  }
  g.nodes = out;
  quantizeBiases(g, fresh);
  // float weights and FakeQuant parameters nothing reads any more
  const used = new Set<string>(g.outputs.map((o) => o.name));
  const mark = (gr: Graph): void => {
    for (const n of gr.nodes) {
      for (const i of n.inputs) used.add(i);
      for (const a of Object.values(n.attrs)) if (a.type === 'graph') mark(a.value);
    }
  };
  mark(g);
  for (const k of [...g.initializers.keys()]) if (!used.has(k)) g.initializers.delete(k);
  delete g.opsets[QATKIT_DOMAIN];
  g.opsets[''] = Math.max(QDQ_MIN_OPSET, domainVersion(g.opsets, ''));
  return g;
}
