import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { QatError } from '../util/errors.js';
import { encodeIdx, parseIdx, readIdx, readIdxPair, type IdxArray } from './idx.js';

/** Raw IDX bytes: magic 00 00 dtype rank, big-endian dims, then `body` (which may disagree with the dims). */
function idxBytes(dtype: number, dims: number[], body: Uint8Array): Buffer {
  const h = Buffer.alloc(4 + 4 * dims.length);
  h[2] = dtype;
  h[3] = dims.length;
  dims.forEach((d, i) => h.writeUInt32BE(d, 4 + 4 * i));
  return Buffer.concat([h, body]);
}

const tmp = mkdtempSync(join(tmpdir(), 'qat-idx-'));
const file = (name: string, bytes: Uint8Array) => {
  const p = join(tmp, name);
  writeFileSync(p, bytes);
  return p;
};

test('idx: uint8 images, plain and gzipped, read the same', () => {
  const body = Uint8Array.from({ length: 2 * 3 * 4 }, (_, i) => i * 10);
  const plain = readIdx(file('im-idx3-ubyte', idxBytes(0x08, [2, 3, 4], body)));
  const gz = readIdx(file('im-idx3-ubyte.gz', gzipSync(idxBytes(0x08, [2, 3, 4], body))));
  for (const a of [plain, gz]) {
    assert.equal(a.dtype, 'uint8');
    assert.deepEqual(a.dims, [2, 3, 4]);
    assert.deepEqual([...a.data], [...body]);
  }
});

test('idx: multi-byte dtypes are big-endian', () => {
  const i32 = Buffer.alloc(8);
  i32.writeInt32BE(-2, 0);
  i32.writeInt32BE(70000, 4);
  assert.deepEqual([...parseIdx(idxBytes(0x0c, [2], i32)).data], [-2, 70000]);
  const f32 = Buffer.alloc(4);
  f32.writeFloatBE(1.5, 0);
  const a = parseIdx(idxBytes(0x0d, [1, 1], f32));
  assert.equal(a.dtype, 'float32');
  assert.deepEqual([...a.data], [1.5]);
  const i16 = Buffer.alloc(2);
  i16.writeInt16BE(-300, 0);
  assert.deepEqual([...parseIdx(idxBytes(0x0b, [1], i16)).data], [-300]);
});

test('idx: encodeIdx and parseIdx round-trip every dtype', () => {
  const cases: IdxArray[] = [
    { dtype: 'uint8', dims: [2, 2], data: Uint8Array.of(0, 1, 254, 255) },
    { dtype: 'int8', dims: [3], data: Int8Array.of(-128, 0, 127) },
    { dtype: 'int16', dims: [2], data: Int16Array.of(-32768, 513) },
    { dtype: 'int32', dims: [1, 2], data: Int32Array.of(-5, 1 << 30) },
    { dtype: 'float32', dims: [2], data: Float32Array.of(-0.25, 3e38) },
    { dtype: 'float64', dims: [1], data: Float64Array.of(Math.PI) },
  ];
  for (const c of cases) {
    const back = parseIdx(encodeIdx(c));
    assert.equal(back.dtype, c.dtype);
    assert.deepEqual(back.dims, c.dims);
    assert.deepEqual([...back.data], [...c.data]);
  }
});

test('idx: errors name the file and what is wrong', () => {
  const bad = file('bad-magic', Buffer.from([0x50, 0x4b, 3, 4, 0, 0, 0, 0]));
  assert.throws(() => readIdx(bad), (e: unknown) => e instanceof QatError && e.message.includes(bad) && /bad magic 0x50 0x4b/.test(e.message));

  const trunc = file('trunc-idx3-ubyte', idxBytes(0x08, [10, 28, 28], new Uint8Array(100)));
  assert.throws(() => readIdx(trunc), (e: unknown) => e instanceof QatError && e.message.includes(trunc) && /truncated: dims 10x28x28 of uint8 need 7840 data bytes, file has 100/.test(e.message));

  const truncGz = file('trunc.gz', gzipSync(idxBytes(0x08, [10], new Uint8Array(3))));
  assert.throws(() => readIdx(truncGz), /trunc\.gz: truncated/);

  const shortHeader = file('short-header', Buffer.from([0, 0, 8, 3, 0, 0]));
  assert.throws(() => readIdx(shortHeader), /truncated IDX header: rank 3 needs 16 bytes/);

  assert.throws(() => parseIdx(idxBytes(0x07, [1], new Uint8Array(1)), 'x.idx'), /x\.idx: unknown IDX dtype byte 0x07/);
  assert.throws(() => parseIdx(idxBytes(0x08, [2], new Uint8Array(5)), 'y.idx'), /y\.idx: 3 bytes after the data/);

  const corruptGz = gzipSync(idxBytes(0x08, [4], new Uint8Array(4)));
  assert.throws(() => parseIdx(corruptGz.subarray(0, corruptGz.length - 6), 'z.gz'), /z\.gz: corrupt gzip data/);

  assert.throws(() => readIdx(join(tmp, 'nope')), /nope: cannot read IDX file \(ENOENT\)/);
});

test('idx: an images file and a labels file must agree on N', () => {
  const im = file('pair-images', idxBytes(0x08, [3, 2, 2], new Uint8Array(12)));
  const lb = file('pair-labels', idxBytes(0x08, [4], new Uint8Array(4)));
  assert.throws(() => readIdxPair(im, lb), (e: unknown) => e instanceof QatError && /dims mismatch: .*pair-images holds 3 images but .*pair-labels holds 4 labels/.test(e.message));
  const lb3 = file('pair-labels3', idxBytes(0x08, [3], Uint8Array.of(1, 2, 3)));
  const p = readIdxPair(im, lb3);
  assert.deepEqual([p.n, p.h, p.w], [3, 2, 2]);
  assert.throws(() => readIdxPair(lb3, lb3), /expected uint8 images of dims \[N, H, W\]/);
});
