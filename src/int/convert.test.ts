// convert(): the lowering of prepared graphs to QOperator form, checked op by op against two independent references:
// ONNX Runtime running our converted graph (bit for bit with 'float' requantization) and ONNX Runtime running the
// QDQ export of the same prepared graph with its optimizations off (the fake-quant simulation in float ops).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { initBackend } from '../backend/index.js';
import type { Dataset } from '../data/datasets.js';
import { type DType, type Graph, type TensorData, GraphError, QATKIT_DOMAIN, cloneGraph, floatTensor } from '../graph/ir.js';
import { writeOnnx } from '../onnx/model.js';
import { toQdq } from '../onnx/qdq.js';
import { ptq } from '../ptq/calibrate.js';
import { makeRecipe, recipeByName } from '../spec/quantspec.js';
import { prepare } from '../transform/prepare.js';
import { GraphBuilder } from '../zoo/builder.js';
import { convert, integerValues, valueDTypes, withIntegerBiases, withOutputs } from './convert.js';
import { createIntSession } from './engine.js';

/** Smooth pseudo-random images (sums of sines), so activations have some structure. */
function synthetic(n: number, shape: [number, number, number], seed: number): Dataset {
  const per = shape[0] * shape[1] * shape[2];
  const images = Float32Array.from({ length: n * per }, (_, i) => {
    const k = Math.floor(i / per) + seed;
    return Math.sin(0.37 * (i % per) * (1 + (k % 5)) + k) + 0.5 * Math.cos(0.11 * (i % shape[2]) * k);
  });
  return { name: 'synthetic', images, labels: Int32Array.from({ length: n }, (_, i) => i % 3), n, shape, numClasses: 3, mean: [0], std: [1] };
}

/** conv-relu, conv + residual add-relu, maxpool, global average pool, flatten, gemm-relu, gemm: every lowering. */
function tinyNet(): Graph {
  const b = new GraphBuilder('tiny', 5);
  const x = b.input('input', ['N', 2, 8, 8]);
  const h1 = b.relu(b.conv(x, 2, 4, 3, { pad: 1 }));
  const h2 = b.conv(h1, 4, 4, 3, { pad: 1 });
  const h3 = b.relu(b.add(h2, h1));
  const h4 = b.flatten(b.globalAvgPool(b.maxPool(h3, 2)));
  b.output(b.linear(b.relu(b.linear(h4, 4, 8)), 8, 3));
  return b.g;
}

const DATA = synthetic(64, [2, 8, 8], 1);
const X: TensorData = { dtype: 'float32', dims: [DATA.n, 2, 8, 8], data: DATA.images };

async function prepared(recipe: string): Promise<Graph> {
  await initBackend('wasm');
  return ptq(tinyNet(), recipeByName(recipe), DATA, { batches: 2, batchSize: 32 });
}

async function ortRun(g: Graph, feeds: Record<string, TensorData>, optimize = true): Promise<Record<string, TensorData>> {
  const s = await ort.InferenceSession.create(writeOnnx(g), {
    intraOpNumThreads: 1, logSeverityLevel: 3, graphOptimizationLevel: optimize ? 'all' : 'disabled',
  });
  try {
    const inp = Object.fromEntries(Object.entries(feeds).map(([k, v]) => [k, new ort.Tensor(v.dtype as 'float32', v.data as Float32Array, v.dims)]));
    const out = await s.run(inp);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { dtype: v.type as DType, dims: [...v.dims], data: v.data as Float32Array }]));
  } finally {
    await s.release();
  }
}

const ops = (g: Graph): string[] => g.nodes.map((n) => n.op);

