// Protobuf wire format, just what ONNX needs: varint, fixed32/64, length-delimited, packed repeated.
// Our own so that the codec runs anywhere (browser included) without a dependency.

export const Wire = { Varint: 0, Fixed64: 1, Bytes: 2, Fixed32: 5 } as const;
export type Wire = (typeof Wire)[keyof typeof Wire];

/** A malformed or truncated buffer; `offset` is the byte where reading failed (absolute in the outer buffer). */
export class ProtoError extends Error {
  constructor(message: string, readonly offset: number, readonly where?: string) {
    super(`malformed protobuf${where ? ` in ${where}` : ''} at byte ${offset}: ${message}`);
    this.name = 'ProtoError';
  }
}

const TWO32 = 2 ** 32;
const utf8Decoder = new TextDecoder('utf-8');
const utf8Encoder = new TextEncoder();

/** Combine a 64-bit two's-complement value split as (lo, hi) unsigned 32-bit halves. */
const toBigUint = (lo: number, hi: number): bigint => (BigInt(hi) << 32n) | BigInt(lo);

export class ProtoReader {
  pos: number;
  readonly end: number;
  private readonly view: DataView;

  /** Reads bytes[start, end); offsets in errors stay absolute in `bytes`. */
  constructor(readonly bytes: Uint8Array, start = 0, end = bytes.length, readonly where?: string) {
    if (end > bytes.length || start > end) throw new ProtoError(`range [${start}, ${end}) outside a ${bytes.length}-byte buffer`, start, where);
    this.pos = start;
    this.end = end;
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  }

  eof(): boolean {
    return this.pos >= this.end;
  }

  fail(message: string, at = this.pos): never {
    throw new ProtoError(message, at, this.where);
  }

  private need(n: number, what: string): void {
    if (this.pos + n > this.end) this.fail(`truncated ${what}: needs ${n} bytes, ${this.end - this.pos} left`);
  }

  /** Next field key; field numbers start at 1, wire types 3/4 (groups) are not used by ONNX. */
  tag(): { field: number; wire: Wire } {
    const at = this.pos;
    const key = this.uint32();
    const field = key >>> 3;
    const wire = key & 7;
    if (field === 0) this.fail('field number 0', at);
    if (wire !== Wire.Varint && wire !== Wire.Fixed64 && wire !== Wire.Bytes && wire !== Wire.Fixed32)
      this.fail(`wire type ${wire} for field ${field} (groups and unknown wire types are not supported)`, at);
    return { field, wire: wire as Wire };
  }

  /** A varint as unsigned 32-bit halves; at most 10 bytes. */
  varint64(): [lo: number, hi: number] {
    const start = this.pos;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail(`truncated varint (started at byte ${start})`);
      const b = this.bytes[this.pos++];
      if (i < 4) lo |= (b & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >>> 4;
      } else hi |= (b & 0x7f) << (7 * i - 32);
      if (b < 0x80) return [lo >>> 0, hi >>> 0];
    }
    return this.fail('varint longer than 10 bytes', start);
  }

  /** uint32 / enum / int32 fields: the low 32 bits as written (int32 negatives come back through int32()). */
  uint32(): number {
    return this.varint64()[0];
  }

  int32(): number {
    return this.varint64()[0] | 0;
  }

  bool(): boolean {
    const [lo, hi] = this.varint64();
    return lo !== 0 || hi !== 0;
  }

  /** int64 as a number; throws if it is not a safe integer (use int64Big for full range). */
  int64(): number {
    const at = this.pos;
    const [lo, hi] = this.varint64();
    const v = hi & 0x80000000 ? -((~hi >>> 0) * TWO32 + (~lo >>> 0) + 1) : hi * TWO32 + lo;
    if (!Number.isSafeInteger(v)) this.fail(`int64 ${BigInt.asIntN(64, toBigUint(lo, hi))} is beyond a safe integer`, at);
    return v;
  }

  int64Big(): bigint {
    const [lo, hi] = this.varint64();
    return BigInt.asIntN(64, toBigUint(lo, hi));
  }

  uint64Big(): bigint {
    const [lo, hi] = this.varint64();
    return toBigUint(lo, hi);
  }

  fixed32(): number {
    this.need(4, 'fixed32');
    const v = this.view.getUint32(this.pos, true);
    this.pos += 4;
    return v;
  }

  float(): number {
    this.need(4, 'float');
    const v = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return v;
  }

  fixed64Big(): bigint {
    this.need(8, 'fixed64');
    const v = this.view.getBigUint64(this.pos, true);
    this.pos += 8;
    return v;
  }

  double(): number {
    this.need(8, 'double');
    const v = this.view.getFloat64(this.pos, true);
    this.pos += 8;
    return v;
  }

  /** Length-delimited payload as a view into the buffer (no copy). */
  bytesView(): Uint8Array {
    const at = this.pos;
    const len = this.varint64();
    if (len[1] !== 0 || len[0] > this.end - this.pos)
      this.fail(`length ${len[1] ? '>= 2^32' : len[0]} runs past the end (${this.end - this.pos} bytes left)`, at);
    const v = this.bytes.subarray(this.pos, this.pos + len[0]);
    this.pos += len[0];
    return v;
  }

  string(): string {
    return utf8Decoder.decode(this.bytesView());
  }

  /** A reader over an embedded message; `where` names it in errors. */
  message(where?: string): ProtoReader {
    const v = this.bytesView();
    return new ProtoReader(this.bytes, v.byteOffset - this.bytes.byteOffset, v.byteOffset - this.bytes.byteOffset + v.length, where ?? this.where);
  }

  skip(wire: Wire): void {
    switch (wire) {
      case Wire.Varint: this.varint64(); return;
      case Wire.Fixed64: this.need(8, 'fixed64'); this.pos += 8; return;
      case Wire.Fixed32: this.need(4, 'fixed32'); this.pos += 4; return;
      case Wire.Bytes: this.bytesView(); return;
    }
  }

  /**
   * One occurrence of a repeated scalar field, packed (wire type 2) or not: parsers must accept both.
   * `read` reads one element from the reader it is given.
   */
  repeated<T>(wire: Wire, elemWire: Wire, read: (r: ProtoReader) => T, out: T[]): void {
    if (wire === Wire.Bytes && elemWire !== Wire.Bytes) {
      const sub = this.message();
      while (!sub.eof()) out.push(read(sub));
    } else if (wire === elemWire) out.push(read(this));
    else this.fail(`repeated field has wire type ${wire}, expected ${elemWire} or packed`);
  }
}

