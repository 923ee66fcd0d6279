// The integer model end to end on real data: train LeNet-5 on 3000 MNIST images (wasm backend), PTQ and QAT at w8a8
// and w4a4, convert to QOperator form, run it in qatkit's integer engine and in ONNX Runtime, and compare every
// integer tensor; then the same for ResNet-8's residual QLinearAdd and QLinearGlobalAveragePool, and the sizes of
// the packed sub-8-bit files. Prints the numbers the report quotes.
//
// Where results differ and why:
// - engine vs ONNX Runtime: our 'fixedpoint-single' requantization rounds acc * M once with a Q31 multiplier, ORT
//   rounds float32(acc) * float32(M) half to even; they differ only when acc * M is within float rounding error of a
//   .5 tie. gemmlowp's double rounding ('fixedpoint') first rounds to Q31 x 2^-right and is off by one whenever that
//   lands on a tie (measured below; up to 6 % of a conv layer's outputs where MNIST's constant background repeats one
//   accumulator per channel). With 'float' requantization the engine is ORT bit for bit.
// - engine vs the fake-quant simulation: the int32 bias at scale s_x * s_w is rounded (up to 0.5 s_x s_w / s_y of an
//   output step), float32 accumulation in the simulation vs exact integers, and x * (1/s) (the simulation, as
//   PyTorch) vs x / s (ONNX QuantizeLinear) at the input.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { initBackend } from '../src/backend/index.js';
import { type Dataset, loadDataset } from '../src/data/datasets.js';
import type { DType, Graph, TensorData } from '../src/graph/ir.js';
import { convert, integerValues, withIntegerBiases, withOutputs } from '../src/int/convert.js';
import { createIntSession } from '../src/int/engine.js';
import { createPackedSession, readPacked, writePacked } from '../src/int/packed.js';
import type { Requant } from '../src/int/registry.js';
import { writeOnnx } from '../src/onnx/model.js';
import { formatModelSizes, modelSizes } from '../src/onnx/qoperator.js';
import { evaluateGraph, qat, trainFloat } from '../src/pipeline/steps.js';
import { ptq } from '../src/ptq/calibrate.js';
import { recipeByName } from '../src/spec/quantspec.js';
import { buildModel } from '../src/zoo/models.js';

const TRAIN = 3000;
const TEST = 2000;

function images(ds: Dataset, n = ds.n): TensorData {
  const per = ds.shape[0] * ds.shape[1] * ds.shape[2];
  return { dtype: 'float32', dims: [n, ...ds.shape], data: ds.images.subarray(0, n * per) };
}

async function ortRun(g: Graph, feeds: Record<string, TensorData>): Promise<Record<string, TensorData>> {
  const s = await ort.InferenceSession.create(writeOnnx(g), { intraOpNumThreads: 1, logSeverityLevel: 3 });
  try {
    const inp: Record<string, ort.Tensor> = {};
    for (const [k, v] of Object.entries(feeds)) inp[k] = new ort.Tensor(v.dtype as 'float32', v.data as Float32Array, v.dims);
    const out = await s.run(inp);
    return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, { dtype: v.type as DType, dims: [...v.dims], data: v.data as Uint8Array }]));
  } finally {
    await s.release();
  }
}

/** Elements compared and how they differ; 8-bit activations and int32 accumulators apart (one step of an 8-bit input
 *  moves an accumulator by a weight). */
interface Parity { elements: number; differ: number; maxDiff: number; worst: string; acc: { elements: number; differ: number }; byTensor: Record<string, number> }

/** Element-wise comparison of every integer tensor in `names`. */
function parity(a: Record<string, TensorData>, b: Record<string, TensorData>, names: string[]): Parity {
  const p: Parity = { elements: 0, differ: 0, maxDiff: 0, worst: '', acc: { elements: 0, differ: 0 }, byTensor: {} };
  for (const n of names) {
    const x = a[n].data as ArrayLike<number>;
    const y = b[n].data as ArrayLike<number>;
    assert.equal(a[n].dtype, b[n].dtype, `${n} dtype`);
    assert.deepEqual(a[n].dims, b[n].dims, `${n} dims`);
    let differ = 0;
    const eight = a[n].dtype !== 'int32';
    for (let i = 0; i < x.length; i++) {
      const d = Math.abs(x[i] - y[i]);
      if (d) differ++;
      if (eight && d > p.maxDiff) [p.maxDiff, p.worst] = [d, n];
    }
    if (differ) p.byTensor[n] = differ;
    if (eight) {
      p.elements += x.length;
      p.differ += differ;
    } else {
      p.acc.elements += x.length;
      p.acc.differ += differ;
    }
  }
  return p;
}