test('convert lowers conv, residual add, pools, gemm; ONNX Runtime runs it bit for bit with float requantization', async () => {
  for (const recipe of ['w8a8', 'w4a4']) {
    const p = await prepared(recipe);
    const c = convert(p);
    assert.deepEqual(
      [...new Set(ops(c))].sort(),
      ['Add', 'Clip', 'DequantizeLinear', 'Flatten', 'MatMulInteger', 'MaxPool', 'QGemm', 'QLinearAdd', 'QLinearConv', 'QLinearGlobalAveragePool', 'QuantizeLinear']
        .filter((op) => op !== 'Clip' || recipe === 'w4a4').sort(),
      recipe,
    );
    assert.ok(!ops(c).includes('Relu') && !ops(c).includes('FakeQuant'), 'ReLUs fold into clamps, no fake-quant is left');
    assert.equal(c.meta?.['qatkit.requant'], 'fixedpoint-single');
    assert.deepEqual(c.opsets, { '': 17, 'com.microsoft': 1 });
    const types = valueDTypes(c);
    const w = c.nodes.find((n) => n.op === 'QLinearConv')!;
    assert.equal(types.get(w.inputs[3]), 'int8', 'int8 weights');
    assert.equal(types.get(w.inputs[8]), 'int32', 'int32 bias');
    assert.equal(c.initializers.get(w.inputs[4])!.dims[0], 4, 'per-channel weight scales');
    const names = integerValues(c);
    const all = withOutputs(c, names);
    const ref = await ortRun(all, { input: X });
    const ours = createIntSession(all, { requant: 'float' }).run({ input: X });
    for (const n of [...names, 'fc2']) assert.deepEqual(ours[n].data, ref[n].data, `${recipe} ${n}`);
    // the default (fixed point, single rounding) within one step of it, op by op
    const fixed = createIntSession(all).run({ input: X });
    for (const n of names.filter((v) => types.get(v) !== 'int32')) {
      const a = fixed[n].data as Uint8Array;
      const b = ref[n].data as Uint8Array;
      assert.ok(a.every((v, i) => Math.abs(v - b[i]) <= 1), `${recipe} ${n}: fixed point within one step`);
    }
  }
});

test('the converted model computes the fake-quant simulation once biases sit on their int32 grid (ORT QDQ, no fusion)', async () => {
  for (const recipe of ['w8a8', 'w4a4']) {
    const p = await prepared(recipe);
    const sim = (await ortRun(toQdq(withIntegerBiases(p)), { input: X }, false)).fc2.data as Float32Array;
    const c = convert(p);
    const ours = createIntSession(c).run({ input: X }).fc2.data as Float32Array;
    // float accumulation order in the simulation vs exact integers: allow a tiny relative error
    const scale = Math.max(...sim.map(Math.abs));
    const off = sim.filter((v, i) => Math.abs(v - ours[i]) > 1e-4 * scale).length;
    assert.ok(off <= sim.length * 0.02, `${recipe}: ${off} of ${sim.length} logits differ`);
    // ptq() already returns biases on the int32 grid, so snapping again changes nothing
    const moved = withIntegerBiases(p);
    const qc = p.nodes.find((n) => n.op === 'Conv')!;
    const b0 = p.initializers.get(qc.inputs[2])!.data as Float32Array;
    const b1 = moved.initializers.get(moved.nodes.find((n) => n.name === qc.name)!.inputs[2])!.data as Float32Array;
    assert.ok(b0.every((v, i) => Math.abs(v - b1[i]) <= 1e-6 * Math.max(1e-3, Math.abs(v))), 'already on the grid');
  }
});

test('ReLU and 4-bit grids become a Clip on the 8-bit tensor that the engine folds into requantization', async () => {
  const p = await prepared('w4a4');
  const c = convert(p);
  const conv = c.nodes.find((n) => n.op === 'QLinearConv')!;
  const clip = c.nodes.find((n) => n.op === 'Clip' && n.inputs[0] === conv.outputs[0])!;
  assert.ok(clip, 'a Clip after the first QLinearConv');
  const bound = (i: number) => (c.initializers.get(clip.inputs[i])!.data as Uint8Array)[0];
  const zp = (c.initializers.get(conv.inputs[7])!.data as Uint8Array)[0];
  assert.deepEqual([bound(1), bound(2)], [Math.max(0, zp), 15], 'ReLU at the zero point, 4-bit top');
  const x = { input: X };
  const fused = createIntSession(c).run(x);
  const unfused = createIntSession(c, { fuseClamp: false }).run(x);
  assert.deepEqual(fused, unfused);
  // a post-ReLU grid whose zero point is above qmin: the clamp starts at the zero point
  const q = cloneGraph(p);
  const relu1 = q.nodes.find((n) => n.op === 'FakeQuant' && n.inputs[0] === 'relu1')!;
  (q.initializers.get(relu1.inputs[2])!.data as Float32Array)[0] = 3;
  const c2 = convert(q);
  const clip2 = c2.nodes.find((n) => n.op === 'Clip' && n.outputs[0] === relu1.outputs[0])!;
  assert.equal((c2.initializers.get(clip2.inputs[1])!.data as Uint8Array)[0], 3);
  const names = integerValues(c2);
  const all = withOutputs(c2, names);
  const ref = await ortRun(all, x);
  const ours = createIntSession(all, { requant: 'float' }).run(x);
  for (const n of names) assert.deepEqual(ours[n].data, ref[n].data, n);
});

