import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Graph, type Node, type TensorData, GraphError, QATKIT_DOMAIN } from '../graph/ir.js';
import { createIntSession, runInt, unsupportedNodes } from './engine.js';
import { getIntKernel, listIntKernels, registerIntKernel, unregisterIntKernel } from './registry.js';

const u8 = (dims: number[], vals: number[]): TensorData => ({ dtype: 'uint8', dims, data: Uint8Array.from(vals) });
const i32 = (dims: number[], vals: number[]): TensorData => ({ dtype: 'int32', dims, data: Int32Array.from(vals) });
const f32 = (dims: number[], vals: number[]): TensorData => ({ dtype: 'float32', dims, data: Float32Array.from(vals) });

function node(name: string, op: string, inputs: string[], outputs: string[], domain = ''): Node {
  return { name, op, domain, inputs, outputs, attrs: {} };
}

/** x (uint8 [1, 4]) -> Relu -> Reshape [2, 2] -> y */
function smallGraph(): Graph {
  return {
    name: 'g',
    nodes: [node('relu', 'Relu', ['x'], ['r']), node('reshape', 'Reshape', ['r', 'shape'], ['y'])],
    inputs: [{ name: 'x', dtype: 'uint8', shape: [1, 4] }],
    outputs: [{ name: 'y', dtype: 'uint8' }],
    initializers: new Map([['shape', { dtype: 'int64', dims: [2], data: BigInt64Array.of(2n, 2n) }]]),
    opsets: { '': 17 },
  };
}

test('built-in kernels are registered by (domain, op)', () => {
  runInt(smallGraph(), { x: u8([1, 4], [1, 2, 3, 4]) }); // registers the built-ins
  const names = listIntKernels();
  for (const op of ['QuantizeLinear', 'DequantizeLinear', 'QLinearConv', 'QLinearMatMul', 'MatMulInteger', 'ConvInteger',
    'DynamicQuantizeLinear', 'com.microsoft::QLinearAdd', 'com.microsoft::QLinearGlobalAveragePool', 'MaxPool', 'Relu', 'Clip',
    'Reshape', 'Flatten', 'Transpose', 'Identity', `${QATKIT_DOMAIN}::Requantize`])
    assert.ok(names.includes(op), `${op} is registered`);
  assert.ok(getIntKernel('QLinearConv', 'ai.onnx'), "'ai.onnx' is the default domain");
  assert.equal(getIntKernel('QLinearAdd'), undefined, 'QLinearAdd lives in com.microsoft only');
});

test('runs a graph and frees nothing the caller sees', () => {
  const s = createIntSession(smallGraph());
  assert.deepEqual(s.inputNames, ['x']);
  assert.deepEqual(s.outputNames, ['y']);
  const y = s.run({ x: u8([1, 4], [1, 2, 3, 4]) }).y;
  assert.deepEqual(y.dims, [2, 2]);
  assert.deepEqual([...(y.data as Uint8Array)], [1, 2, 3, 4]);
  // a session runs again with other feeds
  assert.deepEqual([...(s.run({ x: u8([1, 4], [9, 8, 7, 6]) }).y.data as Uint8Array)], [9, 8, 7, 6]);
});

test('an op without a kernel is an error naming the node and op', () => {
  const g = smallGraph();
  g.nodes.push(node('soft', 'Softmax', ['y'], ['z']));
  g.outputs = [{ name: 'z', dtype: 'float32' }];
  assert.deepEqual(unsupportedNodes(g).map((n) => n.name), ['soft']);
  assert.throws(() => createIntSession(g), (e: unknown) => e instanceof GraphError && /node 'soft' \(op Softmax\): no integer kernel for op Softmax/.test(e.message));
  g.nodes[2] = node('x1', 'Foo', ['y'], ['z'], 'com.example');
  assert.throws(() => createIntSession(g), /node 'x1' \(op Foo\): no integer kernel for op com.example::Foo/);
});

test('a kernel error names the node and op', () => {
  const g: Graph = {
    name: 'g',
    nodes: [node('q', 'QuantizeLinear', ['x', 's', 'z'], ['y'])],
    inputs: [{ name: 'x', dtype: 'float32' }],
    outputs: [{ name: 'y', dtype: 'uint8' }],
    initializers: new Map([['s', f32([2], [1, 2])], ['z', u8([2], [0, 0])]]),
    opsets: { '': 13 },
  };
  assert.throws(() => runInt(g, { x: f32([3], [1, 2, 3]) }), /node 'q' \(op QuantizeLinear\): axis 1 is out of range for rank 1/);
  assert.throws(() => runInt(g, { x: f32([1, 3], [1, 2, 3]) }), /node 'q' \(op QuantizeLinear\): per-axis scale must be 1-D of 3/);
});

test('feeds are checked: unknown, missing, dtype, shape, element count', () => {
  const s = createIntSession(smallGraph());
  assert.throws(() => s.run({}), /missing feed for graph input 'x'/);
  assert.throws(() => s.run({ x: u8([1, 4], [1, 2, 3, 4]), w: u8([1], [1]) }), /feed 'w' is not a graph input/);
  assert.throws(() => s.run({ x: { dtype: 'int8', dims: [1, 4], data: new Int8Array(4) } }), /input 'x' must have dtype uint8, got int8/);
  assert.throws(() => s.run({ x: u8([4], [1, 2, 3, 4]) }), /input 'x' must have shape \[1, 4\], got \[4\]/);
  assert.throws(() => s.run({ x: { dtype: 'uint8', dims: [1, 4], data: new Uint8Array(3) } }), /has 3 elements, shape \[1, 4\] needs 4/);
});