const pct = (p: Parity): string =>
  `8-bit ${(100 * (1 - p.differ / p.elements)).toFixed(4)}% equal (max diff ${p.maxDiff}), int32 ${(100 * (1 - p.acc.differ / p.acc.elements)).toFixed(3)}% equal` +
  (p.differ ? ` [${Object.entries(p.byTensor).map(([k, v]) => `${k}: ${v}`).join(', ')}]` : '');

function accuracy(logits: TensorData, ds: Dataset): number {
  const l = logits.data as Float32Array;
  const k = l.length / ds.n;
  let ok = 0;
  for (let i = 0; i < ds.n; i++) {
    let best = 0;
    for (let j = 1; j < k; j++) if (l[i * k + j] > l[i * k + best]) best = j;
    if (best === ds.labels[i]) ok++;
  }
  return ok / ds.n;
}

function argmaxes(t: TensorData): Int32Array {
  const l = t.data as Float32Array;
  const k = t.dims[t.dims.length - 1];
  return Int32Array.from({ length: l.length / k }, (_, i) => {
    let best = 0;
    for (let j = 1; j < k; j++) if (l[i * k + j] > l[i * k + best]) best = j;
    return best;
  });
}

interface OrtComparison {
  /** the whole network run in each engine: differences propagate from layer to layer */
  network: Parity;
  /** each integer op fed ONNX Runtime's own inputs: its rounding alone */
  perOp: Parity;
  /** share of examples where both engines' logits have the same argmax */
  agreement: number;
}

/** Our engine against ONNX Runtime on every integer tensor, per requantization mode. */
async function compareWithOrt(prepared: Graph, x: TensorData, modes: Requant[]): Promise<Record<Requant, OrtComparison>> {
  const c = convert(prepared);
  const names = integerValues(c);
  const all = withOutputs(c, names);
  const feeds: Record<string, TensorData> = { [c.inputs[0].name]: x };
  const ref = await ortRun(all, feeds);
  const outName = c.outputs[0].name;
  const refArgmax = argmaxes(ref[outName]);
  const out = {} as Record<Requant, OrtComparison>;
  for (const requant of modes) {
    const ours = createIntSession(all, { requant }).run(feeds);
    const mine = argmaxes(ours[outName]);
    // one-node graphs on ONNX Runtime's values of the node's inputs
    const single: Record<string, TensorData> = {};
    for (const n of c.nodes) {
      const o = n.outputs[0];
      if (!names.includes(o)) continue;
      const live = n.inputs.filter((i) => i && !c.initializers.has(i));
      const g1: Graph = {
        ...c, nodes: [n], inputs: live.map((name) => ({ name, dtype: (ref[name] ?? feeds[name]).dtype })), outputs: [{ name: o, dtype: ref[o].dtype }],
      };
      single[o] = createIntSession(g1, { requant }).run(Object.fromEntries(live.map((i) => [i, ref[i] ?? feeds[i]])))[o];
    }
    out[requant] = {
      network: parity(ours, ref, names),
      perOp: parity(single, ref, Object.keys(single)),
      agreement: mine.filter((v, i) => v === refArgmax[i]).length / mine.length,
    };
  }
  return out;
}

const summary = (r: OrtComparison): string =>
  `network: ${pct(r.network)}; per op on ORT's inputs: ${pct(r.perOp)}; argmax agreement ${(100 * r.agreement).toFixed(2)}%`;

/** The lead's parity bar: >= 99.9 % of 8-bit elements equal, each op within one step, predictions agree. */
function assertParity(name: string, r: OrtComparison): void {
  assert.ok(r.network.differ <= 0.001 * r.network.elements, `${name}: ${summary(r)}`);
  assert.ok(r.perOp.differ <= 0.001 * r.perOp.elements, `${name}: ${summary(r)}`);
  assert.ok(r.perOp.maxDiff <= 1, `${name}: ${summary(r)}`);
  assert.ok(r.agreement >= 0.995, `${name}: ${summary(r)}`);
}

