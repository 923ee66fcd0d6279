// The packed .qatk format: bit packing at every width, a lossless round trip of graphs with every dtype and attribute
// kind, sizes as documented, loud failures on damaged files, and converted models that run unchanged after packing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { type Graph, type TensorData, elementCount } from '../graph/ir.js';
import { createIntSession } from './engine.js';
import {
  PACKED_VERSION, bitsNeeded, createPackedSession, isPacked, packBits, packedBreakdown, readPacked, unpackBits, writePacked,
} from './packed.js';

test('packBits / unpackBits round trip at 2, 4, 8, 16 and 32 bits, signed and unsigned, edge values included', () => {
  for (const bits of [2, 4, 8, 16, 32]) {
    for (const signed of [true, false]) {
      const lo = signed ? -(2 ** (bits - 1)) : 0;
      const hi = signed ? 2 ** (bits - 1) - 1 : 2 ** bits - 1;
      const vals = [lo, hi, 0, lo + 1, hi - 1, ...Array.from({ length: 37 }, (_, i) => lo + Math.floor(((i * 7919) % 1000) / 1000 * (hi - lo)))];
      const packed = packBits(vals, bits);
      assert.equal(packed.length, Math.ceil((vals.length * bits) / 8), `${bits} bits: ${vals.length} values take ceil(n*b/8) bytes`);
      const out = signed ? new Float64Array(vals.length) : new Float64Array(vals.length);
      unpackBits(packed, out, bits, signed);
      assert.deepEqual([...out], vals, `${bits} bits ${signed ? 'signed' : 'unsigned'}`);
    }
  }
  // 4 bits use ONNX's INT4 nibble order: element 0 in the low nibble
  assert.deepEqual([...packBits([1, -2, 7], 4)], [0xe1, 0x07]);
  assert.deepEqual([...packBits([1, -1, 0, -2, 1], 2)], [0b10_00_11_01, 0b01]);
  assert.equal(bitsNeeded([-1, 0, 1], true), 2);
  assert.equal(bitsNeeded([-2, 1], true), 2);
  assert.equal(bitsNeeded([-7, 7], true), 4);
  assert.equal(bitsNeeded([0, 15], false), 4);
  assert.equal(bitsNeeded([-127, 127], true), 8);
  assert.equal(bitsNeeded([40000], true), 32);
  assert.equal(bitsNeeded([40000], false), 16);
});

const t = (dtype: TensorData['dtype'], dims: number[], data: TensorData['data']): TensorData => ({ dtype, dims, data });

function everything(): Graph {
  return {
    name: 'all',
    nodes: [
      { name: 'c', op: 'QLinearConv', inputs: ['x', 'xs', 'xz', 'w2', 'ws', 'wz', 'ys', 'yz', ''], outputs: ['y'], attrs: {
        pads: { type: 'ints', value: [1, 1, 1, 1] }, group: { type: 'int', value: 1 }, auto_pad: { type: 'string', value: 'NOTSET' },
      } },
      { name: 'k', op: 'Constant', inputs: [], outputs: ['k'], attrs: { value: { type: 'tensor', value: t('float32', [2], Float32Array.of(1.5, -2)) } } },
      { name: 'z', op: 'Weird', domain: 'com.example', inputs: ['y', 'k'], outputs: ['z', 'z2'], attrs: {
        f: { type: 'float', value: -Infinity }, fs: { type: 'floats', value: [0.25, NaN, Infinity] }, ss: { type: 'strings', value: ['a', 'b'] },
      } },
    ],
    inputs: [{ name: 'x', dtype: 'uint8', shape: ['N', 1, 4, null] }],
    outputs: [{ name: 'z', dtype: 'float32' }],
    initializers: new Map<string, TensorData>([
      ['w2', t('int8', [3, 1, 1, 2], Int8Array.of(-1, 0, 1, -2, 1, 0))],
      ['w4', t('int8', [9], Int8Array.of(-7, 7, 0, 3, -3, 1, -8, 5, 2))],
      ['u4', t('uint8', [3], Uint8Array.of(0, 15, 9))],
      ['w8', t('int8', [3], Int8Array.of(-127, 127, 0))],
      ['b', t('int32', [4], Int32Array.of(-2147483648, 2147483647, 0, 300))],
      ['b16', t('int32', [2], Int32Array.of(-30000, 30000))],
      ['xs', t('float32', [], Float32Array.of(0.0123))],
      ['xz', t('uint8', [], Uint8Array.of(128))],
      ['ws', t('float32', [3], Float32Array.of(0.1, 0.2, 0.30000001192092896))],
      ['wz', t('int8', [3], new Int8Array(3))],
      ['ys', t('float32', [], Float32Array.of(NaN))],
      ['yz', t('uint8', [], Uint8Array.of(0))],
      ['d', t('float64', [2], Float64Array.of(Math.PI, -0))],
      ['h', t('float16', [2], Uint16Array.of(0x3c00, 0xc000))],
      ['shape', t('int64', [3], BigInt64Array.of(1n, -1n, 9007199254740993n))],
      ['u64', t('uint64', [1], BigUint64Array.of(18446744073709551615n))],
      ['bool', t('bool', [3], Uint8Array.of(1, 0, 1))],
      ['s', t('string', [2], ['hello', 'wörld'])],
      ['empty', t('int8', [0], new Int8Array(0))],
    ]),
    opsets: { '': 17, 'com.example': 3 },
    meta: { 'qatkit.requant': 'fixedpoint-single', note: 'x' },
  };
}

