// The integer engine against ONNX Runtime on small random models built in TS with the ONNX writer:
// 'float' requantization must match ONNX Runtime bit for bit; 'fixedpoint' within one step of it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { type Attr, type DType, type Graph, type TensorData, elementCount } from '../graph/ir.js';
import { writeOnnx } from '../onnx/model.js';
import { createIntSession } from './engine.js';
import { setIntWasm } from './kernels/wasm_gemm.js';
import { TestRng as R } from './test_util.js';

// ---- helpers --------------------------------------------------------------------------------


const t = (dtype: DType, dims: number[], vals: ArrayLike<number>): TensorData => {
  const n = elementCount(dims);
  const data =
    dtype === 'uint8' ? Uint8Array.from(vals) : dtype === 'int8' ? Int8Array.from(vals)
    : dtype === 'int32' ? Int32Array.from(vals) : Float32Array.from(vals);
  assert.equal(data.length, n);
  return { dtype, dims, data };
};
const f32 = (v: number, dims: number[] = []): TensorData => t('float32', dims, new Array(elementCount(dims)).fill(v));
const rand = (r: R, dtype: 'uint8' | 'int8' | 'int32', dims: number[], lo?: number, hi?: number): TensorData => {
  const [a, b] = dtype === 'uint8' ? [0, 255] : dtype === 'int8' ? [-128, 127] : [-5000, 5000];
  return t(dtype, dims, Array.from({ length: elementCount(dims) }, () => r.int(lo ?? a, hi ?? b)));
};

interface NodeSpec { op: string; domain?: string; inputs: string[]; outputs?: string[]; attrs?: Record<string, Attr> }

/** One-node graph: `feeds` become graph inputs, `inits` initializers. */
function oneNode(n: NodeSpec, feeds: Record<string, TensorData>, inits: Record<string, TensorData>, outDtype: DType): Graph {
  const outputs = n.outputs ?? ['y'];
  return {
    name: n.op,
    nodes: [{ name: `${n.op}_0`, op: n.op, domain: n.domain ?? '', inputs: n.inputs, outputs, attrs: n.attrs ?? {} }],
    inputs: Object.entries(feeds).map(([name, v]) => ({ name, dtype: v.dtype, shape: v.dims })),
    outputs: outputs.map((name) => ({ name, dtype: outDtype })),
    initializers: new Map(Object.entries(inits)),
    opsets: n.domain ? { '': 13, [n.domain]: 1 } : { '': 13 },
  };
}

async function ortRun(g: Graph, feeds: Record<string, TensorData>): Promise<Record<string, TensorData>> {
  const session = await ort.InferenceSession.create(writeOnnx(g), { intraOpNumThreads: 1 });
  try {
    const inp: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) inp[k] = new ort.Tensor(v.dtype as 'uint8', v.data as Uint8Array, v.dims);
    const out = await session.run(inp);
    const res: Record<string, TensorData> = {};
    for (const [k, v] of Object.entries(out)) res[k] = { dtype: v.type as DType, dims: [...v.dims], data: v.data as Uint8Array };
    return res;
  } finally {
    await session.release();
  }
}

/** Number of elements that differ, and the largest difference. */
function diff(a: TensorData, b: TensorData): { n: number; max: number } {
  assert.equal(a.dtype, b.dtype, 'dtype');
  assert.deepEqual(a.dims, b.dims, 'dims');
  const x = a.data as ArrayLike<number>;
  const y = b.data as ArrayLike<number>;
  let n = 0;
  let max = 0;
  for (let i = 0; i < x.length; i++) {
    const d = Math.abs(x[i] - y[i]);
    if (d) n++;
    if (d > max) max = d;
  }
  return { n, max };
}

