import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { formatError, QatError } from './errors.js';
import { writeFileAtomic, writeFileAtomicSync } from './fs.js';
import { hashConfig, stableStringify } from './hash.js';
import { createProgress, formatDuration } from './progress.js';
import { createRng, mixSeed, permutation, Rng } from './rng.js';

test('rng: same seed, same stream; another seed, another stream', () => {
  const a = createRng(42);
  const b = createRng(42);
  const c = createRng(43);
  const sa = Array.from({ length: 8 }, () => a.next());
  const sb = Array.from({ length: 8 }, () => b.next());
  const sc = Array.from({ length: 8 }, () => c.next());
  assert.deepEqual(sa, sb);
  assert.notDeepEqual(sa, sc);
  for (const v of sa) assert.ok(Number.isInteger(v) && v >= 0 && v <= 0xffffffff);
});

test('rng: state round-trips, so a restored generator continues the same stream', () => {
  const r = new Rng(7);
  for (let i = 0; i < 5; i++) r.next();
  const saved = r.state();
  const expected = [r.next(), r.next(), r.next()];
  const q = Rng.fromState(saved);
  assert.deepEqual([q.next(), q.next(), q.next()], expected);
  assert.throws(() => q.setState([0, 0, 0, 0]), /all-zero/);
  assert.throws(() => q.setState([1, 2, 3]), /four uint32s/);
});

test('rng: float in [0,1), int in range and roughly uniform, shuffle is a permutation', () => {
  const r = new Rng(1);
  const counts = new Array<number>(5).fill(0);
  for (let i = 0; i < 5000; i++) {
    const f = r.float();
    assert.ok(f >= 0 && f < 1);
    counts[r.int(5)]!++;
  }
  // each bucket expects 1000; 6 sigma is about 170
  for (const c of counts) assert.ok(Math.abs(c - 1000) < 170, `bucket count ${c}`);
  const p = permutation(100, new Rng(3));
  assert.deepEqual([...p].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));
  assert.notDeepEqual([...p], Array.from({ length: 100 }, (_, i) => i));
  const arr = ['a', 'b', 'c', 'd'];
  assert.equal(new Rng(9).shuffle(arr), arr);
  assert.deepEqual([...arr].sort(), ['a', 'b', 'c', 'd']);
});

test('mixSeed: order and every part matter', () => {
  assert.equal(mixSeed(1, 2), mixSeed(1, 2));
  assert.notEqual(mixSeed(1, 2), mixSeed(2, 1));
  assert.notEqual(mixSeed(5, 0), mixSeed(5, 1));
  assert.notEqual(mixSeed(2 ** 40), mixSeed(0));
});

test('writeFileAtomic: writes the content and leaves no temp file behind', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qat-util-'));
  const p = join(dir, 'out.bin');
  writeFileSync(p, 'old');
  await writeFileAtomic(p, [Buffer.from('he'), new Uint8Array([108, 108, 111])]);
  assert.equal(readFileSync(p, 'utf8'), 'hello');
  writeFileAtomicSync(p, 'sync');
  assert.equal(readFileSync(p, 'utf8'), 'sync');
  assert.deepEqual(readdirSync(dir), ['out.bin']);
  await assert.rejects(writeFileAtomic(join(dir, 'missing-folder', 'x'), 'x'), { code: 'ENOENT' });
  assert.deepEqual(readdirSync(dir), ['out.bin']);
});

test('progress: plain lines at 10% steps when not a TTY, no carriage returns', () => {
  const out: string[] = [];
  let t = 0;
  const p = createProgress({ total: 100, label: 'calib', stream: { write: (s: string) => out.push(s), isTTY: false }, now: () => t });
  for (let i = 0; i < 100; i++) {
    t += 50; // 20 items/s
    p.tick(1, 'loss 0.5');
  }
  p.done();
  const text = out.join('');
  assert.ok(!text.includes('\r'));
  const lines = text.trimEnd().split('\n');
  // 10%..90% and the final line (100% is left to done())
  assert.equal(lines.length, 10);
  assert.match(lines[0]!, /^calib: 10\/100 +10\.0% 20\.0 it\/s ETA 5s loss 0\.5$/);
  assert.match(lines[9]!, /^calib: 100\/100 100\.0% 20\.0 it\/s in 5s loss 0\.5$/);
  p.tick(1);
  p.done();
  assert.equal(out.join(''), text, 'nothing after done()');
});

test('progress: a heartbeat line after intervalSec even between 10% steps', () => {
  const out: string[] = [];
  let t = 0;
  const p = createProgress({ total: 1000, label: 'x', stream: { write: (s: string) => out.push(s) }, intervalSec: 5, now: () => t });
  t = 6000;
  p.tick(1);
  assert.equal(out.length, 1);
  assert.match(out[0]!, /^x: 1\/1000/);
});

test('progress: on a TTY one line rewritten in place, throttled', () => {
  const out: string[] = [];
  let t = 0;
  const p = createProgress({ total: 10, label: 'train', stream: { write: (s: string) => out.push(s), isTTY: true, columns: 200 }, now: () => t });
  p.tick(1);
  p.tick(1); // same instant: throttled
  t = 1000;
  p.tick(3, 'loss 1.0');
  p.clear!(); // e.g. before a log line: erase, and redraw at the next tick even within 100 ms
  p.tick(0);
  p.done();
  assert.equal(out.length, 5);
  assert.equal(out[2], '\r\x1b[K');
  out.splice(2, 2);
  for (const s of out) assert.ok(s.startsWith('\r'));
  assert.match(out[1]!, /train \[#{10}\.{10}\] 5\/10 +50\.0% 5\.00 it\/s ETA 1s loss 1\.0/);
  assert.ok(out[2]!.endsWith('\n'));
});

test('formatDuration', () => {
  assert.equal(formatDuration(5), '5s');
  assert.equal(formatDuration(125), '2m05s');
  assert.equal(formatDuration(3725), '1h02m');
  assert.equal(formatDuration(NaN), '?');
});

test('QatError: message and hint for users, stack for bugs', () => {
  const e = new QatError('data folder /x does not exist', 'pass --data-dir DIR');
  assert.ok(e instanceof Error);
  assert.equal(e.name, 'QatError');
  assert.equal(formatError(e), 'error: data folder /x does not exist\nhint: pass --data-dir DIR');
  assert.equal(formatError(new QatError('bad')), 'error: bad');
  assert.match(formatError(new TypeError('oops')), /^internal error: TypeError: oops/);
});

test('hashConfig: independent of key order, sensitive to values', () => {
  assert.equal(stableStringify({ b: 1, a: { d: [1, 2], c: 3 } }), '{"a":{"c":3,"d":[1,2]},"b":1}');
  assert.equal(hashConfig({ a: 1, b: 2 }), hashConfig({ b: 2, a: 1 }));
  assert.notEqual(hashConfig({ a: 1, b: 2 }), hashConfig({ a: 1, b: 3 }));
  assert.match(hashConfig({}), /^[0-9a-f]{16}$/);
  assert.throws(() => hashConfig({ f: () => 1 }), /functions/);
});
