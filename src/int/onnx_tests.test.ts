import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Graph, TensorData } from '../graph/ir.js';
import { writeOnnx } from '../onnx/model.js';
import { writeTensorProto } from '../onnx/tensor.js';
import { compareTensors, formatOnnxTestReport, runOnnxNodeTests, summaryLine } from './onnx_tests.js';

const SUITE = '/usr/share/libonnx-testdata/data/node';
const noSuite = existsSync(SUITE) ? false : `${SUITE} not found (Debian package libonnx-testdata not installed)`;

// Every quantization case of the ONNX node suite; each must pass exactly.
const QUANT_CASES = [
  'test_quantizelinear', 'test_quantizelinear_axis',
  'test_dequantizelinear', 'test_dequantizelinear_axis',
  'test_qlinearconv', 'test_qlinearmatmul_2D', 'test_qlinearmatmul_3D',
  'test_matmulinteger',
  'test_basic_convinteger', 'test_convinteger_with_padding', 'test_convinteger_without_padding',
  'test_dynamicquantizelinear', 'test_dynamicquantizelinear_max_adjusted', 'test_dynamicquantizelinear_min_adjusted',
];
const QUANT_RE = /^test_(quantizelinear|dequantizelinear|qlinear|matmulinteger|.*convinteger|dynamicquantizelinear)/;

test('ONNX node suite: every quantization case passes exactly', { skip: noSuite }, () => {
  const s = runOnnxNodeTests(SUITE, { filter: QUANT_RE });
  const byName = new Map(s.results.map((r) => [r.name, r]));
  for (const name of QUANT_CASES) {
    const r = byName.get(name);
    assert.ok(r, `${name} not found in the suite`);
    assert.equal(r.status, 'passed', `${name}: ${r.reason}`);
  }
  // the *_expanded forms are built from float ops this engine does not have: skipped, naming them
  for (const r of s.results.filter((x) => x.name.endsWith('_expanded'))) {
    assert.equal(r.status, 'skipped', r.name);
    assert.match(r.reason ?? '', /no integer kernel for .*ReduceMin/);
  }
  assert.equal(s.failed, 0);
  assert.equal(s.passed, QUANT_CASES.length);
});

test('ONNX node suite: the data-movement and clamp cases of the kernels we register pass', { skip: noSuite }, () => {
  const s = runOnnxNodeTests(SUITE, { filter: /^test_(maxpool|reshape|flatten|transpose|squeeze|unsqueeze|relu$|clip|identity$)/ });
  const failed = s.results.filter((r) => r.status === 'failed');
  assert.deepEqual(failed, []);
  assert.ok(s.passed >= 50, `only ${s.passed} passed`);
  assert.ok(s.results.some((r) => r.name === 'test_maxpool_2d_uint8' && r.status === 'passed'));
  assert.ok(s.results.some((r) => r.name === 'test_clip_default_int8_min' && r.status === 'passed'));
});

// ---- the runner itself, on a suite written to a temp folder (needs no Debian package) ----------

const u8 = (dims: number[], vals: number[]): TensorData => ({ dtype: 'uint8', dims, data: Uint8Array.from(vals) });
const f32 = (dims: number[], vals: number[]): TensorData => ({ dtype: 'float32', dims, data: Float32Array.from(vals) });

function graph(op: string, inputs: TensorData[], outDtype: TensorData['dtype']): Graph {
  return {
    name: op,
    nodes: [{ name: 'n0', op, inputs: inputs.map((_, i) => `in${i}`), outputs: ['out'], attrs: {} }],
    inputs: inputs.map((t, i) => ({ name: `in${i}`, dtype: t.dtype, shape: t.dims })),
    outputs: [{ name: 'out', dtype: outDtype }],
    initializers: new Map(),
    opsets: { '': 13 },
  };
}

function writeCase(root: string, name: string, g: Graph, inputs: TensorData[], outputs: TensorData[]): void {
  const dir = join(root, name);
  mkdirSync(join(dir, 'test_data_set_0'), { recursive: true });
  writeFileSync(join(dir, 'model.onnx'), writeOnnx(g));
  inputs.forEach((t, i) => writeFileSync(join(dir, 'test_data_set_0', `input_${i}.pb`), writeTensorProto(t)));
  outputs.forEach((t, i) => writeFileSync(join(dir, 'test_data_set_0', `output_${i}.pb`), writeTensorProto(t)));
}

