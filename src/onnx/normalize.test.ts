import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { emptyGraph, floatTensor, type Attr, type Graph, type Node } from '../graph/ir.js';
import { readOnnx, writeOnnx } from './model.js';
import { CANONICAL_OPSET, canonicalViolations, normalize } from './normalize.js';

const FIXTURES = new URL('../../../test/fixtures/onnx/', import.meta.url);
interface Ref { inputs: Record<string, { dims: number[]; data: number[] }>; outputs: Record<string, { dims: number[]; data: number[] }> }
interface Entry { file: string; opset: number; reference: string; outputs: { name: string }[] }
const index = JSON.parse(readFileSync(new URL('index.json', FIXTURES), 'utf8')) as { models: Entry[] };
const load = (f: string) => new Uint8Array(readFileSync(new URL(f, FIXTURES)));

type Feeds = Record<string, ort.Tensor>;
async function runOrt(bytes: Uint8Array, feeds: Feeds): Promise<Record<string, Float32Array>> {
  const s = await ort.InferenceSession.create(bytes, { logSeverityLevel: 3 });
  const r = await s.run(feeds);
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v.data as Float32Array]));
}
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
};
const ops = (g: Graph) => g.nodes.map((n) => n.op);
const node = (g: Graph, name: string): Node => {
  const n = g.nodes.find((x) => x.name === name);
  assert.ok(n, `no node '${name}' in ${g.nodes.map((x) => x.name)}`);
  return n;
};

test('every fixture normalizes to the canonical form and onnxruntime agrees with the original and with torch', async () => {
  for (const m of index.models) {
    const bytes = load(m.file);
    const g = readOnnx(bytes, m.file);
    const n = normalize(g, { file: m.file });
    assert.deepEqual(canonicalViolations(n), [], m.file);
    assert.ok(!ops(n).includes('Constant'), m.file);
    assert.equal(n.opsets[''], Math.max(CANONICAL_OPSET, m.opset));
    assert.deepEqual(normalize(n), n, `${m.file}: normalize is not idempotent`);
    assert.equal(g.opsets[''], m.opset, 'the input graph is not mutated');

    const ref = JSON.parse(readFileSync(new URL(m.reference, FIXTURES), 'utf8')) as Ref;
    const feeds: Feeds = {};
    for (const [k, v] of Object.entries(ref.inputs)) feeds[k] = new ort.Tensor('float32', Float32Array.from(v.data), v.dims);
    const out = m.outputs[0].name;
    const original = (await runOrt(bytes, feeds))[out];
    const rewritten = (await runOrt(writeOnnx(n), feeds))[out];
    const reexported = (await runOrt(writeOnnx(g), feeds))[out];
    assert.ok(maxDiff(rewritten, original) <= 1e-5, `${m.file}: normalized differs by ${maxDiff(rewritten, original)}`);
    assert.ok(maxDiff(reexported, original) <= 1e-5, `${m.file}: re-exported differs by ${maxDiff(reexported, original)}`);
    assert.ok(maxDiff(original, ref.outputs[out].data) <= 1e-4, `${m.file}: onnxruntime vs torch ${maxDiff(original, ref.outputs[out].data)}`);
  }
});