test('MatMul: a weight with a bias Add becomes QGemm, without one QLinearMatMul; two activations QLinearMatMul', async () => {
  await initBackend('wasm');
  const b = new GraphBuilder('mm', 7);
  const x = b.flatten(b.input('input', ['N', 1, 1, 6]));
  const w1 = b.param('w1', [6, 5], Float32Array.from({ length: 30 }, (_, i) => Math.sin(i)));
  const bias = b.param('b1', [5], Float32Array.from({ length: 5 }, (_, i) => 0.1 * i - 0.2));
  const h = b.relu(b.node('Add', [b.node('MatMul', [x, w1])[0], bias])[0]);
  const w2 = b.param('w2', [5, 5], Float32Array.from({ length: 25 }, (_, i) => Math.cos(i)));
  const h2 = b.node('MatMul', [h, w2])[0];
  b.output(b.node('MatMul', [h2, b.node('Transpose', [h2], { perm: { type: 'ints', value: [1, 0] } })[0]])[0]);
  const data = synthetic(32, [1, 1, 6], 3);
  const p = ptq(b.g, recipeByName('w8a8'), data, { batches: 1, batchSize: 32 });
  const c = convert(p);
  assert.deepEqual(ops(c), ['Flatten', 'QuantizeLinear', 'QGemm', 'QLinearMatMul', 'Transpose', 'MatMulInteger', 'DequantizeLinear']);
  const xin: TensorData = { dtype: 'float32', dims: [32, 1, 1, 6], data: data.images };
  const names = integerValues(c);
  const all = withOutputs(c, names);
  const ref = await ortRun(all, { input: xin });
  const ours = createIntSession(all, { requant: 'float' }).run({ input: xin });
  for (const n of [...names, c.outputs[0].name]) assert.deepEqual(ours[n].data, ref[n].data, n);
});

test('convert refuses what has no integer form, naming the node and op', async () => {
  const p = await prepared('w8a8');
  const fqOf = (g: Graph, input: string) => g.nodes.find((n) => n.op === 'FakeQuant' && n.inputs[0] === input)!;
  // a per-channel activation grid
  const a = cloneGraph(p);
  const f = fqOf(a, 'relu1');
  a.initializers.set(f.inputs[1], floatTensor([4], [0.1, 0.1, 0.1, 0.1]));
  a.initializers.set(f.inputs[2], floatTensor([4], [0, 0, 0, 0]));
  f.attrs.axis = { type: 'int', value: 1 };
  assert.throws(() => convert(a), (e: unknown) => e instanceof GraphError && /node 'relu1_fq' \(op FakeQuant\): per-channel activation grids/.test(e.message));
  // a grid change after MaxPool with no integer op between
  const m = cloneGraph(p);
  const mp = fqOf(m, 'maxpool1');
  m.initializers.set('other_scale', floatTensor([], [0.5]));
  mp.inputs[1] = 'other_scale';
  assert.throws(() => convert(m), /node 'maxpool1_fq' \(op FakeQuant\): changes the grid of 'maxpool1'/);
  // a float weight: the graph was not prepared
  assert.throws(() => convert(tinyNet()), /node 'conv1' \(op Conv\): input 'input' is not quantized|weight 'conv1.weight' has no FakeQuant/);
  // a quantized tensor into an op with no integer lowering
  const s = cloneGraph(p);
  const gap = s.nodes.find((n) => n.op === 'GlobalAveragePool')!;
  gap.op = 'Sigmoid';
  assert.throws(() => convert(s), /node 'globalaveragepool1' \(op Sigmoid\): no integer lowering for op Sigmoid on the quantized input/);
  // a residual Add whose output is a graph output (no quantizer after it)
  const r = prepare(
    (() => {
      const b = new GraphBuilder('res', 1);
      const x = b.input('input', ['N', 1, 4, 4]);
      const h = b.relu(b.conv(x, 1, 2, 1));
      b.output(b.add(b.conv(h, 2, 2, 1), h));
      return b.g;
    })(),
    { recipe: makeRecipe(8, 8), mode: 'ptq' },
  );
  assert.throws(() => convert(r), /node 'add1' \(op Add\): residual Add has no output quantizer/);
  assert.ok(r.nodes.some((n) => n.domain === QATKIT_DOMAIN));
});
