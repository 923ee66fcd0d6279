import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { QATKIT_DOMAIN, emptyGraph, floatTensor, type Attr, type Graph, type Node } from '../graph/ir.js';
import { writeOnnx } from './model.js';
import { fakeQuantValue, roundHalfEven, toQdq } from './qdq.js';

// ---- an independent reference of the FakeQuant contract ----------------------------------------------
// q = clamp(round_half_even(x / scale) + zp, qmin, qmax); y = (q - zp) * scale, in float32.
const rne = (v: number) => {
  const f = Math.floor(v);
  const d = v - f;
  return d < 0.5 ? f : d > 0.5 ? f + 1 : f % 2 === 0 ? f : f + 1;
};
const qOf = (x: number, s: number, zp: number) => rne(Math.fround(x / s)) + zp;
const fq = (x: number, s: number, zp: number, qmin: number, qmax: number) =>
  Math.fround((Math.min(qmax, Math.max(qmin, qOf(x, s, zp))) - zp) * s);

interface FQ { qmin: number; qmax: number; signed: boolean; scale: number[]; zp: number[]; axis?: number; role: 'weight' | 'activation'; bits: number }

function fakeQuantNode(g: Graph, name: string, x: string, y: string, p: FQ): Node {
  const dims = p.axis === undefined ? [] : [p.scale.length];
  g.initializers.set(`${name}.scale`, floatTensor(dims, p.scale));
  g.initializers.set(`${name}.zp`, floatTensor(dims, p.zp));
  const attrs: Record<string, Attr> = {
    qmin: { type: 'int', value: p.qmin }, qmax: { type: 'int', value: p.qmax }, bits: { type: 'int', value: p.bits },
    signed: { type: 'int', value: p.signed ? 1 : 0 }, narrow: { type: 'int', value: p.signed && p.qmin === -p.qmax ? 1 : 0 },
    role: { type: 'string', value: p.role }, estimator: { type: 'string', value: 'ste' },
  };
  if (p.axis !== undefined) attrs.axis = { type: 'int', value: p.axis };
  return { name, op: 'FakeQuant', domain: QATKIT_DOMAIN, inputs: [x, `${name}.scale`, `${name}.zp`], outputs: [y], attrs };
}

const X = Float32Array.from({ length: 48 }, (_, i) => (i % 2 ? (i - 24) * 0.125 : 3 * Math.sin(i))); // odd i: ties for scale 0.25
const W = Float32Array.from({ length: 6 }, (_, i) => 0.5 * Math.sin(1.3 * i + 0.2));
const wScale = [0, 1].map((c) => Math.fround(Math.max(...Array.from(W.subarray(c * 3, c * 3 + 3), Math.abs)) / 127));

const PARAMS: Record<string, FQ> = {
  a8: { qmin: 0, qmax: 255, signed: false, scale: [0.05], zp: [128], role: 'activation', bits: 8 },
  w: { qmin: -127, qmax: 127, signed: true, scale: wScale, zp: [0, 0], axis: 0, role: 'weight', bits: 8 },
  s4: { qmin: -8, qmax: 7, signed: true, scale: [0.25], zp: [0], role: 'activation', bits: 4 },
  u4: { qmin: 0, qmax: 15, signed: false, scale: [0.125], zp: [3], role: 'activation', bits: 4 },
  pc: { qmin: -128, qmax: 127, signed: true, scale: [0.01, 0.02, 0.5], zp: [0, -5, 10], axis: 1, role: 'activation', bits: 8 },
};

/** x [1,3,4,4] -> fake-quant 8-bit uint8 -> Conv with a per-channel int8 weight; plus 4-bit and per-channel activations. */
function prepared(): Graph {
  const g = emptyGraph('prepared', 13);
  g.inputs.push({ name: 'x', dtype: 'float32', shape: [1, 3, 4, 4] });
  for (const o of ['xa', 'wq', 'c', 'x4', 'xu4', 'xpc']) g.outputs.push({ name: o, dtype: 'float32' });
  g.initializers.set('W', floatTensor([2, 3, 1, 1], W));
  g.nodes.push(
    fakeQuantNode(g, 'fq_a8', 'x', 'xa', PARAMS.a8),
    fakeQuantNode(g, 'fq_w', 'W', 'wq', PARAMS.w),
    { name: 'conv', op: 'Conv', inputs: ['xa', 'wq'], outputs: ['c'], attrs: {} },
    fakeQuantNode(g, 'fq_s4', 'x', 'x4', PARAMS.s4),
    fakeQuantNode(g, 'fq_u4', 'x', 'xu4', PARAMS.u4),
    fakeQuantNode(g, 'fq_pc', 'x', 'xpc', PARAMS.pc),
  );
  g.opsets[QATKIT_DOMAIN] = 1;
  return g;
}

/** Reference fake-quant of a whole tensor; per-channel along `axis` of dims. */
function fqTensor(x: Float32Array, dims: number[], p: FQ): Float32Array {
  const inner = p.axis === undefined ? x.length : dims.slice(p.axis + 1).reduce((a, b) => a * b, 1);
  return x.map((v, i) => {
    const c = p.axis === undefined ? 0 : Math.floor(i / inner) % dims[p.axis];
    return fq(v, Math.fround(p.scale[c]), p.zp[c], p.qmin, p.qmax);
  });
}

test('roundHalfEven and fakeQuantValue follow the contract', () => {
  assert.deepEqual([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 2.4999, -2.5001, 3].map(roundHalfEven), [0, 2, 2, -0, -2, -2, 2, -3, 3]);
  for (const p of Object.values(PARAMS))
    for (const x of X) assert.equal(fakeQuantValue(x, Math.fround(p.scale[0]), p.zp[0], p.qmin, p.qmax), fq(x, Math.fround(p.scale[0]), p.zp[0], p.qmin, p.qmax));
});