test('tf2onnx-style opset 9: Constants, attribute operands, Upsample and a flattening Softmax are rewritten', () => {
  const g = normalize(readOnnx(load('tf2onnx_op9.onnx')));
  // rank 3 input, axis 1: the pre-13 flattening is made explicit
  assert.deepEqual(ops(g), ['Conv', 'BatchNormalization', 'Clip', 'Pad', 'MaxPool', 'Resize', 'Reshape',
    'Flatten', 'Softmax', 'Shape', 'Reshape', 'Unsqueeze', 'ReduceMean', 'Squeeze', 'Slice', 'Mul', 'Identity']);
  assert.deepEqual(node(g, 'softmax/Flatten').attrs.axis, { type: 'int', value: 1 });
  assert.deepEqual(node(g, 'softmax').attrs.axis, { type: 'int', value: -1 });
  const resize = node(g, 'upsample');
  assert.equal(resize.op, 'Resize');
  assert.deepEqual(resize.attrs, {
    mode: { type: 'string', value: 'nearest' },
    coordinate_transformation_mode: { type: 'string', value: 'asymmetric' },
    nearest_mode: { type: 'string', value: 'floor' },
  });
  assert.equal(resize.inputs[1], '');
  const slice = node(g, 'slice');
  assert.deepEqual(slice.attrs, {});
  assert.deepEqual(g.initializers.get(slice.inputs[2])?.data, BigInt64Array.of(2n ** 63n - 1n), 'INT64_MAX end survives');
  const pad = node(g, 'pad');
  assert.deepEqual(pad.attrs, { mode: { type: 'string', value: 'constant' } });
  assert.deepEqual(g.initializers.get(pad.inputs[1])?.data, BigInt64Array.of(0n, 0n, 1n, 1n, 0n, 0n, 1n, 1n));
  assert.deepEqual(g.initializers.get(pad.inputs[2])?.data, Float32Array.of(0.5));
  assert.deepEqual(node(g, 'relu6').inputs.slice(1).map((i) => g.initializers.get(i)?.data), [Float32Array.of(0), Float32Array.of(6)]);
  assert.deepEqual(g.initializers.get(node(g, 'reduce_mean').inputs[1])?.data, BigInt64Array.of(3n));
  assert.equal(node(g, 'conv').inputs[1], 'W', 'Constant outputs keep their names as initializers');
  assert.equal(node(g, 'pad').inputs[0], 'relu6', 'Dropout removed and its consumers rewired');
  assert.equal(node(g, 'identity').outputs[0], 'y', 'an Identity naming a graph output stays');
});

test('legacy opset 8: BatchNormalization spatial dropped, initializer inputs removed, 2-D Softmax keeps one node', () => {
  const src = readOnnx(load('legacy_op8.onnx'));
  assert.equal(src.inputs.length, 8);
  const g = normalize(src);
  assert.deepEqual(g.inputs.map((i) => i.name), ['x']);
  assert.deepEqual(Object.keys(node(g, 'bn').attrs).sort(), ['epsilon', 'momentum']);
  assert.deepEqual(node(g, 'softmax').attrs.axis, { type: 'int', value: -1 });
  assert.ok(!ops(g).includes('Flatten'));
  assert.equal(node(g, 'upsample').op, 'Resize');
  assert.deepEqual(g.initializers.get(node(g, 'upsample').inputs[2])?.data, Float32Array.of(1, 1, 2, 2));
});

test('opset 13 forms are kept; ReduceMean axes attribute moves to an input', () => {
  const src = readOnnx(load('paddle_op13.onnx'));
  const g = normalize(src);
  assert.deepEqual(node(g, 'softmax').attrs, { axis: { type: 'int', value: 1 } }, 'opset-13 Softmax means one axis: untouched');
  assert.deepEqual(node(g, 'reduce_mean').attrs, { keepdims: { type: 'int', value: 1 } });
  assert.deepEqual(g.initializers.get(node(g, 'reduce_mean').inputs[1])?.data, BigInt64Array.of(1n));
  assert.deepEqual(g.initializers.get('lo'), { dtype: 'float32', dims: [], data: Float32Array.of(-0.5) });
  assert.deepEqual(g.initializers.get('shape'), { dtype: 'int64', dims: [3], data: BigInt64Array.of(2n, 3n, 8n) });
  assert.deepEqual(g.initializers.get('two'), { dtype: 'int64', dims: [], data: BigInt64Array.of(2n) });
  assert.equal(node(g, 'split').inputs[0], 'sq');
  assert.deepEqual(g.inputs[0].shape, ['N', 6, 4]);
});