/** Runs g in ORT and in our engine (float and fixedpoint); float must be exact, fixed point within one step. */
async function check(label: string, g: Graph, feeds: Record<string, TensorData>, fixedTol = 1): Promise<void> {
  const want = (await ortRun(g, feeds)).y;
  const got = createIntSession(g, { requant: 'float' }).run(feeds).y;
  const d = diff(got, want);
  assert.equal(d.n, 0, `${label}: ${d.n} of ${elementCount(want.dims)} values differ from ONNX Runtime (max ${d.max})`);
  if (fixedTol >= 0) {
    const fx = createIntSession(g, { requant: 'fixedpoint' }).run(feeds).y;
    const dx = diff(fx, want);
    assert.ok(dx.max <= fixedTol, `${label} fixedpoint: max difference ${dx.max} > ${fixedTol}`);
  }
}

// ---- com.microsoft QLinearAdd and QLinearGlobalAveragePool ----------------------------------

test('QLinearAdd equals ONNX Runtime: same shape, broadcasts, scalar sides, uint8 and int8', async () => {
  const r = new R(1);
  const shapes: Array<[number[], number[]]> = [
    [[2, 3, 5, 7], [2, 3, 5, 7]],
    [[1, 8, 6, 6], [1, 8, 1, 1]], // per-channel B: B is a scalar per span
    [[1, 8, 1, 1], [1, 8, 6, 6]],
    [[3, 33], [1]], // B scalar
    [[1], [4, 17]], // A scalar
    [[4, 1], [1, 9]],
    [[2, 1, 40], [2, 3, 40]],
  ];
  for (const dtype of ['uint8', 'int8'] as const)
    for (let k = 0; k < 3; k++)
      for (const [da, db] of shapes) {
        const a = rand(r, dtype, da);
        const b = rand(r, dtype, db);
        const zp = (): TensorData => rand(r, dtype, [], dtype === 'uint8' ? 0 : -128, dtype === 'uint8' ? 255 : 127);
        const sc = (): TensorData => f32(0.002 + r.float() * 0.1);
        const inits = { as: sc(), az: zp(), bs: sc(), bz: zp(), cs: f32(0.01 + r.float() * 0.2), cz: zp() };
        const g = oneNode({ op: 'QLinearAdd', domain: 'com.microsoft', inputs: ['a', 'as', 'az', 'b', 'bs', 'bz', 'cs', 'cz'] }, { a, b }, inits, dtype);
        await check(`QLinearAdd ${dtype} [${da}]+[${db}]`, g, { a, b });
        // scales fed at run time: computed per element rather than from the per-session table
        const fed = { a, b, as: inits.as, bs: inits.bs, cs: inits.cs };
        const g2 = oneNode({ op: 'QLinearAdd', domain: 'com.microsoft', inputs: ['a', 'as', 'az', 'b', 'bs', 'bz', 'cs', 'cz'] }, fed,
          { az: inits.az, bz: inits.bz, cz: inits.cz }, dtype);
        await check(`QLinearAdd ${dtype} [${da}]+[${db}] fed scales`, g2, fed);
      }
});

test('QLinearGlobalAveragePool equals ONNX Runtime: NCHW and channels_last, uint8 and int8', async () => {
  const r = new R(2);
  for (const dtype of ['uint8', 'int8'] as const)
    for (const channelsLast of [0, 1])
      for (const dims of [[1, 16, 7, 7], [3, 5, 4, 9], [2, 64, 1, 1], [2, 10, 13]]) {
        const x = rand(r, dtype, dims);
        const lo = dtype === 'uint8' ? 0 : -128;
        const hi = dtype === 'uint8' ? 255 : 127;
        const inits = { xs: f32(0.01 + r.float() * 0.1), xz: rand(r, dtype, [], lo, hi), ys: f32(0.005 + r.float() * 0.1), yz: rand(r, dtype, [], lo, hi) };
        const g = oneNode(
          { op: 'QLinearGlobalAveragePool', domain: 'com.microsoft', inputs: ['x', 'xs', 'xz', 'ys', 'yz'], attrs: { channels_last: { type: 'int', value: channelsLast } } },
          { x }, inits, dtype);
        await check(`QLinearGlobalAveragePool ${dtype} [${dims}] channels_last=${channelsLast}`, g, { x });
      }
});

