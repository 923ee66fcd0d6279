// com.microsoft QGemm and the integer Add against ONNX Runtime (bit for bit with float requantization) and a naive
// reference (fixed point within one step).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { type Attr, type DType, type Graph, type TensorData, elementCount } from '../../graph/ir.js';
import { writeOnnx } from '../../onnx/model.js';
import { createIntSession } from '../engine.js';
import { TestRng as R } from '../test_util.js';


const T = (dtype: DType, dims: number[], vals: ArrayLike<number>): TensorData => {
  const data = dtype === 'uint8' ? Uint8Array.from(vals) : dtype === 'int8' ? Int8Array.from(vals)
    : dtype === 'int32' ? Int32Array.from(vals) : Float32Array.from(vals);
  assert.equal(data.length, elementCount(dims));
  return { dtype, dims, data };
};

function graph(op: string, domain: string, inputs: string[], feeds: Record<string, TensorData>, inits: Record<string, TensorData>, outDtype: DType, attrs: Record<string, Attr> = {}): Graph {
  return {
    name: op,
    nodes: [{ name: 'n0', op, domain, inputs, outputs: ['y'], attrs }],
    inputs: Object.entries(feeds).map(([name, v]) => ({ name, dtype: v.dtype, shape: v.dims })),
    outputs: [{ name: 'y', dtype: outDtype }],
    initializers: new Map(Object.entries(inits)),
    opsets: domain ? { '': 17, [domain]: 1 } : { '': 17 },
  };
}

async function ortRun(g: Graph, feeds: Record<string, TensorData>): Promise<TensorData> {
  const s = await ort.InferenceSession.create(writeOnnx(g), { intraOpNumThreads: 1 });
  try {
    const inp = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor(v.dtype as 'uint8', v.data as Uint8Array, v.dims)]));
    const y = (await s.run(inp)).y;
    return { dtype: y.type as DType, dims: [...y.dims], data: y.data as Uint8Array };
  } finally {
    await s.release();
  }
}

test('QGemm: transB, alpha, per-column scales and zero points, bias shapes, 8-bit and float outputs match ONNX Runtime', async () => {
  const r = new R(21);
  for (let rep = 0; rep < 24; rep++) {
    const M = r.int(1, 9), K = r.int(1, 40), N = r.int(1, 13);
    const transB = rep % 2 === 1;
    const aType = rep % 3 === 0 ? 'int8' : 'uint8';
    // ONNX Runtime's QGemm takes u8 x {u8, s8} and s8 x s8, the output zero point A's type
    const bType = rep % 4 === 0 && aType === 'uint8' ? 'uint8' : 'int8';
    const [alo, ahi] = aType === 'uint8' ? [0, 255] : [-128, 127];
    const [blo, bhi] = bType === 'uint8' ? [0, 255] : [-127, 127];
    const perCol = rep % 5 !== 0;
    const a = T(aType, [M, K], Array.from({ length: M * K }, () => r.int(alo, ahi)));
    const b = T(bType, transB ? [N, K] : [K, N], Array.from({ length: K * N }, () => r.int(blo, bhi)));
    const nb = perCol ? N : 1;
    const inits: Record<string, TensorData> = {
      b,
      as: T('float32', [], [0.02 + r.float() * 0.05]),
      az: T(aType, [], [r.int(alo, ahi) >> 1]),
      bs: T('float32', perCol ? [N] : [], Array.from({ length: nb }, () => 0.001 + r.float() * 0.01)),
      bz: T(bType, perCol ? [N] : [], Array.from({ length: nb }, () => (bType === 'uint8' ? r.int(100, 150) : 0))),
    };
    const biasDims = [[N], [1, N], [M, N], []][rep % 4];
    inits.c = T('int32', biasDims, Array.from({ length: elementCount(biasDims) }, () => r.int(-3000, 3000)));
    const attrs: Record<string, Attr> = transB ? { transB: { type: 'int', value: 1 } } : {};
    if (rep % 6 === 5) attrs.alpha = { type: 'float', value: 0.75 };
    const quantized = rep % 7 !== 3;
    const inputs = ['a', 'as', 'az', 'b', 'bs', 'bz', 'c'];
    if (quantized) {
      inits.ys = T('float32', [], [0.05 + r.float() * 0.3]);
      inits.yz = T(aType, [], [aType === 'uint8' ? r.int(0, 255) : r.int(-128, 127)]);
      inputs.push('ys', 'yz');
    }
    const g = graph('QGemm', 'com.microsoft', inputs, { a }, inits, quantized ? aType : 'float32', attrs);
    const want = await ortRun(g, { a });
    const got = createIntSession(g, { requant: 'float' }).run({ a }).y;
    assert.deepEqual(got, want, `rep ${rep}: M ${M} K ${K} N ${N} transB ${transB} ${aType}x${bType}`);
    if (quantized) {
      const fixed = createIntSession(g, { requant: 'fixedpoint-single' }).run({ a }).y.data as Uint8Array;
      const w = want.data as Uint8Array;
      assert.ok(fixed.every((v, i) => Math.abs(v - w[i]) <= 1), `rep ${rep}: fixed point within one step`);
    }
  }
});

test('Add: broadcasting, int32 wrap-around, uint8 wrap-around, float32 rounding', () => {
  const run = (a: TensorData, b: TensorData) => createIntSession(graph('Add', '', ['a', 'b'], { a, b }, {}, a.dtype)).run({ a, b }).y;
  const y = run(T('int32', [2, 3], [1, 2, 3, 2147483647, -5, 6]), T('int32', [3], [10, 20, 1]));
  assert.deepEqual(y, T('int32', [2, 3], [11, 22, 4, -2147483639, 15, 7]));
  assert.deepEqual(run(T('uint8', [2], [250, 3]), T('uint8', [], [10])).data, Uint8Array.of(4, 13));
  assert.deepEqual(run(T('float32', [1], [0.1]), T('float32', [1], [0.2])).data, Float32Array.of(Math.fround(Math.fround(0.1) + Math.fround(0.2))));
  assert.throws(() => run(T('int32', [2], [1, 2]), T('int8', [2], [1, 2])), /node 'n0' \(op Add\): A has dtype int32, B int8/);
});