/** A hand-built opset-9 graph for rules the fixtures do not reach; `x` has no shape so ranks are unknown. */
function opset9Graph(): Graph {
  const g = emptyGraph('rules', 9);
  g.inputs.push({ name: 'x', dtype: 'float32' }, { name: 'v', dtype: 'float32', shape: [2, 6] });
  g.outputs.push({ name: 'sm', dtype: 'float32' }, { name: 'ls', dtype: 'float32' }, { name: 's0', dtype: 'float32' },
    { name: 's1', dtype: 'float32' }, { name: 'tv', dtype: 'float32' }, { name: 'ti', dtype: 'int64' }, { name: 'sc', dtype: 'float32' });
  g.initializers.set('idx', { dtype: 'int64', dims: [2, 1], data: BigInt64Array.of(1n, 0n) });
  g.initializers.set('upd', floatTensor([2, 1], [100, 200]));
  g.nodes.push(
    { name: '', op: 'Softmax', inputs: ['x'], outputs: ['sm'], attrs: { axis: { type: 'int', value: 1 } } },
    { name: '', op: 'LogSoftmax', inputs: ['v'], outputs: ['ls'], attrs: {} },
    { name: 'split', op: 'Split', inputs: ['v'], outputs: ['s0', 's1'], attrs: { axis: { type: 'int', value: 1 }, split: { type: 'ints', value: [2, 4] } } },
    { name: 'topk', op: 'TopK', inputs: ['v'], outputs: ['tv', 'ti'], attrs: { k: { type: 'int', value: 3 } } },
    { name: 'scatter', op: 'Scatter', inputs: ['v', 'idx', 'upd'], outputs: ['sc'], attrs: { axis: { type: 'int', value: 1 } } },
  );
  return g;
}

test('rules the fixtures do not reach give onnxruntime the same results as the opset-9 original', async () => {
  const src = opset9Graph();
  const g = normalize(src);
  assert.deepEqual(canonicalViolations(g), []);
  assert.deepEqual(ops(g), ['Flatten', 'Softmax', 'Shape', 'Reshape', 'LogSoftmax', 'Split', 'TopK', 'ScatterElements']);
  assert.deepEqual(g.nodes.map((n) => n.name), ['Softmax/Flatten', 'Softmax', 'Softmax/Shape', 'Softmax/Reshape', 'LogSoftmax', 'split', 'topk', 'scatter']);
  assert.deepEqual(node(g, 'LogSoftmax').attrs.axis, { type: 'int', value: -1 }, 'known rank 2: the default axis 1 is the last');
  assert.deepEqual(g.initializers.get(node(g, 'topk').inputs[1]), { dtype: 'int64', dims: [1], data: BigInt64Array.of(3n) });
  const feeds: Feeds = {
    x: new ort.Tensor('float32', Float32Array.from({ length: 24 }, (_, i) => Math.sin(i)), [2, 3, 4]),
    v: new ort.Tensor('float32', Float32Array.from({ length: 12 }, (_, i) => Math.cos(i * 1.7)), [2, 6]),
  };
  const a = await runOrt(writeOnnx(src), feeds);
  const b = await runOrt(writeOnnx(g), feeds);
  for (const k of Object.keys(a)) assert.ok(maxDiff(Array.from(a[k], Number), Array.from(b[k], Number)) <= 1e-6, k);
});

test('opset-18 Split without sizes gets num_outputs; Reshape shape attribute; Resize-10 shrink; unknown ops kept', () => {
  const g = emptyGraph('misc', 4);
  g.inputs.push({ name: 'x', dtype: 'float32', shape: [2, 4] });
  g.outputs.push({ name: 'a', dtype: 'float32' }, { name: 'b', dtype: 'float32' }, { name: 'r', dtype: 'float32' }, { name: 'z', dtype: 'float32' }, { name: 'd', dtype: 'float32' });
  g.initializers.set('half', floatTensor([2], [1, 0.5]));
  g.nodes.push(
    { name: 'split', op: 'Split', inputs: ['x'], outputs: ['a', 'b'], attrs: { axis: { type: 'int', value: 1 } } },
    { name: 'reshape', op: 'Reshape', inputs: ['x'], outputs: ['r'], attrs: { shape: { type: 'ints', value: [4, 2] }, consumed_inputs: { type: 'ints', value: [0] } } },
    { name: 'resize', op: 'Resize', domain: 'ai.onnx', inputs: ['x', 'half'], outputs: ['d'], attrs: { mode: { type: 'string', value: 'nearest' } } },
    { name: 'mystery', op: 'NoSuchOp', inputs: ['x'], outputs: ['z'], attrs: { axes: { type: 'ints', value: [1] } } },
  );
  const n = normalize(g);
  assert.deepEqual(node(n, 'split').attrs.num_outputs, { type: 'int', value: 2 });
  assert.deepEqual(node(n, 'reshape').attrs, {});
  assert.deepEqual(n.initializers.get(node(n, 'reshape').inputs[1])?.data, BigInt64Array.of(4n, 2n));
  assert.equal(node(n, 'resize').domain, undefined);
  assert.deepEqual(node(n, 'resize').inputs, ['x', '', 'half']);
  assert.deepEqual(node(n, 'resize').attrs.nearest_mode, { type: 'string', value: 'ceil' });
  assert.deepEqual(node(n, 'mystery'), g.nodes[3]);
  assert.equal(n.opsets[''], CANONICAL_OPSET);
});