// ---- ONNX QLinearConv, QLinearMatMul, ConvInteger, MatMulInteger, QuantizeLinear, MaxPool -----

const ints = (value: number[]): Attr => ({ type: 'ints', value });

test('QLinearConv equals ONNX Runtime on random configurations', async () => {
  const r = new R(3);
  for (let k = 0; k < 40; k++) {
    const rank = r.pick([1, 2, 2, 2]);
    const group = r.pick([1, 1, 2, 4]);
    const depthwise = r.int(0, 3) === 0;
    const C = depthwise ? 8 : group * r.int(1, 3);
    const g0 = depthwise ? C : group;
    const OC = g0 * r.int(1, 3);
    const kernel = Array.from({ length: rank }, () => r.int(1, 3));
    const spatial = Array.from({ length: rank }, () => r.int(5, 9));
    const strides = Array.from({ length: rank }, () => r.int(1, 2));
    const dil = Array.from({ length: rank }, () => r.int(1, 2));
    const pads = Array.from({ length: 2 * rank }, () => r.int(0, 1));
    // ONNX Runtime's type combinations: uint8 x with int8 or uint8 w, int8 x with int8 w; y as x
    const xType = r.pick(['uint8', 'int8'] as const);
    const wType = xType === 'uint8' ? r.pick(['uint8', 'int8'] as const) : 'int8';
    const yType = xType;
    const perChannel = r.int(0, 1) === 1;
    const x = rand(r, xType, [r.int(1, 2), C, ...spatial]);
    const w = rand(r, wType, [OC, C / g0, ...kernel], wType === 'int8' ? -127 : 0, wType === 'int8' ? 127 : 255);
    const wsDims = perChannel ? [OC] : [];
    const inits: Record<string, TensorData> = {
      xs: f32(0.01 + r.float() * 0.05),
      xz: rand(r, xType, [], xType === 'uint8' ? 100 : -20, xType === 'uint8' ? 150 : 20),
      w,
      ws: t('float32', wsDims, Array.from({ length: elementCount(wsDims) }, () => 0.002 + r.float() * 0.02)),
      wz: t(wType, wsDims, new Array(elementCount(wsDims)).fill(wType === 'int8' ? 0 : 128)),
      ys: f32(0.02 + r.float() * 0.2),
      yz: rand(r, yType, [], yType === 'uint8' ? 100 : -20, yType === 'uint8' ? 150 : 20),
      B: rand(r, 'int32', [OC]),
    };
    const attrs: Record<string, Attr> = { group: { type: 'int', value: g0 }, strides: ints(strides), dilations: ints(dil), pads: ints(pads) };
    const inputs = ['x', 'xs', 'xz', 'w', 'ws', 'wz', 'ys', 'yz', ...(k % 3 ? ['B'] : [])];
    const g = oneNode({ op: 'QLinearConv', inputs, attrs }, { x }, inits, yType);
    await check(`QLinearConv #${k} ${xType}->${yType} x[${x.dims}] w[${w.dims}] group ${g0} s${strides} d${dil} p${pads}`, g, { x });
  }
});

test('QLinearConv auto_pad SAME_UPPER / SAME_LOWER / VALID equal ONNX Runtime', async () => {
  const r = new R(4);
  for (const autoPad of ['SAME_UPPER', 'SAME_LOWER', 'VALID']) {
    const x = rand(r, 'uint8', [1, 3, 8, 7]);
    const w = rand(r, 'uint8', [4, 3, 3, 2]);
    const inits = { xs: f32(0.02), xz: t('uint8', [], [128]), w, ws: f32(0.01), wz: t('uint8', [], [120]), ys: f32(0.3), yz: t('uint8', [], [100]) };
    const attrs: Record<string, Attr> = { auto_pad: { type: 'string', value: autoPad }, strides: ints([2, 2]) };
    const g = oneNode({ op: 'QLinearConv', inputs: ['x', 'xs', 'xz', 'w', 'ws', 'wz', 'ys', 'yz'], attrs }, { x }, inits, 'uint8');
    await check(`QLinearConv ${autoPad}`, g, { x });
  }
});

