// QOperator export: what toQOperator writes, its INT4 storage variant in ONNX Runtime, the float model a prepared
// graph simulates, and the size accounting of every format.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as ort from 'onnxruntime-node';
import { initBackend } from '../backend/index.js';
import type { Dataset } from '../data/datasets.js';
import { type Graph, QATKIT_DOMAIN } from '../graph/ir.js';
import { convert } from '../int/convert.js';
import { writePacked } from '../int/packed.js';
import { calibrate, ptq } from '../ptq/calibrate.js';
import { Session } from '../ops/session.js';
import { prepare } from '../transform/prepare.js';
import { QuantController } from '../transform/controller.js';
import { recipeByName } from '../spec/quantspec.js';
import { GraphBuilder } from '../zoo/builder.js';
import { readOnnx, writeOnnx } from './model.js';
import { toQdq } from './qdq.js';
import { INT4_OPSET, formatModelSizes, modelSizes, stripFakeQuant, toQOperator } from './qoperator.js';

const N = 32;
const data: Dataset = {
  name: 'synthetic', n: N, shape: [1, 8, 8], numClasses: 4, mean: [0], std: [1],
  images: Float32Array.from({ length: N * 64 }, (_, i) => Math.sin(i * 0.7) + 0.3 * Math.cos(i * 0.05)),
  labels: Int32Array.from({ length: N }, (_, i) => i % 4),
};

function net(): Graph {
  const b = new GraphBuilder('small', 9);
  const x = b.input('input', ['N', 1, 8, 8]);
  const h = b.flatten(b.maxPool(b.relu(b.conv(x, 1, 8, 3, { pad: 1 })), 2));
  b.output(b.linear(b.relu(b.linear(h, 128, 96)), 96, 4));
  return b.g;
}

async function prepared(recipe: string): Promise<Graph> {
  await initBackend('wasm');
  return ptq(net(), recipeByName(recipe), data, { batches: 1, batchSize: N });
}

/** A calibrated prepared graph whose biases are still the float model's (ptq() snaps them to the int32 grid). */
async function calibratedOnly(recipe: string): Promise<Graph> {
  await initBackend('wasm');
  const session = new Session(prepare(net(), { recipe: recipeByName(recipe), mode: 'ptq' }));
  calibrate(session, new QuantController(session), data, { batches: 1, batchSize: N });
  return session.writeBack();
}

async function ortLogits(model: Uint8Array): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(model, { intraOpNumThreads: 1, logSeverityLevel: 3 });
  try {
    const out = await s.run({ input: new ort.Tensor('float32', data.images, [N, 1, 8, 8]) });
    return out[s.outputNames[0]].data as Float32Array;
  } finally {
    await s.release();
  }
}

test('toQOperator writes the converted graph; ONNX reads it back and ONNX Runtime runs it', async () => {
  const p = await prepared('w8a8');
  const q = toQOperator(p);
  assert.deepEqual(q, convert(p));
  const bytes = writeOnnx(q);
  const back = readOnnx(bytes);
  assert.deepEqual(back.nodes.map((n) => n.op), q.nodes.map((n) => n.op));
  assert.equal(back.meta?.['qatkit.requant'], 'fixedpoint-single');
  assert.ok(!back.nodes.some((n) => n.domain === QATKIT_DOMAIN));
  const logits = await ortLogits(bytes);
  assert.equal(logits.length, N * 4);
  assert.ok(logits.some((v) => v !== 0));
});

test('int4Weights: 4-bit weights as ONNX INT4 behind a Cast at opset 21, which ONNX Runtime runs to the same outputs', async () => {
  const p = await prepared('w4a4');
  const q8 = toQOperator(p);
  const q4 = toQOperator(p, { int4Weights: true });
  assert.equal(q4.opsets[''], INT4_OPSET);
  const casts = q4.nodes.filter((n) => n.op === 'Cast');
  assert.equal(casts.length, 3, 'one per weighted op');
  for (const c of casts) assert.equal(q4.initializers.get(c.inputs[0])!.dtype, 'int4');
  const b8 = writeOnnx(q8);
  const b4 = writeOnnx(q4);
  const weights = 8 * 9 + 128 * 96 + 96 * 4;
  assert.ok(b8.length - b4.length >= 0.45 * weights, `INT4 file ${b4.length} bytes vs ${b8.length}: half a byte saved per weight, less the Casts`);
  assert.deepEqual(await ortLogits(b4), await ortLogits(b8));
  // 8-bit weights stay as they are
  const w8 = toQOperator(await prepared('w8a8'), { int4Weights: true });
  assert.equal(w8.nodes.filter((n) => n.op === 'Cast').length, 0);
  assert.equal(w8.opsets[''], 17);
});

test('stripFakeQuant gives back the float model the prepared graph simulates', async () => {
  const p = await calibratedOnly('w8a8');
  const f = stripFakeQuant(p);
  assert.ok(!f.nodes.some((n) => n.op === 'FakeQuant'));
  assert.equal(f.opsets[QATKIT_DOMAIN], undefined);
  assert.deepEqual([...f.initializers.keys()].sort(), [...net().initializers.keys()].sort());
  assert.deepEqual(await ortLogits(writeOnnx(f)), await ortLogits(writeOnnx(net())));
});

test('modelSizes counts each format as it is written; packing beats the int8 container below 8 bits', async () => {
  for (const recipe of ['w8a8', 'w4a4', 'w2a2']) {
    const p = await prepared(recipe);
    const s = modelSizes(p, net());
    assert.equal(s.float, writeOnnx(net()).length);
    assert.equal(s.qdq, writeOnnx(toQdq(p)).length);
    assert.equal(s.qoperator, writeOnnx(convert(p)).length);
    assert.equal(s.packed, writePacked(convert(p)).length);
    assert.equal(s.weightElements, 8 * 9 + 128 * 96 + 96 * 4);
    if (recipe !== 'w8a8') assert.ok(s.qoperatorInt4 < s.qoperator && s.packed < s.qoperatorInt4, `${recipe}: ${JSON.stringify(s)}`);
    const table = formatModelSizes(s, recipe);
    assert.match(table, new RegExp(`^${recipe} \\(${s.weightElements} weight elements\\)`));
    assert.match(table, new RegExp(`packed \\(\\.qatk\\)\\s+${s.packed}\\s+1/${(s.float / s.packed).toFixed(2)}`));
  }
});