/** Growable output buffer; nested messages are written to a child writer and copied with a length prefix. */
export class ProtoWriter {
  private buf = new Uint8Array(256);
  private view = new DataView(this.buf.buffer);
  len = 0;

  private reserve(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let cap = this.buf.length * 2;
    while (cap < this.len + n) cap *= 2;
    const nb = new Uint8Array(cap);
    nb.set(this.buf.subarray(0, this.len));
    this.buf = nb;
    this.view = new DataView(nb.buffer);
  }

  finish(): Uint8Array {
    return this.buf.slice(0, this.len);
  }

  tag(field: number, wire: Wire): this {
    return this.varint((field << 3) | wire);
  }

  /** Unsigned or two's-complement varint (negatives take 10 bytes, as for int32/int64 in protobuf). */
  varint(v: number | bigint): this {
    if (typeof v === 'number' && v >= 0 && v <= 0x7fffffff && Number.isInteger(v)) {
      this.reserve(5);
      while (v > 0x7f) {
        this.buf[this.len++] = (v & 0x7f) | 0x80;
        v >>>= 7;
      }
      this.buf[this.len++] = v;
      return this;
    }
    if (typeof v === 'number' && !Number.isSafeInteger(v)) throw new RangeError(`varint value ${v} is not a safe integer`);
    let u = BigInt.asUintN(64, BigInt(v));
    this.reserve(10);
    while (u > 0x7fn) {
      this.buf[this.len++] = Number(u & 0x7fn) | 0x80;
      u >>= 7n;
    }
    this.buf[this.len++] = Number(u);
    return this;
  }

  float(v: number): this {
    this.reserve(4);
    this.view.setFloat32(this.len, v, true);
    this.len += 4;
    return this;
  }

  double(v: number): this {
    this.reserve(8);
    this.view.setFloat64(this.len, v, true);
    this.len += 8;
    return this;
  }

  fixed32(v: number): this {
    this.reserve(4);
    this.view.setUint32(this.len, v >>> 0, true);
    this.len += 4;
    return this;
  }

  fixed64(v: bigint): this {
    this.reserve(8);
    this.view.setBigUint64(this.len, BigInt.asUintN(64, v), true);
    this.len += 8;
    return this;
  }

  raw(b: Uint8Array): this {
    this.reserve(b.length);
    this.buf.set(b, this.len);
    this.len += b.length;
    return this;
  }

  // ---- fields ----

  varintField(field: number, v: number | bigint): this {
    return this.tag(field, Wire.Varint).varint(v);
  }

  floatField(field: number, v: number): this {
    return this.tag(field, Wire.Fixed32).float(v);
  }

  bytesField(field: number, b: Uint8Array): this {
    return this.tag(field, Wire.Bytes).varint(b.length).raw(b);
  }

  stringField(field: number, s: string): this {
    return this.bytesField(field, utf8Encoder.encode(s));
  }

  messageField(field: number, write: (w: ProtoWriter) => void): this {
    const child = new ProtoWriter();
    write(child);
    this.tag(field, Wire.Bytes).varint(child.len);
    this.reserve(child.len);
    this.buf.set(child.buf.subarray(0, child.len), this.len);
    this.len += child.len;
    return this;
  }

  /** Packed repeated varints (int32/int64/uint64/enum/bool); nothing is written for an empty list. */
  packedVarints(field: number, vs: ArrayLike<number | bigint>): this {
    if (vs.length === 0) return this;
    return this.messageField(field, (w) => {
      for (let i = 0; i < vs.length; i++) w.varint(vs[i]);
    });
  }

  packedFloats(field: number, vs: ArrayLike<number>): this {
    if (vs.length === 0) return this;
    this.tag(field, Wire.Bytes).varint(vs.length * 4);
    for (let i = 0; i < vs.length; i++) this.float(vs[i]);
    return this;
  }

  packedDoubles(field: number, vs: ArrayLike<number>): this {
    if (vs.length === 0) return this;
    this.tag(field, Wire.Bytes).varint(vs.length * 8);
    for (let i = 0; i < vs.length; i++) this.double(vs[i]);
    return this;
  }
}

export const encodeUtf8 = (s: string): Uint8Array => utf8Encoder.encode(s);
export const decodeUtf8 = (b: Uint8Array): string => utf8Decoder.decode(b);
