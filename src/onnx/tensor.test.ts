import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import type { TensorData } from '../graph/ir.js';
import { ProtoReader, ProtoWriter } from './protobuf.js';
import { packNibbles, readNamedTensorProto, readTensorProto, unpackNibbles, writeTensorProto } from './tensor.js';
import { readOnnx } from './model.js';

const FIXTURES = new URL('../../../test/fixtures/onnx/tensors/', import.meta.url);
const TESTDATA = '/usr/share/libonnx-testdata/data/node';

const samples: TensorData[] = [
  { dtype: 'float32', dims: [2, 3], data: Float32Array.of(0, -1.5, 3.25, 1e-30, -0, Infinity) },
  { dtype: 'float64', dims: [2], data: Float64Array.of(Math.PI, -1e300) },
  { dtype: 'float16', dims: [3], data: Uint16Array.of(0x3c00, 0xc000, 0x7bff) },
  { dtype: 'int8', dims: [4], data: Int8Array.of(-128, -1, 0, 127) },
  { dtype: 'uint8', dims: [2, 2], data: Uint8Array.of(0, 1, 128, 255) },
  { dtype: 'int16', dims: [2], data: Int16Array.of(-32768, 32767) },
  { dtype: 'uint16', dims: [2], data: Uint16Array.of(0, 65535) },
  { dtype: 'int32', dims: [3], data: Int32Array.of(-(2 ** 31), -1, 2 ** 31 - 1) },
  { dtype: 'uint32', dims: [2], data: Uint32Array.of(0, 2 ** 32 - 1) },
  { dtype: 'int64', dims: [3], data: BigInt64Array.of(-(2n ** 63n), -1n, 2n ** 63n - 1n) },
  { dtype: 'uint64', dims: [2], data: BigUint64Array.of(0n, 2n ** 64n - 1n) },
  { dtype: 'int4', dims: [5], data: Int8Array.of(1, -1, 7, -8, 3) },
  { dtype: 'uint4', dims: [2, 2], data: Uint8Array.of(0, 15, 9, 4) },
  { dtype: 'bool', dims: [3], data: Uint8Array.of(1, 0, 1) },
  { dtype: 'string', dims: [2], data: ['abc', 'héllo'] },
  { dtype: 'float32', dims: [], data: Float32Array.of(2.5) },
  { dtype: 'int64', dims: [0, 3], data: new BigInt64Array(0) },
];

test('every dtype round trips through raw_data and through the typed fields', () => {
  for (const t of samples)
    for (const layout of ['raw', 'typed'] as const) {
      const back = readNamedTensorProto(writeTensorProto(t, 'w', { layout }));
      assert.equal(back.name, 'w');
      assert.deepEqual(back.tensor, t, `${t.dtype} ${layout}`);
    }
});

/** The raw_data bytes of a serialized TensorProto. */
function rawDataOf(b: Uint8Array): Uint8Array | undefined {
  const r = new ProtoReader(b);
  while (!r.eof()) {
    const { field, wire } = r.tag();
    if (field === 9) return r.bytesView();
    r.skip(wire);
  }
  return undefined;
}

test('int4/uint4 are written two per byte, first element in the low nibble', () => {
  assert.deepEqual(packNibbles([1, -1, 7, -8, 3]), Uint8Array.of(0xf1, 0x87, 0x03));
  assert.deepEqual(unpackNibbles(Uint8Array.of(0xf1, 0x87, 0x03), 5, true), Int8Array.of(1, -1, 7, -8, 3));
  assert.deepEqual(rawDataOf(writeTensorProto(samples[11])), Uint8Array.of(0xf1, 0x87, 0x03));
  assert.deepEqual(rawDataOf(writeTensorProto(samples[12])), Uint8Array.of(0xf0, 0x49));
  assert.deepEqual(rawDataOf(writeTensorProto(samples[0]))?.subarray(4, 8), new Uint8Array(Float32Array.of(-1.5).buffer));
});

test('TensorProtos written by onnx.helper (typed fields) read as the reference says', () => {
  const index = JSON.parse(readFileSync(new URL('index.json', FIXTURES), 'utf8')) as {
    tensors: { file: string; name: string; dtype: string; dims: number[]; data: (number | string)[] }[];
  };
  assert.ok(index.tensors.length >= 13);
  for (const e of index.tensors) {
    const { name, tensor } = readNamedTensorProto(new Uint8Array(readFileSync(new URL(e.file, FIXTURES))), e.file);
    assert.equal(name, e.name);
    assert.equal(tensor.dtype, e.dtype);
    assert.deepEqual(tensor.dims, e.dims);
    const got = Array.from(tensor.data as ArrayLike<unknown>, (v) => (typeof v === 'bigint' ? v.toString() : v));
    assert.deepEqual(got, e.data, e.file);
  }
});