test('toQdq: onnxruntime output equals the fake-quant semantics exactly (8-bit, 4-bit with Clip, per-channel)', async () => {
  const src = prepared();
  const g = toQdq(src);
  assert.ok(src.nodes.some((n) => n.op === 'FakeQuant'), 'input graph not mutated');
  assert.deepEqual(g.nodes.map((n) => n.op), [
    'QuantizeLinear', 'DequantizeLinear', 'DequantizeLinear', 'Conv',
    'Clip', 'QuantizeLinear', 'DequantizeLinear', 'Clip', 'QuantizeLinear', 'DequantizeLinear', 'QuantizeLinear', 'DequantizeLinear']);
  assert.ok(!g.initializers.has('W'), 'the float weight is gone');
  assert.equal(g.opsets[QATKIT_DOMAIN], undefined);
  assert.ok(g.opsets[''] >= 13);
  const wInt = g.initializers.get('W_quantized');
  assert.equal(wInt?.dtype, 'int8');
  assert.deepEqual(Array.from(wInt!.data as Int8Array), Array.from(W, (v, i) => Math.min(127, Math.max(-127, qOf(v, wScale[Math.floor(i / 3)], 0)))));
  const dqW = g.nodes.find((n) => n.outputs[0] === 'wq')!;
  assert.deepEqual(dqW.attrs.axis, { type: 'int', value: 0 });
  assert.equal(g.initializers.get(dqW.inputs[2])?.dtype, 'int8');
  assert.equal(g.initializers.get(g.nodes[0].inputs[2])?.dtype, 'uint8');

  const s = await ort.InferenceSession.create(writeOnnx(g), { logSeverityLevel: 3 });
  const r = await s.run({ x: new ort.Tensor('float32', X, [1, 3, 4, 4]) });
  const dims = [1, 3, 4, 4];
  const want: Record<string, Float32Array> = {
    xa: fqTensor(X, dims, PARAMS.a8), x4: fqTensor(X, dims, PARAMS.s4), xu4: fqTensor(X, dims, PARAMS.u4),
    xpc: fqTensor(X, dims, PARAMS.pc), wq: fqTensor(W, [2, 3, 1, 1], PARAMS.w),
  };
  for (const [k, v] of Object.entries(want)) assert.deepEqual(r[k].data, v, k);
  // the 4-bit grids really were left by some inputs (so the Clip mattered) and ties were hit
  for (const p of [PARAMS.s4, PARAMS.u4]) {
    const q = Array.from(X, (x) => qOf(x, p.scale[0], p.zp[0]));
    assert.ok(q.some((v) => v < p.qmin) && q.some((v) => v > p.qmax));
  }
  assert.ok(Array.from(X).some((x) => Math.abs(x / 0.25 - Math.floor(x / 0.25) - 0.5) === 0));
  // the conv on fake-quantized values: float summation order differs, so compare within rounding
  const xa = want.xa, wq = want.wq, c = r.c.data as Float32Array;
  assert.deepEqual(r.c.dims, [1, 2, 4, 4]);
  for (let o = 0; o < 2; o++)
    for (let p = 0; p < 16; p++) {
      let acc = 0;
      for (let i = 0; i < 3; i++) acc += xa[i * 16 + p] * wq[o * 3 + i];
      assert.ok(Math.abs(c[o * 16 + p] - acc) <= 1e-5 * Math.max(1, Math.abs(acc)), `conv[${o},${p}]`);
    }
});

test('toQdq rejects what QDQ cannot express, naming the node', () => {
  const base = () => {
    const g = emptyGraph('bad', 13);
    g.inputs.push({ name: 'x', dtype: 'float32', shape: [1, 3] });
    g.outputs.push({ name: 'y', dtype: 'float32' });
    return g;
  };
  const g16 = base();
  g16.nodes.push(fakeQuantNode(g16, 'fq16', 'x', 'y', { ...PARAMS.s4, qmin: -32768, qmax: 32767, bits: 16 }));
  assert.throws(() => toQdq(g16), /node 'fq16' \(op FakeQuant\): grid \[-32768, 32767\] does not fit int8; QDQ export supports up to 8 bits/);

  const gpc = base();
  gpc.nodes.push(fakeQuantNode(gpc, 'fqpc', 'x', 'y', { ...PARAMS.pc, qmin: -8, qmax: 7, zp: [0, 0, 0] }));
  assert.throws(() => toQdq(gpc), /node 'fqpc' \(op FakeQuant\): per-channel activation grid \[-8, 7\] narrower than int8/);

  const gs = base();
  gs.nodes.push(fakeQuantNode(gs, 'fqs', 'x', 'y', PARAMS.a8));
  gs.initializers.delete('fqs.scale');
  assert.throws(() => toQdq(gs), /node 'fqs' \(op FakeQuant\): scale 'fqs.scale' must be a float32 initializer/);

  const gz = base();
  gz.nodes.push(fakeQuantNode(gz, 'fqz', 'x', 'y', { ...PARAMS.a8, zp: [1.5] }));
  assert.throws(() => toQdq(gz), /zero_point\[0\] = 1.5 is not an integer in \[qmin, qmax\]/);

  const go = base();
  go.nodes.push({ name: 'lsq', op: 'LearnedStep', domain: QATKIT_DOMAIN, inputs: ['x'], outputs: ['y'], attrs: {} });
  assert.throws(() => toQdq(go), /node 'lsq' \(op LearnedStep\): op has no QDQ export/);
});