test('Constant feeding a graph output, Dropout with a used mask, BatchNormalization with unused statistics', () => {
  const g = emptyGraph('edge', 9);
  g.inputs.push({ name: 'x', dtype: 'float32', shape: [1, 2, 2, 2] });
  g.outputs.push({ name: 'c', dtype: 'float32' }, { name: 'mask', dtype: 'bool' }, { name: 'y', dtype: 'float32' });
  for (const k of ['s', 'b', 'm', 'v']) g.initializers.set(k, floatTensor([2], [1, 0.5]));
  g.nodes.push(
    { name: 'k', op: 'Constant', inputs: [], outputs: ['c'], attrs: { value: { type: 'tensor', value: floatTensor([1], [3]) } } },
    { name: 'drop', op: 'Dropout', inputs: ['x'], outputs: ['d', 'mask'], attrs: {} },
    { name: 'bn', op: 'BatchNormalization', inputs: ['d', 's', 'b', 'm', 'v'], outputs: ['y', 'rm', 'rv'], attrs: { is_test: { type: 'int', value: 1 } } },
  );
  const n = normalize(g);
  assert.deepEqual(node(n, 'k'), { name: 'k', op: 'Identity', inputs: ['c_value'], outputs: ['c'], attrs: {} });
  assert.deepEqual(n.initializers.get('c_value')?.data, Float32Array.of(3));
  assert.equal(node(n, 'drop').op, 'Dropout', 'its mask is a graph output: left for the executor');
  assert.deepEqual(node(n, 'bn').outputs, ['y']);
  assert.deepEqual(node(n, 'bn').attrs, {});
});

test('Upsample-7/9 and Resize-10 become Resize-18 that samples exactly like the original in onnxruntime', async () => {
  const cases: [number, string, number[]][] = [
    [8, 'linear', [1, 1, 2, 3]], [9, 'linear', [1, 1, 1.5, 3]], [9, 'nearest', [1, 1, 1.5, 2.5]],
    [10, 'nearest', [1, 1, 0.5, 0.75]], [10, 'linear', [1, 1, 0.5, 2]],
  ];
  const x = new ort.Tensor('float32', Float32Array.from({ length: 16 }, (_, i) => i * i * 0.1), [1, 1, 4, 4]);
  for (const [opset, mode, scales] of cases) {
    const g = emptyGraph('up', opset);
    g.inputs.push({ name: 'x', dtype: 'float32', shape: [1, 1, 4, 4] });
    g.outputs.push({ name: 'y', dtype: 'float32' });
    const attrs: Record<string, Attr> = { mode: { type: 'string', value: mode } };
    if (opset < 9) attrs.scales = { type: 'floats', value: scales };
    else g.initializers.set('s', floatTensor([4], scales));
    g.nodes.push({ name: 'up', op: opset < 10 ? 'Upsample' : 'Resize', inputs: opset < 9 ? ['x'] : ['x', 's'], outputs: ['y'], attrs });
    const n = normalize(g);
    assert.equal(n.nodes[0].op, 'Resize');
    const a = (await runOrt(writeOnnx(g), { x })).y, b = (await runOrt(writeOnnx(n), { x })).y;
    assert.deepEqual(b, a, `opset ${opset} ${mode} ${scales}`);
  }
});