test('QLinearMatMul equals ONNX Runtime: 2-D, batched, broadcast, 1-D, per-column b', async () => {
  const r = new R(5);
  const cases: Array<[number[], number[], boolean]> = [
    [[3, 17], [17, 5], false],
    [[2, 4, 9], [9, 6], false],
    [[2, 1, 3, 8], [4, 8, 2], false],
    [[8], [8, 3], false],
    [[4, 8], [8], false],
    [[5, 64], [64, 10], true],
  ];
  for (const [da, db, perCol] of cases)
    for (const [aType, bType] of [['uint8', 'int8'], ['uint8', 'uint8'], ['int8', 'int8']] as const) {
      const a = rand(r, aType, da);
      const b = rand(r, bType, db);
      const N = db[db.length - 1];
      const bsDims = perCol ? [N] : [];
      const inits = {
        as: f32(0.01 + r.float() * 0.05), az: rand(r, aType, [], aType === 'uint8' ? 100 : -10, aType === 'uint8' ? 150 : 10),
        b,
        bs: t('float32', bsDims, Array.from({ length: elementCount(bsDims) }, () => 0.002 + r.float() * 0.02)),
        bz: t(bType, bsDims, Array.from({ length: elementCount(bsDims) }, () => (bType === 'uint8' ? r.int(120, 136) : 0))),
        ys: f32(0.05 + r.float() * 0.3), yz: rand(r, aType, [], aType === 'uint8' ? 100 : -20, aType === 'uint8' ? 150 : 20),
      };
      const g = oneNode({ op: 'QLinearMatMul', inputs: ['a', 'as', 'az', 'b', 'bs', 'bz', 'ys', 'yz'] }, { a }, inits, aType);
      await check(`QLinearMatMul ${aType}x${bType} [${da}]x[${db}] perCol=${perCol}`, g, { a });
    }
});

test('MatMulInteger and ConvInteger equal ONNX Runtime with per-row / per-column zero points', async () => {
  const r = new R(6);
  {
    const a = rand(r, 'uint8', [2, 5, 12]);
    const b = rand(r, 'int8', [12, 7]);
    const g = oneNode({ op: 'MatMulInteger', inputs: ['a', 'b', 'az', 'bz'] }, { a }, { b, az: rand(r, 'uint8', []), bz: rand(r, 'int8', [7]) }, 'int32');
    const want = (await ortRun(g, { a })).y;
    assert.equal(diff(createIntSession(g).run({ a }).y, want).n, 0, 'MatMulInteger per-column b zero point');
  }
  {
    // ONNX Runtime takes only a scalar a_zero_point: check the per-row form against the definition
    const a = rand(r, 'uint8', [6, 12]);
    const b = rand(r, 'uint8', [12, 3]);
    const az = rand(r, 'uint8', [6]);
    const g = oneNode({ op: 'MatMulInteger', inputs: ['a', 'b', 'az'] }, { a }, { b, az }, 'int32');
    const A = a.data as Uint8Array, B = b.data as Uint8Array, Z = az.data as Uint8Array;
    const want = Array.from({ length: 18 }, (_, i) => {
      const m = Math.floor(i / 3);
      let s = 0;
      for (let k = 0; k < 12; k++) s += (A[m * 12 + k] - Z[m]) * B[k * 3 + (i % 3)];
      return s;
    });
    assert.deepEqual([...(createIntSession(g).run({ a }).y.data as Int32Array)], want, 'MatMulInteger per-row a zero point');
  }
  for (const pads of [[0, 0, 0, 0], [1, 2, 1, 0]]) {
    const x = rand(r, 'uint8', [2, 4, 6, 6]);
    const w = rand(r, 'uint8', [6, 2, 3, 3]);
    const attrs: Record<string, Attr> = { group: { type: 'int', value: 2 }, pads: ints(pads), strides: ints([1, 2]) };
    const g = oneNode({ op: 'ConvInteger', inputs: ['x', 'w', 'xz', 'wz'], attrs }, { x }, { w, xz: t('uint8', [], [131]), wz: t('uint8', [], [127]) }, 'int32');
    const want = (await ortRun(g, { x })).y;
    assert.equal(diff(createIntSession(g).run({ x }).y, want).n, 0, `ConvInteger pads ${pads}`);
  }
});

