// TensorProto <-> TensorData. Reads raw_data and every typed field; writes raw_data (strings: string_data).
// In-memory forms: float16 as Uint16Array of IEEE half bits, bool as Uint8Array 0/1,
// int4/uint4 unpacked one value per element (Int8Array/Uint8Array), int64/uint64 as BigInt64Array/BigUint64Array.

import { elementCount, type DType, type TensorData, type TypedArray } from '../graph/ir.js';
import { ProtoReader, ProtoWriter, Wire, decodeUtf8, encodeUtf8 } from './protobuf.js';

/** TensorProto.DataType numbers for the dtypes the IR knows. */
export const ONNX_DTYPE: Record<DType, number> = {
  float32: 1, uint8: 2, int8: 3, uint16: 4, int16: 5, int32: 6, int64: 7, string: 8, bool: 9,
  float16: 10, float64: 11, uint32: 12, uint64: 13, uint4: 21, int4: 22,
};

const ONNX_DTYPE_NAMES: Record<number, string> = {
  0: 'UNDEFINED', 14: 'COMPLEX64', 15: 'COMPLEX128', 16: 'BFLOAT16', 17: 'FLOAT8E4M3FN',
  18: 'FLOAT8E4M3FNUZ', 19: 'FLOAT8E5M2', 20: 'FLOAT8E5M2FNUZ', 23: 'FLOAT4E2M1',
};

const BY_NUMBER = new Map<number, DType>(Object.entries(ONNX_DTYPE).map(([k, v]) => [v, k as DType]));

export function dtypeFromOnnx(code: number, where: string): DType {
  const d = BY_NUMBER.get(code);
  if (d === undefined)
    throw new Error(`${where}: tensor element type ${ONNX_DTYPE_NAMES[code] ?? code} is not supported by qatkit`);
  return d;
}

type NumericDType = Exclude<DType, 'string'>;
type ArrayCtor = { new (n: number): TypedArray; new (b: ArrayBuffer, off?: number, len?: number): TypedArray; BYTES_PER_ELEMENT: number };

/** The typed array each dtype lives in. */
export const DTYPE_ARRAY: Record<NumericDType, ArrayCtor> = {
  float32: Float32Array, float64: Float64Array, float16: Uint16Array,
  int8: Int8Array, uint8: Uint8Array, int16: Int16Array, uint16: Uint16Array,
  int32: Int32Array, uint32: Uint32Array, int64: BigInt64Array, uint64: BigUint64Array,
  int4: Int8Array, uint4: Uint8Array, bool: Uint8Array,
};

const isNibble = (d: DType): d is 'int4' | 'uint4' => d === 'int4' || d === 'uint4';

const hostLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Byte-swap in place, only on big-endian hosts: the wire is little-endian. */
function fromLittleEndian(b: Uint8Array, width: number): void {
  if (hostLittleEndian || width === 1) return;
  for (let i = 0; i < b.length; i += width) b.subarray(i, i + width).reverse();
}

/** int4/uint4: two values per byte, element i in the low nibble of byte i/2 when i is even (ONNX spec). */
export function packNibbles(vals: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array((vals.length + 1) >> 1);
  for (let i = 0; i < vals.length; i++) out[i >> 1] |= (vals[i] & 0x0f) << ((i & 1) * 4);
  return out;
}

export function unpackNibbles(packed: ArrayLike<number>, n: number, signed: boolean): Int8Array | Uint8Array {
  const out = signed ? new Int8Array(n) : new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    const v = (packed[i >> 1] >> ((i & 1) * 4)) & 0x0f;
    out[i] = signed && v >= 8 ? v - 16 : v;
  }
  return out;
}

function fromRaw(raw: Uint8Array, dtype: NumericDType, n: number, where: string): TypedArray {
  if (isNibble(dtype)) {
    const want = (n + 1) >> 1;
    if (raw.length !== want) throw new Error(`${where}: raw_data has ${raw.length} bytes, ${n} ${dtype} values need ${want}`);
    return unpackNibbles(raw, n, dtype === 'int4');
  }
  const Ctor = DTYPE_ARRAY[dtype];
  const want = n * Ctor.BYTES_PER_ELEMENT;
  if (raw.length !== want) throw new Error(`${where}: raw_data has ${raw.length} bytes, ${n} ${dtype} values need ${want}`);
  const copy = raw.slice(); // aligned and owned
  fromLittleEndian(copy, Ctor.BYTES_PER_ELEMENT);
  return new Ctor(copy.buffer, 0, n);
}