test('kernels registered by the user are used, and replace built-ins', () => {
  let calls = 0;
  registerIntKernel({
    op: 'AddOne',
    domain: 'test.domain',
    run: (inputs) => {
      calls++;
      const x = inputs[0] as TensorData;
      return [{ dtype: 'int32', dims: x.dims, data: (x.data as Int32Array).map((v) => v + 1) }];
    },
  });
  try {
    const g: Graph = {
      name: 'g',
      nodes: [node('a', 'AddOne', ['x'], ['y'], 'test.domain')],
      inputs: [{ name: 'x', dtype: 'int32' }],
      outputs: [{ name: 'y', dtype: 'int32' }],
      initializers: new Map(),
      opsets: { '': 17, 'test.domain': 1 },
    };
    assert.deepEqual([...(runInt(g, { x: i32([2], [1, 5]) }).y.data as Int32Array)], [2, 6]);
    assert.equal(calls, 1);
  } finally {
    assert.ok(unregisterIntKernel('AddOne', 'test.domain'));
  }
});

test('nodes on constants are folded once at session creation, and outputs never alias session constants', () => {
  let calls = 0;
  const real = getIntKernel('Relu');
  assert.ok(real);
  registerIntKernel({ op: 'Relu', run: (inputs, ctx) => { calls++; return real.run(inputs, ctx); } });
  try {
    const g: Graph = {
      name: 'g',
      nodes: [node('r', 'Relu', ['c'], ['rc']), node('id', 'Identity', ['rc'], ['y'])],
      inputs: [],
      outputs: [{ name: 'y', dtype: 'int32' }],
      initializers: new Map([['c', i32([3], [-1, 0, 7])]]),
      opsets: { '': 17 },
    };
    const s = createIntSession(g);
    assert.equal(calls, 1, 'folded at creation');
    const a = s.run({}).y;
    assert.deepEqual([...(a.data as Int32Array)], [0, 0, 7]);
    (a.data as Int32Array)[2] = 99;
    assert.deepEqual([...(s.run({}).y.data as Int32Array)], [0, 0, 7], 'the caller wrote to a copy');
    assert.equal(calls, 1, 'not run again');
    createIntSession(g, { foldConstants: false }).run({});
    assert.equal(calls, 2);
  } finally {
    registerIntKernel(real);
  }
});

test('requant mode: option, graph metadata, and the ai.qatkit Requantize op', () => {
  // acc 1000 * 0.0123 = 12.3 -> 12, per-axis second channel 1000 * 0.5 = 500 -> saturates at 127
  const g: Graph = {
    name: 'g',
    nodes: [{ name: 'rq', op: 'Requantize', domain: QATKIT_DOMAIN, inputs: ['acc', 's', 'z'], outputs: ['y'], attrs: { axis: { type: 'int', value: 1 } } }],
    inputs: [{ name: 'acc', dtype: 'int32' }],
    outputs: [{ name: 'y', dtype: 'int8' }],
    initializers: new Map<string, TensorData>([['s', f32([2], [0.0123, 0.5])], ['z', { dtype: 'int8', dims: [2], data: Int8Array.of(-3, 0) }]]),
    opsets: { '': 17, [QATKIT_DOMAIN]: 1 },
  };
  const feeds = { acc: i32([1, 2, 3], [1000, -1000, 41, 1000, -1000, 3]) };
  const expect = [9, -15, -2, 127, -128, 2]; // round(12.3)-3, round(-12.3)-3, round(0.5043)-3, sat, sat, round(1.5)=2
  for (const requant of ['float', 'fixedpoint'] as const)
    assert.deepEqual([...(runInt(g, feeds, { requant }).y.data as Int8Array)], expect, requant);
  // ties: float rounds half to even, gemmlowp rounds half away from zero
  const tie = { acc: i32([1, 2, 1], [0, 5]) }; // 5 * 0.5 = 2.5
  assert.equal((runInt(g, tie, { requant: 'float' }).y.data as Int8Array)[1], 2);
  assert.equal((runInt(g, tie, { requant: 'fixedpoint' }).y.data as Int8Array)[1], 3);
  g.meta = { 'qatkit.requant': 'fixedpoint' };
  assert.equal((runInt(g, tie).y.data as Int8Array)[1], 3, 'graph metadata picks fixed point');
});

test('graph inputs that also have an initializer are overridable defaults', () => {
  const g = smallGraph();
  g.inputs.push({ name: 'shape', dtype: 'int64' });
  const s = createIntSession(g);
  assert.deepEqual(s.inputNames, ['x']);
  assert.deepEqual(s.run({ x: u8([1, 4], [1, 2, 3, 4]) }).y.dims, [2, 2]);
  assert.deepEqual(s.run({ x: u8([1, 4], [1, 2, 3, 4]), shape: { dtype: 'int64', dims: [1], data: BigInt64Array.of(4n) } }).y.dims, [4]);
});