test('external data, size mismatches and unsupported element types give clear errors', () => {
  const ext = new ProtoWriter()
    .packedVarints(1, [4]).varintField(2, 1).stringField(8, 'conv.weight')
    .messageField(13, (m) => m.stringField(1, 'location').stringField(2, 'weights.bin'))
    .varintField(14, 1)
    .finish();
  assert.throws(() => readTensorProto(ext, 'model.onnx'), /model\.onnx tensor 'conv\.weight': data is stored externally in 'weights\.bin'/);

  const short = new ProtoWriter().packedVarints(1, [2, 2]).varintField(2, 1).stringField(8, 'b').bytesField(9, new Uint8Array(12)).finish();
  assert.throws(() => readTensorProto(short), /tensor 'b': raw_data has 12 bytes, 4 float32 values need 16/);

  const typed = new ProtoWriter().packedVarints(1, [3]).varintField(2, 7).stringField(8, 'i').packedVarints(7, [1, 2]).finish();
  assert.throws(() => readTensorProto(typed), /tensor 'i': int64_data has 2 values, 3 int64 values need 3/);

  const nodata = new ProtoWriter().packedVarints(1, [2]).varintField(2, 1).finish();
  assert.throws(() => readTensorProto(nodata), /float_data has 0 values.*\(no data field set\)/);

  const bf16 = new ProtoWriter().packedVarints(1, [1]).varintField(2, 16).stringField(8, 'h').bytesField(9, new Uint8Array(2)).finish();
  assert.throws(() => readTensorProto(bf16), /tensor 'h': tensor element type BFLOAT16 is not supported/);

  assert.throws(() => writeTensorProto({ dtype: 'int8', dims: [3], data: Int8Array.of(1, 2) }, 'x'), /tensor 'x': 2 values for dims \[3\] \(3 needed\)/);
  assert.throws(() => writeTensorProto({ dtype: 'int8', dims: [2], data: Uint8Array.of(1, 2) }, 'x'), /int8 tensor needs Int8Array data, got Uint8Array/);
  assert.throws(() => readTensorProto(Uint8Array.of(0x0a, 0x09, 0x01)), /malformed protobuf in TensorProto at byte 1: length 9 runs past the end/);
});

const rne = (v: number) => {
  const r = Math.round(v);
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
};

function loadCase(dir: string) {
  const model = readOnnx(new Uint8Array(readFileSync(`${dir}/model.onnx`)), `${dir}/model.onnx`);
  const read = (f: string) => readNamedTensorProto(new Uint8Array(readFileSync(`${dir}/test_data_set_0/${f}`)), f);
  const inputs = model.inputs.map((_, i) => read(`input_${i}.pb`));
  const outputs = model.outputs.map((_, i) => read(`output_${i}.pb`));
  // each .pb is named after, typed and shaped like the model's input/output it feeds
  for (const [vals, infos] of [[inputs, model.inputs], [outputs, model.outputs]] as const)
    infos.forEach((info, i) => {
      assert.equal(vals[i].name, info.name);
      assert.equal(vals[i].tensor.dtype, info.dtype);
      assert.deepEqual(vals[i].tensor.dims, info.shape);
    });
  return { inputs: inputs.map((v) => v.tensor), output: outputs[0].tensor };
}

test('libonnx-testdata test_quantizelinear: dims, dtypes and values agree with the model', { skip: !existsSync(`${TESTDATA}/test_quantizelinear`) && 'libonnx-testdata not installed' }, () => {
  const { inputs: [x, s, z], output } = loadCase(`${TESTDATA}/test_quantizelinear`);
  assert.deepEqual(Array.from(x.data as Float32Array), [0, 2, 3, 1000, -254, -1000]);
  const scale = (s.data as Float32Array)[0], zp = (z.data as Uint8Array)[0];
  const want = Array.from(x.data as Float32Array, (v) => Math.min(255, Math.max(0, rne(v / scale) + zp)));
  assert.deepEqual(Array.from(output.data as Uint8Array), want);
  assert.deepEqual(want, [128, 129, 130, 255, 1, 0]);
});

test('libonnx-testdata test_qlinearconv: dims, dtypes and values agree with the model', { skip: !existsSync(`${TESTDATA}/test_qlinearconv`) && 'libonnx-testdata not installed' }, () => {
  const { inputs, output } = loadCase(`${TESTDATA}/test_qlinearconv`);
  const [x, xs, xz, w, ws, wz, ys, yz] = inputs.map((t) => Array.from(t.data as ArrayLike<number>));
  assert.deepEqual(inputs[0].dims, [1, 1, 7, 7]);
  assert.deepEqual(inputs[3].dims, [1, 1, 1, 1]);
  // a 1x1 kernel: y = requantize((x - xz) * (w - wz)) elementwise
  const m = (xs[0] * ws[0]) / ys[0];
  const want = x.map((v) => Math.min(255, Math.max(0, rne((v - xz[0]) * (w[0] - wz[0]) * m) + yz[0])));
  assert.deepEqual(Array.from(output.data as Uint8Array), want);
});