/** Which typed field carries each dtype when raw_data is absent (onnx.proto). */
const TYPED_FIELD: Record<NumericDType, 'float' | 'int32' | 'int64' | 'double' | 'uint64'> = {
  float32: 'float', float64: 'double', int64: 'int64', uint32: 'uint64', uint64: 'uint64',
  int8: 'int32', uint8: 'int32', int16: 'int32', uint16: 'int32', int32: 'int32', bool: 'int32',
  float16: 'int32', int4: 'int32', uint4: 'int32',
};

const FIELD_NAME = { float: 'float_data', int32: 'int32_data', int64: 'int64_data', double: 'double_data', uint64: 'uint64_data' };

interface RawTensor {
  name: string;
  dims: number[];
  dataType: number;
  raw?: Uint8Array;
  floats: number[];
  int32s: number[];
  int64s: bigint[];
  doubles: number[];
  uint64s: bigint[];
  strings: Uint8Array[];
  external: boolean;
  externalLocation?: string;
}

/** Decode a TensorProto message from `r` (already bounded to the message). `where` names the context in errors. */
export function decodeTensor(r: ProtoReader, where: string): { name: string; tensor: TensorData } {
  const t: RawTensor = { name: '', dims: [], dataType: 0, floats: [], int32s: [], int64s: [], doubles: [], uint64s: [], strings: [], external: false };
  while (!r.eof()) {
    const { field, wire } = r.tag();
    switch (field) {
      case 1: r.repeated(wire, Wire.Varint, (s) => s.int64(), t.dims); break;
      case 2: t.dataType = r.int32(); break;
      case 4: r.repeated(wire, Wire.Fixed32, (s) => s.float(), t.floats); break;
      case 5: r.repeated(wire, Wire.Varint, (s) => s.int32(), t.int32s); break;
      case 6: t.strings.push(r.bytesView()); break;
      case 7: r.repeated(wire, Wire.Varint, (s) => s.int64Big(), t.int64s); break;
      case 8: t.name = r.string(); break;
      case 9: t.raw = r.bytesView(); break;
      case 10: r.repeated(wire, Wire.Fixed64, (s) => s.double(), t.doubles); break;
      case 11: r.repeated(wire, Wire.Varint, (s) => s.uint64Big(), t.uint64s); break;
      case 13: {
        t.external = true;
        const e = r.message();
        let key = '';
        let value = '';
        while (!e.eof()) {
          const k = e.tag();
          if (k.field === 1) key = e.string();
          else if (k.field === 2) value = e.string();
          else e.skip(k.wire);
        }
        if (key === 'location') t.externalLocation = value;
        break;
      }
      case 14: if (r.int32() === 1) t.external = true; break;
      default: r.skip(wire); // segment, doc_string, metadata
    }
  }
  const at = `${where}${t.name ? ` tensor '${t.name}'` : ' tensor'}`;
  if (t.external)
    throw new Error(`${at}: data is stored externally${t.externalLocation ? ` in '${t.externalLocation}'` : ''}; qatkit reads only self-contained models (re-save with all tensors inside the file)`);
  return { name: t.name, tensor: toTensorData(t, at) };
}