const budget = { batchSize: 64, seed: 1 };
let lenet: Promise<{ float: Graph; train: Dataset; test: Dataset; variants: Array<[string, Graph]> }> | undefined;

/** LeNet-5 trained 2 epochs on 3000 MNIST images, and its w8a8 / w4a4 PTQ and QAT (1 epoch) graphs. Built once. */
function lenetModels() {
  lenet ??= (async () => {
    await initBackend('wasm');
    const train = loadDataset('mnist', { split: 'train', limit: TRAIN });
    const test = loadDataset('mnist', { split: 'test', limit: TEST });
    const g0 = buildModel('lenet5', { inputShape: [1, 28, 28], numClasses: 10, seed: 1 });
    const { graph: float } = await trainFloat(g0, train, { ...budget, epochs: 2, lr: 0.05 });
    const variants: Array<[string, Graph]> = [];
    for (const r of ['w8a8', 'w4a4']) {
      variants.push([`${r} PTQ`, ptq(float, recipeByName(r), train, { batches: 8, batchSize: 64, seed: 1 })]);
      variants.push([`${r} QAT`, (await qat(float, recipeByName(r), train, { ...budget, epochs: 1, lr: 0.01 })).graph]);
    }
    return { float, train, test, variants };
  })();
  return lenet;
}

test('LeNet-5 on MNIST: the integer engine equals ONNX Runtime on every integer tensor (w8a8, w4a4; PTQ, QAT)', async () => {
  const { test: ds, variants } = await lenetModels();
  const x = images(ds);
  for (const [name, g] of variants) {
    const r = await compareWithOrt(g, x, ['fixedpoint-single', 'float', 'fixedpoint']);
    console.log(`# LeNet-5 ${name}, ${r.float.network.elements} 8-bit and ${r.float.network.acc.elements} int32 elements`);
    for (const m of ['fixedpoint-single', 'float', 'fixedpoint'] as const) console.log(`#   ${m}: ${summary(r[m])}`);
    assertParity(name, r['fixedpoint-single']);
    assert.equal(r.float.network.differ + r.float.network.acc.differ, 0, `${name}: float requantization is ONNX Runtime's arithmetic: ${summary(r.float)}`);
  }
});

test('LeNet-5: integer accuracy vs the fake-quant simulation; sub-8-bit Clips fold into requantization', async () => {
  const { test: ds, variants } = await lenetModels();
  const x = images(ds);
  for (const [name, g] of variants) {
    const sim = evaluateGraph(g, ds);
    const simInt = evaluateGraph(withIntegerBiases(g), ds);
    const c = convert(g);
    const fused = createIntSession(c).run({ input: x });
    const unfused = createIntSession(c, { fuseClamp: false }).run({ input: x });
    assert.deepEqual(fused[c.outputs[0].name].data, unfused[c.outputs[0].name].data, `${name}: folding Clip into the QLinear op changes nothing`);
    const acc = accuracy(fused[c.outputs[0].name], ds);
    const pred = argmaxes(fused[c.outputs[0].name]);
    const agree = (p: Int32Array) => pred.filter((v, i) => v === p[i]).length / ds.n;
    console.log(`# LeNet-5 ${name} on ${ds.n} test images: integer engine ${(100 * acc).toFixed(2)}%; simulation ${(100 * sim.accuracy).toFixed(2)}% ` +
      `(agreement ${(100 * agree(sim.predictions)).toFixed(2)}%); simulation with int32-grid biases ${(100 * simInt.accuracy).toFixed(2)}% ` +
      `(agreement ${(100 * agree(simInt.predictions)).toFixed(2)}%)`);
    assert.ok(sim.accuracy > 0.85, `${name}: a trained model (${sim.accuracy})`);
    // the bias's int32 rounding is the only modelling difference: without it the simulation is the integer model
    assert.ok(Math.abs(acc - simInt.accuracy) <= 0.001 + 1e-12, `${name}: engine ${acc} vs simulation with integer biases ${simInt.accuracy}`);
    assert.ok(agree(simInt.predictions) >= 0.999, `${name}: predictions agree with the integer-bias simulation`);
    // with the float bias the simulation is a slightly different model; at 8 bits the bias grid is fine enough
    if (name.startsWith('w8a8')) assert.ok(Math.abs(acc - sim.accuracy) <= 0.001 + 1e-12, `${name}: engine ${acc} vs simulation ${sim.accuracy}`);
  }
});