test('writePacked / readPacked: every dtype, attribute kind and non-finite float survives', () => {
  const g = everything();
  const bytes = writePacked(g);
  assert.ok(isPacked(bytes));
  const back = readPacked(bytes);
  assert.deepEqual(back, g);
  // each integer tensor in the fewest bits its values need
  const br = packedBreakdown(bytes);
  assert.deepEqual(br.byBits[2], { tensors: 3, bytes: 2 + 1 + 0 }, 'w2 (6 values), wz (3 zeros) and the empty tensor at 2 bits');
  assert.deepEqual(br.byBits[4], { tensors: 2, bytes: 5 + 2 }, 'w4 (9 values) and u4 (3) at 4 bits');
  assert.equal(br.total, bytes.length);
});

test('the header and 2/4-bit blobs are what the format comment says', () => {
  const g: Graph = {
    name: 'w', nodes: [], inputs: [], outputs: [], opsets: { '': 17 },
    initializers: new Map([['w', t('int8', [1000], Int8Array.from({ length: 1000 }, (_, i) => (i % 3) - 1))]]),
  };
  const bytes = writePacked(g);
  const dv = new DataView(bytes.buffer, bytes.byteOffset);
  assert.equal(new TextDecoder().decode(bytes.subarray(0, 4)), 'QATK');
  assert.equal(dv.getUint32(4, true), PACKED_VERSION);
  const h = dv.getUint32(8, true);
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + h)));
  assert.deepEqual(header.tensors, [['w', 'int8', [1000], 2]]);
  assert.equal(bytes.length, 12 + h + 250, '1000 ternary weights in 250 bytes');
  assert.equal(bytes[12 + h], 0b11_01_00_11, 'elements -1, 0, 1, -1 lowest bits first');
});

test('damaged or foreign files fail loudly', () => {
  const bytes = writePacked(everything());
  assert.throws(() => readPacked(new Uint8Array(20), 'm.qatk'), /m\.qatk: not a packed qatkit model/);
  const v2 = bytes.slice();
  new DataView(v2.buffer).setUint32(4, 99, true);
  assert.throws(() => readPacked(v2, 'm.qatk'), /m\.qatk: packed format version 99, this reader knows 1/);
  assert.throws(() => readPacked(bytes.subarray(0, bytes.length - 1), 'm.qatk'), /m\.qatk: tensor '.*' runs past the end of the file/);
  const extra = new Uint8Array(bytes.length + 1);
  extra.set(bytes);
  assert.throws(() => readPacked(extra, 'm.qatk'), /m\.qatk: 1 bytes after the last tensor/);
  const sub = everything();
  sub.nodes[0].attrs.body = { type: 'graph', value: everything() };
  assert.throws(() => writePacked(sub), /node 'c' \(op QLinearConv\): attribute 'body' is a subgraph/);
});

test('a packed QOperator graph with 2- and 4-bit weights runs in the engine exactly as before packing', () => {
  const conv = (name: string, x: string, w: TensorData, y: string): Graph['nodes'][number] => ({
    name, op: 'QLinearConv', inputs: [x, 'xs', 'z', name + '.w', name + '.ws', name + '.wz', 'xs', 'z', name + '.b'], outputs: [y], attrs: { pads: { type: 'ints', value: [1, 1, 1, 1] } },
  });
  const w4 = t('int8', [4, 2, 3, 3], Int8Array.from({ length: 72 }, (_, i) => ((i * 5) % 15) - 7));
  const w2 = t('int8', [2, 4, 3, 3], Int8Array.from({ length: 72 }, (_, i) => ((i * 7) % 3) - 1));
  const g: Graph = {
    name: 'two', inputs: [{ name: 'x', dtype: 'uint8', shape: ['N', 2, 5, 5] }], outputs: [{ name: 'y2', dtype: 'uint8' }], opsets: { '': 17 },
    nodes: [conv('c1', 'x', w4, 'y1'), { name: 'clip', op: 'Clip', inputs: ['y1', 'z', 'q15'], outputs: ['y1c'], attrs: {} }, conv('c2', 'y1c', w2, 'y2')],
    initializers: new Map<string, TensorData>([
      ['xs', t('float32', [], Float32Array.of(0.05))], ['z', t('uint8', [], Uint8Array.of(0))], ['q15', t('uint8', [], Uint8Array.of(15))],
      ['c1.w', w4], ['c1.ws', t('float32', [4], Float32Array.of(0.01, 0.02, 0.015, 0.03))], ['c1.wz', t('int8', [4], new Int8Array(4))],
      ['c1.b', t('int32', [4], Int32Array.of(5, -300, 20, 0))],
      ['c2.w', w2], ['c2.ws', t('float32', [2], Float32Array.of(0.2, 0.3))], ['c2.wz', t('int8', [2], new Int8Array(2))],
      ['c2.b', t('int32', [2], Int32Array.of(-2, 7))],
    ]),
    meta: { 'qatkit.requant': 'fixedpoint-single' },
  };
  const bytes = writePacked(g);
  const br = packedBreakdown(bytes);
  assert.equal(br.byBits[4].bytes, 36 + 1, '72 4-bit weights in 36 bytes, and the bias [-2, 7] in one');
  assert.ok(br.byBits[2].bytes >= 18, '72 ternary weights in 18 bytes');
  const x: TensorData = { dtype: 'uint8', dims: [3, 2, 5, 5], data: Uint8Array.from({ length: 150 }, (_, i) => (i * 37) % 16) };
  const want = createIntSession(g).run({ x });
  assert.deepEqual(createPackedSession(bytes).run({ x }), want);
  assert.ok(elementCount(want.y2.dims) === 3 * 2 * 25);
});