test('runOnnxNodeTests: passes, fails with the mismatch, skips unregistered ops, fails on a throw', () => {
  const root = mkdtempSync(join(tmpdir(), 'qatkit-onnx-tests-'));
  try {
    const x = f32([4], [-2, 0.5, 1, 300]);
    const s = f32([], [2]);
    const z = u8([], [128]);
    const q = graph('QuantizeLinear', [x, s, z], 'uint8');
    writeCase(root, 'test_a_pass', q, [x, s, z], [u8([4], [127, 128, 128, 255])]); // 0.25 -> 0, 0.5 -> 0 (half to even)
    writeCase(root, 'test_b_wrong', q, [x, s, z], [u8([4], [127, 128, 129, 255])]);
    writeCase(root, 'test_c_unsupported', graph('Softmax', [x], 'float32'), [x], [x]);
    writeCase(root, 'test_d_throws', graph('QuantizeLinear', [x, f32([3], [1, 2, 3]), u8([3], [0, 0, 0])], 'uint8'),
      [x, f32([3], [1, 2, 3]), u8([3], [0, 0, 0])], [u8([4], [0, 0, 0, 0])]);
    writeCase(root, 'test_e_float_tolerance', graph('DequantizeLinear', [u8([2], [130, 126]), s, z], 'float32'),
      [u8([2], [130, 126]), s, z], [f32([2], [4.000001, -4])]);
    mkdirSync(join(root, 'not_a_case'));

    const r = runOnnxNodeTests(root);
    const status = Object.fromEntries(r.results.map((c) => [c.name, c.status]));
    assert.deepEqual(status, {
      test_a_pass: 'passed', test_b_wrong: 'failed', test_c_unsupported: 'skipped', test_d_throws: 'failed', test_e_float_tolerance: 'passed',
    });
    const reason = (n: string): string => r.results.find((c) => c.name === n)?.reason ?? '';
    assert.match(reason('test_b_wrong'), /output 'out': 1 of 4 values differ; first at flat index 2: got 128, expected 129/);
    assert.match(reason('test_c_unsupported'), /no integer kernel for Softmax/);
    assert.match(reason('test_d_throws'), /node 'n0' \(op QuantizeLinear\)/);
    assert.equal(summaryLine(r), '2 passed, 2 failed, 1 skipped');
    assert.equal(formatOnnxTestReport(r).split('\n').pop(), '2 passed, 2 failed, 1 skipped');
    assert.match(formatOnnxTestReport(r), /^FAIL test_b_wrong: /m);

    // one case folder on its own, and a filter
    assert.equal(runOnnxNodeTests(join(root, 'test_a_pass')).passed, 1);
    assert.deepEqual(runOnnxNodeTests(root, { filter: 'wrong' }).results.map((c) => c.name), ['test_b_wrong']);
    assert.throws(() => runOnnxNodeTests(join(root, 'missing')), /not a directory/);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('compareTensors: integers exactly, floats with rtol/atol, NaN equal to NaN', () => {
  assert.equal(compareTensors(u8([2], [1, 2]), u8([2], [1, 2]), 1e-3, 1e-7), undefined);
  assert.match(compareTensors(u8([2], [1, 3]), u8([2], [1, 2]), 1e-3, 1e-7) ?? '', /got 3, expected 2/);
  assert.match(compareTensors(u8([1, 2], [1, 2]), u8([2], [1, 2]), 1e-3, 1e-7) ?? '', /shape \[1, 2\], expected \[2\]/);
  assert.match(compareTensors(f32([1], [1]), u8([1], [1]), 1e-3, 1e-7) ?? '', /dtype float32, expected uint8/);
  assert.equal(compareTensors(f32([2], [1000.9, NaN]), f32([2], [1000, NaN]), 1e-3, 1e-7), undefined);
  assert.match(compareTensors(f32([1], [1001.1]), f32([1], [1000]), 1e-3, 1e-7) ?? '', /1 of 1 values differ/);
});