test('ResNet-8 (QLinearAdd, QLinearGlobalAveragePool): engine equals ONNX Runtime, PTQ and QAT', async () => {
  await initBackend('wasm');
  const train = loadDataset('mnist', { split: 'train', limit: 512 });
  const ds = loadDataset('mnist', { split: 'test', limit: 200 });
  const g0 = buildModel('resnet8', { inputShape: [1, 28, 28], numClasses: 10, seed: 2 });
  const { graph: float } = await trainFloat(g0, train, { ...budget, epochs: 1, lr: 0.05 });
  for (const r of ['w8a8', 'w4a4']) {
    const graphs: Array<[string, Graph]> = [
      ['PTQ', ptq(float, recipeByName(r), train, { batches: 4, batchSize: 64, seed: 1 })],
      ['QAT', (await qat(float, recipeByName(r), train, { ...budget, epochs: 1, lr: 0.01 })).graph],
    ];
    for (const [method, g] of graphs) {
      const c = convert(g);
      const ops = new Set(c.nodes.map((n) => n.op));
      for (const op of ['QLinearAdd', 'QLinearGlobalAveragePool', 'QLinearConv', 'MatMulInteger']) assert.ok(ops.has(op), `${op} in the converted ResNet-8`);
      const res = await compareWithOrt(g, images(ds), ['fixedpoint-single', 'float', 'fixedpoint']);
      console.log(`# ResNet-8 ${r} ${method}`);
      for (const m of ['fixedpoint-single', 'float', 'fixedpoint'] as const) console.log(`#   ${m}: ${summary(res[m])}`);
      assertParity(`ResNet-8 ${r} ${method}`, res['fixedpoint-single']);
      assert.equal(res.float.network.differ + res.float.network.acc.differ, 0, `float requantization: ${summary(res.float)}`);
    }
  }
});

test('packed sub-8-bit files: MLP w4 <= 1/7 and w2 <= 1/13 of the float ONNX bytes, and they run unchanged', async () => {
  await initBackend('wasm');
  const train = loadDataset('mnist', { split: 'train', limit: 1000 });
  const ds = loadDataset('mnist', { split: 'test', limit: 200 });
  const g0 = buildModel('mlp', { inputShape: [1, 28, 28], numClasses: 10, seed: 3 });
  const { graph: float } = await trainFloat(g0, train, { ...budget, epochs: 1, lr: 0.05 });
  const floatBytes = writeOnnx(float).length;
  const x = images(ds);
  for (const [r, limit] of [['w8a8', 1 / 3.5], ['w4a4', 1 / 7], ['w2a2', 1 / 13]] as const) {
    const g = ptq(float, recipeByName(r), train, { batches: 4, batchSize: 64, seed: 1 });
    const sizes = modelSizes(g, float);
    console.log(formatModelSizes(sizes, `MLP 784-256-128-10 ${r}`).replace(/^/gm, '# '));
    assert.equal(sizes.float, floatBytes);
    assert.ok(sizes.packed <= limit * floatBytes, `${r}: packed ${sizes.packed} bytes vs float ${floatBytes}`);
    assert.ok(sizes.packed < sizes.qoperator || r === 'w8a8', `${r}: packing beats the int8 container`);
    const c = convert(g);
    const bytes = writePacked(c);
    const want = createIntSession(c).run({ input: x });
    const got = createPackedSession(bytes).run({ input: x });
    assert.deepEqual(got, want, `${r}: the packed file computes what the converted graph does`);
    assert.deepEqual([...readPacked(bytes).initializers.keys()], [...c.initializers.keys()]);
  }
  // LeNet-5 for the record: its fixed overhead (JSON header, per-channel float scales) is a larger share
  const { float: lf, variants } = await lenetModels();
  for (const [name, g] of variants) if (name.endsWith('PTQ')) console.log(formatModelSizes(modelSizes(g, lf), `LeNet-5 ${name}`).replace(/^/gm, '# '));
});