test('QuantizeLinear and DequantizeLinear equal ONNX Runtime, ties and saturation included', async () => {
  const r = new R(7);
  const n = 600;
  // multiples of scale/2 are exact ties; large values saturate
  const xs = Array.from({ length: n }, (_, i) => (i % 3 === 0 ? (r.int(-600, 600) * 0.5) : (r.float() - 0.5) * 700));
  const x = t('float32', [2, 3, n / 6], xs);
  for (const [dtype, axis] of [['uint8', -1], ['int8', -1], ['uint8', 1], ['int8', 1]] as const) {
    const perAxis = axis === 1;
    const dims = perAxis ? [3] : [];
    const inits = {
      s: t('float32', dims, perAxis ? [0.5, 2, 1.25] : [1]),
      z: t(dtype, dims, perAxis ? (dtype === 'uint8' ? [128, 3, 250] : [0, -100, 17]) : [dtype === 'uint8' ? 128 : 0]),
    };
    const attrs: Record<string, Attr> = perAxis ? { axis: { type: 'int', value: 1 } } : {};
    const q = oneNode({ op: 'QuantizeLinear', inputs: ['x', 's', 'z'], attrs }, { x }, inits, dtype);
    await check(`QuantizeLinear ${dtype} per-axis=${perAxis}`, q, { x }, -1);
    const qx = createIntSession(q).run({ x }).y;
    const d = oneNode({ op: 'DequantizeLinear', inputs: ['q', 's', 'z'], attrs }, { q: qx }, inits, 'float32');
    const want = (await ortRun(d, { q: qx })).y;
    assert.deepEqual(createIntSession(d).run({ q: qx }).y.data, want.data, `DequantizeLinear ${dtype}`);
  }
});

test('MaxPool on uint8 and int8 equals ONNX Runtime', async () => {
  const r = new R(8);
  for (const dtype of ['uint8', 'int8'] as const)
    for (const [k, s, p, ceil] of [[[3, 3], [2, 2], [1, 1, 1, 1], 0], [[2, 2], [2, 2], [0, 0, 0, 0], 1], [[3, 2], [1, 2], [0, 1, 1, 0], 0]] as const) {
      const x = rand(r, dtype, [2, 3, 9, 8]);
      const attrs: Record<string, Attr> = { kernel_shape: ints([...k]), strides: ints([...s]), pads: ints([...p]), ceil_mode: { type: 'int', value: ceil } };
      const g = oneNode({ op: 'MaxPool', inputs: ['x'], attrs }, { x }, {}, dtype);
      g.opsets[''] = 12;
      await check(`MaxPool ${dtype} k${k} s${s} p${p} ceil${ceil}`, g, { x }, -1);
    }
});

// ---- a whole deployed int8 CNN ------------------------------------------------------------------