function toTensorData(t: RawTensor, at: string): TensorData {
  const dtype = dtypeFromOnnx(t.dataType, at);
  for (const d of t.dims) if (d < 0) throw new Error(`${at}: negative dimension in dims ${JSON.stringify(t.dims)}`);
  const n = elementCount(t.dims);
  const dims = t.dims;
  if (dtype === 'string') {
    if (t.strings.length !== n) throw new Error(`${at}: string_data has ${t.strings.length} values, dims ${JSON.stringify(dims)} need ${n}`);
    return { dtype, dims, data: t.strings.map(decodeUtf8) };
  }
  if (t.raw !== undefined) return { dtype, dims, data: fromRaw(t.raw, dtype, n, at) };
  const kind = TYPED_FIELD[dtype];
  const src = { float: t.floats, int32: t.int32s, int64: t.int64s, double: t.doubles, uint64: t.uint64s }[kind];
  // int4/uint4 in int32_data are packed two per element like raw_data
  const want = isNibble(dtype) ? (n + 1) >> 1 : n;
  if (src.length !== want)
    throw new Error(`${at}: ${FIELD_NAME[kind]} has ${src.length} values, ${n} ${dtype} values need ${want}${n > 0 && src.length === 0 ? ' (no data field set)' : ''}`);
  if (isNibble(dtype)) return { dtype, dims, data: unpackNibbles(src as number[], n, dtype === 'int4') };
  const out = new DTYPE_ARRAY[dtype](n);
  if (out instanceof BigInt64Array || out instanceof BigUint64Array) {
    for (let i = 0; i < n; i++) out[i] = out instanceof BigInt64Array ? BigInt.asIntN(64, BigInt(src[i])) : BigInt.asUintN(64, BigInt(src[i]));
  } else if (kind === 'uint64') {
    for (let i = 0; i < n; i++) out[i] = Number(src[i]); // uint32 in uint64_data
  } else (out as Exclude<TypedArray, BigInt64Array | BigUint64Array>).set(src as number[]);
  return { dtype, dims, data: out };
}

/** Check that data matches dtype and dims before writing, so a bad tensor fails here and not in the runtime. */
function checkTensor(t: TensorData, at: string): void {
  const n = elementCount(t.dims);
  if (t.data.length !== n) throw new Error(`${at}: ${t.data.length} values for dims ${JSON.stringify(t.dims)} (${n} needed)`);
  if (t.dtype === 'string') {
    if (!Array.isArray(t.data)) throw new Error(`${at}: string tensor needs string[] data`);
    return;
  }
  const Ctor = DTYPE_ARRAY[t.dtype];
  if (!(t.data instanceof Ctor)) throw new Error(`${at}: ${t.dtype} tensor needs ${Ctor.name} data, got ${t.data.constructor.name}`);
}

export interface TensorWriteOptions {
  /** 'raw' (default): raw_data; 'typed': the typed repeated field (float_data, int32_data, ...), as some exporters do. */
  layout?: 'raw' | 'typed';
}

/** Encode a TensorProto body into `w`. */
export function encodeTensor(w: ProtoWriter, t: TensorData, name: string, opts: TensorWriteOptions = {}): void {
  const at = `tensor '${name}'`;
  checkTensor(t, at);
  w.packedVarints(1, t.dims);
  w.varintField(2, ONNX_DTYPE[t.dtype]);
  if (name) w.stringField(8, name);
  if (t.dtype === 'string') {
    for (const s of t.data as string[]) w.bytesField(6, encodeUtf8(s));
    return;
  }
  const data = t.data as TypedArray;
  if (opts.layout === 'typed') {
    const vals: ArrayLike<number | bigint> = isNibble(t.dtype) ? packNibbles(data as Int8Array) : data;
    switch (TYPED_FIELD[t.dtype]) {
      case 'float': w.packedFloats(4, vals as Float32Array); break;
      case 'double': w.packedDoubles(10, vals as Float64Array); break;
      case 'int32': w.packedVarints(5, vals); break;
      case 'int64': w.packedVarints(7, vals); break;
      case 'uint64': w.packedVarints(11, vals); break;
    }
    return;
  }
  let raw: Uint8Array;
  if (isNibble(t.dtype)) raw = packNibbles(data as Int8Array);
  else {
    raw = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (!hostLittleEndian) {
      raw = raw.slice();
      fromLittleEndian(raw, data.BYTES_PER_ELEMENT);
    }
  }
  w.bytesField(9, raw);
}

/** Parse one serialized TensorProto, e.g. an input_0.pb file of an ONNX test_data_set. */
export function readNamedTensorProto(bytes: Uint8Array, where = 'TensorProto'): { name: string; tensor: TensorData } {
  return decodeTensor(new ProtoReader(bytes, 0, bytes.length, where), where);
}

export function readTensorProto(bytes: Uint8Array, where = 'TensorProto'): TensorData {
  return readNamedTensorProto(bytes, where).tensor;
}

export function writeTensorProto(t: TensorData, name = '', opts?: TensorWriteOptions): Uint8Array {
  const w = new ProtoWriter();
  encodeTensor(w, t, name, opts);
  return w.finish();
}
