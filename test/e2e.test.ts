// End to end on real MNIST, small enough for CI: train LeNet-5, PTQ and QAT, export ONNX QDQ, run it in ONNX Runtime.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { qat, tempDir } from './helpers.js';
import type { DemoRow as Row } from '../src/cli/demo.js';


test('qat demo on an MNIST subset: float, PTQ and QAT rows, ONNX Runtime agrees with the simulation', () => {
  const dir = tempDir('e2e');
  const out = join(dir, 'table.json');
  const r = qat(['demo', '--data', 'mnist', '--limit', '4000', '--test-limit', '1000', '--epochs', '2', '--qat-epochs', '1', '--recipes', 'w8a8,w4a4', '--workdir', dir, '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const rows = JSON.parse(readFileSync(out, 'utf8')) as Row[];
  assert.deepEqual(
    rows.map((x) => `${x.recipe}/${x.method}`),
    ['fp32/float', 'w8a8/ptq', 'w8a8/qat', 'w4a4/ptq', 'w4a4/qat'],
  );
  for (const row of rows) {
    assert.equal(row.dataset, 'mnist');
    assert.equal(row.model, 'lenet5');
    for (const k of ['accuracy_sim', 'accuracy_ort', 'agreement'] as const) assert.ok(row[k] >= 0 && row[k] <= 1, `${k} is a fraction`);
  }
  const [float, ptq8, qat8, , qat4] = rows;
  assert.ok(float.accuracy_sim > 0.9, `float accuracy ${float.accuracy_sim}`);
  assert.equal(float.accuracy_ort, float.accuracy_sim, 'the float ONNX model gives the same accuracy in ONNX Runtime');
  assert.ok(Math.abs(ptq8.accuracy_sim - float.accuracy_sim) <= 0.01, 'w8a8 PTQ within 1 point of float');
  assert.ok(qat4.accuracy_sim > 0.85, `w4a4 QAT ${qat4.accuracy_sim}`);
  for (const row of [ptq8, qat8]) {
    assert.ok(Math.abs(row.accuracy_ort - row.accuracy_sim) <= 0.002, `${row.method} w8a8: ORT ${row.accuracy_ort} vs sim ${row.accuracy_sim}`);
    assert.ok(row.agreement >= 0.99, `${row.method} w8a8 agreement ${row.agreement}`);
  }
  for (const row of rows.slice(1)) {
    assert.ok(row.agreement >= 0.99, `${row.recipe} ${row.method} agreement ${row.agreement}`);
    assert.ok(row.bytes < float.bytes / 3, 'int8 weights: QDQ model under a third of the float bytes');
    // the converted integer model in our engine scores what the simulation scores (1 image of 1000 at most)
    assert.ok(row.accuracy_int !== null && Math.abs(row.accuracy_int - row.accuracy_sim) <= 0.001, `${row.recipe} ${row.method}: int ${row.accuracy_int} vs sim ${row.accuracy_sim}`);
    assert.ok(row.bytes_packed !== null && row.bytes_packed < row.bytes, 'the packed file is smaller than the ONNX export');
  }
  assert.equal(rows[0].accuracy_int, null);
  for (const f of ['float.onnx', 'w8a8-ptq.qdq.onnx', 'w4a4-qat.qdq.onnx', 'w4a4-qat.qat.onnx', 'w4a4-qat.qatk', 'w8a8-ptq.qop.onnx']) assert.ok(existsSync(join(dir, f)), f);
  assert.match(r.stdout, /\|\s*dataset\s*\|\s*model\s*\|\s*recipe\s*\|\s*method\s*\|/);
});
