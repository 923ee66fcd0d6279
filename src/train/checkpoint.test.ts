import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { QatError } from '../util/errors.js';
import { decodeCheckpoint, encodeCheckpoint, readCheckpointFile, writeCheckpointFile } from './checkpoint.js';

test('checkpoint container: typed arrays, nesting and non-finite numbers round-trip', async () => {
  const tree = {
    w: Float32Array.of(1.5, -0, 3e-39, NaN),
    nested: [Int32Array.of(-7, 2 ** 31 - 1), { loss: NaN, best: -Infinity, name: 'x', ok: true, none: null }],
    bytes: Uint8Array.of(1, 2, 3), // odd length: the next blob must still be aligned
    f64: Float64Array.of(Math.PI),
    rng: [1, 2, 3, 4],
  };
  const dir = mkdtempSync(join(tmpdir(), 'qat-ck-'));
  const p = join(dir, 'a.ckpt');
  await writeCheckpointFile(p, tree);
  const back = readCheckpointFile(p) as typeof tree;
  assert.ok(back.w instanceof Float32Array);
  assert.deepEqual(new Uint8Array(back.w.buffer), new Uint8Array(tree.w.buffer)); // bit for bit, -0 and NaN included
  assert.deepEqual(back.nested[0], tree.nested[0]);
  assert.deepEqual(back.nested[1], tree.nested[1]);
  assert.deepEqual(back.bytes, tree.bytes);
  assert.deepEqual(back.f64, tree.f64);
  assert.deepEqual(back.rng, tree.rng);
});

test('checkpoint container: bad magic, truncation, and non-plain values are reported', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qat-ck-'));
  const bytes = Buffer.concat(encodeCheckpoint({ w: new Float32Array(100) }));
  const cut = join(dir, 'cut.ckpt');
  writeFileSync(cut, bytes.subarray(0, bytes.length - 8));
  assert.throws(() => readCheckpointFile(cut), (e: unknown) => e instanceof QatError && e.message.startsWith(`${cut}: truncated checkpoint`));
  assert.throws(() => decodeCheckpoint(Buffer.from('PK\x03\x04 not a checkpoint'), 'z.ckpt'), /z\.ckpt: not a qatkit checkpoint \(bad magic\)/);
  assert.throws(() => readCheckpointFile(join(dir, 'none.ckpt')), /none\.ckpt: cannot read checkpoint \(ENOENT\)/);
  class Tensorish {}
  assert.throws(() => encodeCheckpoint({ model: { t: new Tensorish() } }), /state\.model\.t is a Tensorish; checkpoints hold plain data/);
  assert.throws(() => encodeCheckpoint({ f: () => 1 }), /state\.f is a function/);
  assert.ok(readFileSync(cut).length > 0);
});
