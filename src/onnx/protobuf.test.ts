import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ProtoError, ProtoReader, ProtoWriter, Wire } from './protobuf.js';

const bytes = (...b: number[]) => Uint8Array.from(b);

test('varint encodings match the protobuf spec', () => {
  assert.deepEqual(new ProtoWriter().varint(0).finish(), bytes(0));
  assert.deepEqual(new ProtoWriter().varint(1).finish(), bytes(1));
  assert.deepEqual(new ProtoWriter().varint(300).finish(), bytes(0xac, 0x02));
  // negative int32/int64 take ten bytes of two's complement
  assert.deepEqual(new ProtoWriter().varint(-1).finish(), bytes(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01));
  assert.deepEqual(new ProtoWriter().tag(1, Wire.Varint).varint(150).finish(), bytes(0x08, 0x96, 0x01));
});

test('int64 round trips as number and bigint', () => {
  const nums = [0, 1, 127, 128, 300, 2 ** 31 - 1, 2 ** 31, 2 ** 32, 2 ** 35 + 7, 2 ** 53 - 1, -1, -300, -(2 ** 31), -(2 ** 53 - 1)];
  const w = new ProtoWriter();
  for (const v of nums) w.varint(v);
  const r = new ProtoReader(w.finish());
  for (const v of nums) assert.equal(r.int64(), v);
  assert.ok(r.eof());

  const bigs = [2n ** 63n - 1n, -(2n ** 63n), 2n ** 53n + 1n, -5n];
  const w2 = new ProtoWriter();
  for (const v of bigs) w2.varint(v);
  w2.varint(2n ** 64n - 1n);
  const r2 = new ProtoReader(w2.finish());
  for (const v of bigs) assert.equal(r2.int64Big(), v);
  assert.equal(r2.uint64Big(), 2n ** 64n - 1n);
});

test('int32 and uint32 views of a varint', () => {
  const r = new ProtoReader(new ProtoWriter().varint(-7).varint(0xffffffff).finish());
  assert.equal(r.int32(), -7);
  assert.equal(r.uint32(), 0xffffffff);
});

test('fixed-width, string and nested fields round trip; unknown fields are skipped', () => {
  const w = new ProtoWriter()
    .floatField(1, 1.5)
    .tag(2, Wire.Fixed64).double(-2.25)
    .tag(3, Wire.Fixed32).fixed32(0xdeadbeef)
    .tag(4, Wire.Fixed64).fixed64(2n ** 63n + 5n)
    .stringField(5, 'héllo ✓')
    .messageField(6, (m) => m.varintField(1, 42).stringField(2, 'inner'))
    .varintField(99, 12345)
    .varintField(7, 9);
  const r = new ProtoReader(w.finish());
  const seen: Record<number, unknown> = {};
  while (!r.eof()) {
    const { field, wire } = r.tag();
    if (field === 1) seen[1] = r.float();
    else if (field === 2) seen[2] = r.double();
    else if (field === 3) seen[3] = r.fixed32();
    else if (field === 4) seen[4] = r.fixed64Big();
    else if (field === 5) seen[5] = r.string();
    else if (field === 6) {
      const m = r.message();
      const inner: unknown[] = [];
      while (!m.eof()) {
        const t = m.tag();
        inner.push(t.field === 1 ? m.int64() : m.string());
      }
      seen[6] = inner;
    } else if (field === 7) seen[7] = r.int64();
    else r.skip(wire);
  }
  assert.deepEqual(seen, { 1: 1.5, 2: -2.25, 3: 0xdeadbeef, 4: 2n ** 63n + 5n, 5: 'héllo ✓', 6: [42, 'inner'], 7: 9 });
});

