// Bad input ends with one clear message naming what is wrong and where, a non-zero exit, and nothing half-written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { emptyGraph, floatTensor, ints } from '../src/graph/ir.js';
import { writeOnnx } from '../src/onnx/model.js';
import { qat, tempDir } from './helpers.js';

const dir = tempDir('cli');
const FIX = new URL('../../test/fixtures/onnx/', import.meta.url).pathname;

function oneLineError(r: { code: number; stderr: string }, re: RegExp): void {
  assert.notEqual(r.code, 0, 'exit code must be non-zero');
  assert.match(r.stderr, re);
  assert.doesNotMatch(r.stderr, /^\s+at /m, 'a user error prints no stack trace');
}

test('a malformed ONNX file: the error names the file and what is malformed', () => {
  const bad = join(dir, 'truncated.onnx');
  const good = readFileSync(join(FIX, 'mlp_op13.onnx'));
  writeFileSync(bad, good.subarray(0, Math.floor(good.length / 2)));
  const r = qat(['eval', bad, '--data', 'digits']);
  oneLineError(r, /malformed|truncated/i);
  assert.ok(r.stderr.includes(bad), 'names the file');
  assert.match(r.stderr, /byte \d+/, 'says where in the file');
  const garbage = join(dir, 'garbage.onnx');
  writeFileSync(garbage, 'this is not a protobuf at all, just text\n');
  oneLineError(qat(['eval', garbage, '--data', 'digits']), /garbage\.onnx/);
  oneLineError(qat(['eval', join(dir, 'missing.onnx'), '--data', 'digits']), /missing\.onnx.*no such file/);
});

test('an unsupported op: the error names the node and the op', () => {
  const g = emptyGraph('weird');
  g.inputs.push({ name: 'input', dtype: 'float32', shape: ['N', 1, 8, 8] });
  g.initializers.set('w', floatTensor([2, 1, 3, 3]));
  g.nodes.push(
    { name: 'c1', op: 'Conv', inputs: ['input', 'w'], outputs: ['c'], attrs: { pads: ints([1, 1, 1, 1]) } },
    { name: 'my_roialign', op: 'RoiAlign', inputs: ['c'], outputs: ['y'], attrs: {} },
  );
  g.outputs.push({ name: 'y', dtype: 'float32' });
  const p = join(dir, 'unsupported.onnx');
  writeFileSync(p, writeOnnx(g));
  oneLineError(qat(['eval', p, '--data', 'digits']), /node 'my_roialign' \(op RoiAlign\)/);
  const out = join(dir, 'never.onnx');
  oneLineError(qat(['ptq', p, '--data', 'digits', '--out', out]), /node 'my_roialign' \(op RoiAlign\)/);
  assert.equal(existsSync(out), false, 'no output file after a failure');
});

test('a missing data folder: the error names the folder and how to get the data', () => {
  const r = qat(['train', '--data', 'fashion-mnist', '--data-dir', join(dir, 'nowhere'), '--out', join(dir, 'm.onnx')]);
  oneLineError(r, /nowhere/);
  assert.match(r.stderr, /apt-get install dataset-fashion-mnist|--data-dir/);
  assert.equal(existsSync(join(dir, 'm.onnx')), false);
});

test('an unknown recipe, bits out of range, and data that does not fit the model', () => {
  const model = join(FIX, 'mlp_op13.onnx');
  oneLineError(qat(['ptq', model, '--recipe', 'w5z9', '--data', 'digits', '--out', join(dir, 'a.onnx')]), /unknown recipe 'w5z9'/);
  oneLineError(qat(['ptq', model, '--recipe', 'w9a8', '--data', 'digits', '--out', join(dir, 'a.onnx')]), /bits must be an integer in 2\.\.8/);
  // the fixture MLP takes [N, 1, 8, 8]? whatever it takes, MNIST's 28x28 images do not fit it
  oneLineError(qat(['eval', model, '--data', 'mnist', '--test-limit', '10']), /does not fit|has shape/);
  oneLineError(qat(['demo', '--bogus-flag']), /unknown option --bogus-flag/);
  assert.deepEqual(readdirSync(dir).filter((f) => f.startsWith('a.onnx')), []);
});