/** A QOperator ResNet (as ONNX Runtime's quantizer writes them): stem, residual blocks, pooling, classifier. */
function qResNet(r: R, widths: number[]): Graph {
  const nodes: Graph['nodes'] = [];
  const inits = new Map<string, TensorData>();
  let id = 0;
  const name = (p: string): string => `${p}${id++}`;
  const init = (t: TensorData, p: string): string => {
    const n = name(p);
    inits.set(n, t);
    return n;
  };
  const s = init(f32(0.05), 's');
  const z = init(t('uint8', [], [7]), 'z');
  const conv = (x: string, cin: number, cout: number, k: number, stride: number): string => {
    const y = name('conv');
    const w = init(rand(r, 'int8', [cout, cin, k, k], -127, 127), 'w');
    const ws = init(t('float32', [cout], Array.from({ length: cout }, () => (0.4 + r.float()) / (127 * Math.sqrt(cin * k * k)))), 'ws');
    const wz = init(t('int8', [cout], new Array(cout).fill(0)), 'wz');
    const b = init(rand(r, 'int32', [cout], -200, 200), 'b');
    const p = (k - 1) / 2;
    nodes.push({ name: y, op: 'QLinearConv', inputs: [x, s, z, w, ws, wz, s, z, b], outputs: [y], attrs: { strides: ints([stride, stride]), pads: ints([p, p, p, p]) } });
    return y;
  };
  const add = (a: string, b: string): string => {
    const y = name('add');
    nodes.push({ name: y, op: 'QLinearAdd', domain: 'com.microsoft', inputs: [a, s, z, b, s, z, s, z], outputs: [y], attrs: {} });
    return y;
  };
  nodes.push({ name: 'quant', op: 'QuantizeLinear', inputs: ['x', s, z], outputs: ['xq'], attrs: {} });
  let h = conv('xq', 3, widths[0], 3, 1);
  nodes.push({ name: 'pool', op: 'MaxPool', inputs: [h], outputs: ['hp'], attrs: { kernel_shape: ints([2, 2]), strides: ints([1, 1]) } });
  h = 'hp';
  let cin = widths[0];
  widths.forEach((cout, i) => {
    const stride = i > 0 ? 2 : 1;
    const y = conv(conv(h, cin, cout, 3, stride), cout, cout, 3, 1);
    h = add(y, stride !== 1 || cin !== cout ? conv(h, cin, cout, 1, stride) : h);
    cin = cout;
  });
  nodes.push({ name: 'gap', op: 'QLinearGlobalAveragePool', domain: 'com.microsoft', inputs: [h, s, z, s, z], outputs: ['g'], attrs: {} });
  nodes.push({ name: 'flat', op: 'Flatten', inputs: ['g'], outputs: ['gf'], attrs: {} });
  const fw = init(rand(r, 'int8', [cin, 10], -127, 127), 'fw');
  const fs = init(f32(0.01), 'fs');
  const fz = init(t('int8', [], [0]), 'fz');
  nodes.push({ name: 'fc', op: 'QLinearMatMul', inputs: ['gf', s, z, fw, fs, fz, s, z], outputs: ['lq'], attrs: {} });
  nodes.push({ name: 'dequant', op: 'DequantizeLinear', inputs: ['lq', s, z], outputs: ['y'], attrs: {} });
  return {
    name: 'qresnet', nodes, initializers: inits,
    inputs: [{ name: 'x', dtype: 'float32', shape: ['N', 3, 16, 16] }], outputs: [{ name: 'y', dtype: 'float32' }],
    opsets: { '': 13, 'com.microsoft': 1 },
  };
}

test('a QOperator ResNet equals ONNX Runtime bit for bit, with and without WebAssembly', async () => {
  const r = new R(11);
  const g = qResNet(r, [8, 16, 32]);
  const x = t('float32', [3, 3, 16, 16], Array.from({ length: 3 * 3 * 16 * 16 }, () => r.float() * 3 - 1));
  const want = (await ortRun(g, { x })).y;
  for (const on of [true, false]) {
    const was = setIntWasm(on);
    try {
      const session = createIntSession(g);
      for (let run = 0; run < 2; run++) assert.deepEqual(session.run({ x }).y.data, want.data, `wasm=${on} run ${run}`);
    } finally {
      setIntWasm(was);
    }
  }
  // fixed point: the same network within a few quantization steps of the logits
  const fx = createIntSession(g, { requant: 'fixedpoint' }).run({ x }).y.data as Float32Array;
  const ref = want.data as Float32Array;
  const maxDiff = fx.reduce((m, v, i) => Math.max(m, Math.abs(v - ref[i])), 0);
  assert.ok(maxDiff <= 4 * 0.05, `fixed point logits differ by ${maxDiff}`);
});