test('repeated fields read the same packed or unpacked', () => {
  const vals = [3, 270, 86942, -1];
  const packed = new ProtoWriter().packedVarints(4, vals).finish();
  const unpacked = new ProtoWriter();
  for (const v of vals) unpacked.varintField(4, v);
  const floats = [1.5, -0.25, 1e10];
  const fp = new ProtoWriter().packedFloats(5, floats).finish();
  const fu = new ProtoWriter();
  for (const v of floats) fu.floatField(5, v);
  const dp = new ProtoWriter().packedDoubles(6, [0.1, -3]).finish();
  for (const buf of [packed, unpacked.finish(), fp, fu.finish(), dp]) {
    const r = new ProtoReader(buf);
    const ints: number[] = [], fl: number[] = [], db: number[] = [];
    while (!r.eof()) {
      const { field, wire } = r.tag();
      if (field === 4) r.repeated(wire, Wire.Varint, (s) => s.int64(), ints);
      else if (field === 5) r.repeated(wire, Wire.Fixed32, (s) => s.float(), fl);
      else r.repeated(wire, Wire.Fixed64, (s) => s.double(), db);
    }
    if (ints.length) assert.deepEqual(ints, vals);
    if (fl.length) assert.deepEqual(fl, [1.5, -0.25, Math.fround(1e10)]);
    if (db.length) assert.deepEqual(db, [0.1, -3]);
    assert.ok(ints.length || fl.length || db.length);
  }
  // the packed form is the compact one: tag, length, three varint bytes + 2 + 3 + 10
  assert.equal(packed.length, 2 + 1 + 2 + 3 + 10);
});

test('an empty packed list writes nothing', () => {
  assert.equal(new ProtoWriter().packedVarints(1, []).packedFloats(2, []).finish().length, 0);
});

const err = (f: () => unknown, re: RegExp) => assert.throws(f, (e: unknown) => e instanceof ProtoError && re.test(e.message));

test('malformed input names the problem and the byte offset', () => {
  err(() => new ProtoReader(bytes(0x80)).int64(), /at byte 1: truncated varint \(started at byte 0\)/);
  err(() => new ProtoReader(bytes(0x08, 0x96), 1).int64(), /at byte 2: truncated varint \(started at byte 1\)/);
  const r = new ProtoReader(bytes(0x0a, 0x05, 0x01, 0x02), 0, 4, 'TestMessage');
  r.tag();
  err(() => r.bytesView(), /in TestMessage at byte 1: length 5 runs past the end \(2 bytes left\)/);
  err(() => new ProtoReader(bytes(0x0b)).tag(), /at byte 0: wire type 3 for field 1/);
  err(() => new ProtoReader(bytes(0x0f)).tag(), /wire type 7/);
  err(() => new ProtoReader(bytes(0x00)).tag(), /at byte 0: field number 0/);
  err(() => new ProtoReader(new Uint8Array(11).fill(0x80)).int64(), /at byte 0: varint longer than 10 bytes/);
  err(() => new ProtoReader(bytes(1, 2, 3)).float(), /truncated float: needs 4 bytes, 3 left/);
  err(() => new ProtoReader(bytes(1, 2, 3, 4, 5, 6, 7)).double(), /truncated double/);
  err(() => new ProtoReader(new ProtoWriter().varint(2n ** 60n).finish()).int64(), /beyond a safe integer/);
  // a packed run whose last element is cut off
  const cut = new ProtoReader(bytes(0x22, 0x02, 0x96, 0x96));
  const t = cut.tag();
  err(() => cut.repeated(t.wire, Wire.Varint, (s) => s.int64(), []), /at byte 4: truncated varint \(started at byte 2\)/);
});

test('a reader over a sub-range reports absolute offsets', () => {
  const outer = new ProtoWriter().varintField(1, 7).messageField(2, (m) => m.raw(bytes(0x08, 0xff))).finish();
  const r = new ProtoReader(outer);
  r.tag();
  r.int64();
  r.tag();
  const m = r.message('Inner');
  m.tag();
  err(() => m.int64(), new RegExp(`in Inner at byte ${outer.length}: truncated varint`));
});
