// The packed integer model file (.qatk): a converted graph (convert.ts) with every integer tensor stored in as few
// bits as its values need, which createIntSession runs after unpacking at load. ONNX has no 2-bit type and
// QLinearConv / QGemm take no INT4, so this is where sub-8-bit weights become small on disk.
//
// Layout, all little-endian:
//   bytes 0..3   magic 'QATK'
//   bytes 4..7   u32 format version (1)
//   bytes 8..11  u32 header length H
//   bytes 12..   header: H bytes of UTF-8 JSON
//   then the tensor blobs back to back, in header order (readers copy them out, so nothing is aligned)
// Header JSON (arrays rather than objects, to keep it small next to 2-bit weights):
//   { name, inputs: [ValueInfo], outputs: [ValueInfo], opsets, meta?,
//     tensors: [[name, dtype, dims, bits, value?]],     initializers first, then tensor attributes
//     initializers: <how many of tensors are initializers>,
//     nodes: [[op, name, inputs, outputs, attrs?, domain?]] }
//   A node input that is a number is an index into `tensors` (an initializer; saves repeating its name).
//   attrs: { key: [kind, value] } with kind i f s ints floats strings, or ['t', tensor index].
//   Non-finite floats are written as { "$f": "NaN" | "Infinity" | "-Infinity" }.
//   A tensor with `bits` 0 has no blob: its value is the 5th element (a one-element numeric tensor, or the strings).
// Blobs: an integer tensor (int/uint 4, 8, 16, 32) with bits b in {2, 4, 8, 16, 32} holds its values as b-bit two's
//   complement (signed dtypes) or unsigned integers: b < 8 packs 8/b values per byte, element i in bits
//   [(i % k) * b, (i % k + 1) * b) of byte floor(i / k), k = 8 / b (for b = 4 the ONNX INT4 nibble order); b >= 8 is
//   b/8 little-endian bytes per value. b is the fewest that hold every value (bitsNeeded). Float and 64-bit tensors
//   are their raw little-endian elements. A blob has ceil(n * b / 8) bytes.
import { type Attr, type DType, type Graph, type Node, type TensorData, type ValueInfo, GraphError, elementCount } from '../graph/ir.js';
import { type IntSession, type IntSessionOptions, createIntSession } from './engine.js';
import { newArray } from './tensor.js';

export const PACKED_MAGIC = 'QATK';
export const PACKED_VERSION = 1;

type TensorEntry = [name: string, dtype: DType, dims: number[], bits: number, value?: unknown];
type JsonAttr = [kind: string, value: unknown];
type NodeEntry = [op: string, name: string, inputs: Array<string | number>, outputs: string[], attrs?: Record<string, JsonAttr>, domain?: string];

interface Header {
  name: string;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  opsets: Record<string, number>;
  meta?: Record<string, string>;
  tensors: TensorEntry[];
  initializers: number;
  nodes: NodeEntry[];
}

const ELEMENT_BYTES: Partial<Record<DType, number>> = {
  float32: 4, float64: 8, float16: 2, int8: 1, uint8: 1, int16: 2, uint16: 2, int32: 4, uint32: 4, int64: 8, uint64: 8, bool: 1,
  int4: 1, uint4: 1,
};
const PACKABLE = new Set<DType>(['int4', 'uint4', 'int8', 'uint8', 'int16', 'uint16', 'int32', 'uint32']);
const isSigned = (d: DType): boolean => d === 'int4' || d === 'int8' || d === 'int16' || d === 'int32';

/** The fewest of 2, 4, 8, 16, 32 bits that hold every value (two's complement when signed). */
export function bitsNeeded(v: ArrayLike<number>, signed: boolean): 2 | 4 | 8 | 16 | 32 {
  let lo = 0;
  let hi = 0;
  for (let i = 0; i < v.length; i++) {
    if (v[i] < lo) lo = v[i];
    if (v[i] > hi) hi = v[i];
  }
  for (const b of [2, 4, 8, 16] as const) {
    const [mn, mx] = signed ? [-(2 ** (b - 1)), 2 ** (b - 1) - 1] : [0, 2 ** b - 1];
    if (lo >= mn && hi <= mx) return b;
  }
  return 32;
}

/** Integers `bits` wide (2, 4, 8, 16 or 32), little-endian, sub-byte widths 8/bits per byte lowest first. */
export function packBits(vals: ArrayLike<number>, bits: number): Uint8Array {
  if (bits >= 8) {
    const w = bits / 8;
    const out = new Uint8Array(vals.length * w);
    for (let i = 0; i < vals.length; i++) for (let k = 0, v = vals[i]; k < w; k++) out[i * w + k] = (v >> (8 * k)) & 255;
    return out;
  }
  const per = 8 / bits;
  const mask = (1 << bits) - 1;
  const out = new Uint8Array(Math.ceil(vals.length / per));
  for (let i = 0; i < vals.length; i++) out[(i / per) | 0] |= (vals[i] & mask) << ((i % per) * bits);
  return out;
}

/** Inverse of packBits into `out` (sign-extended when signed). */
export function unpackBits(packed: Uint8Array, out: { [i: number]: number; length: number }, bits: number, signed: boolean): void {
  const n = out.length;
  if (bits >= 8) {
    const w = bits / 8;
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let k = w - 1; k >= 0; k--) v = v * 256 + packed[i * w + k];
      out[i] = signed && v >= 2 ** (bits - 1) ? v - 2 ** bits : v;
    }
    return;
  }
  const per = 8 / bits;
  const mask = (1 << bits) - 1;
  const half = 1 << (bits - 1);
  for (let i = 0; i < n; i++) {
    const v = (packed[(i / per) | 0] >> ((i % per) * bits)) & mask;
    out[i] = signed && v >= half ? v - (1 << bits) : v;
  }
}

/** Raw little-endian bytes of a float or 64-bit tensor, whatever the host's byte order. */
function rawBytes(t: TensorData, size: number): Uint8Array {
  const n = elementCount(t.dims);
  const out = new Uint8Array(n * size);
  const dv = new DataView(out.buffer);
  const d = t.data;
  for (let i = 0; i < n; i++) {
    const o = i * size;
    switch (t.dtype) {
      case 'float32': dv.setFloat32(o, d[i] as number, true); break;
      case 'float64': dv.setFloat64(o, d[i] as number, true); break;
      case 'float16': dv.setUint16(o, d[i] as number, true); break;
      case 'int64': dv.setBigInt64(o, d[i] as bigint, true); break;
      case 'uint64': dv.setBigUint64(o, d[i] as bigint, true); break;
      default: dv.setUint8(o, (d[i] as number) & 255); // bool
    }
  }
  return out;
}

function fromRawBytes(b: Uint8Array, dtype: DType, out: TensorData['data']): void {
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const size = ELEMENT_BYTES[dtype]!;
  const o = out as unknown as Array<number | bigint>;
  for (let i = 0; i < o.length; i++) {
    const p = i * size;
    switch (dtype) {
      case 'float32': o[i] = dv.getFloat32(p, true); break;
      case 'float64': o[i] = dv.getFloat64(p, true); break;
      case 'float16': o[i] = dv.getUint16(p, true); break;
      case 'int64': o[i] = dv.getBigInt64(p, true); break;
      case 'uint64': o[i] = dv.getBigUint64(p, true); break;
      default: o[i] = dv.getUint8(p);
    }
  }
}

const finite = (v: number): number | { $f: string } => (Number.isFinite(v) ? v : { $f: String(v) });
const unfinite = (v: unknown): number => (typeof v === 'object' && v !== null && '$f' in v ? Number((v as { $f: string }).$f) : (v as number));

/** A tensor's header entry and its blob (empty when the value sits in the header). */
function encodeTensor(name: string, t: TensorData): [TensorEntry, Uint8Array] {
  if (t.dtype === 'string') return [[name, t.dtype, [...t.dims], 0, [...(t.data as string[])]], new Uint8Array(0)];
  const size = ELEMENT_BYTES[t.dtype];
  if (size === undefined) throw new GraphError(`tensor '${name}': dtype ${t.dtype} cannot be packed`);
  const d = t.data as ArrayLike<number | bigint>;
  if (d.length === 1 && typeof d[0] === 'number') return [[name, t.dtype, [...t.dims], 0, finite(d[0])], new Uint8Array(0)];
  if (PACKABLE.has(t.dtype)) {
    const v = t.data as ArrayLike<number>;
    const bits = bitsNeeded(v, isSigned(t.dtype));
    return [[name, t.dtype, [...t.dims], bits], packBits(v, bits)];
  }
  return [[name, t.dtype, [...t.dims], size * 8], rawBytes(t, size)];
}

function encodeAttr(a: Attr, n: Node, k: string, addTensor: (name: string, t: TensorData) => number): JsonAttr {
  switch (a.type) {
    case 'int': return ['i', a.value];
    case 'float': return ['f', finite(a.value)];
    case 'string': return ['s', a.value];
    case 'ints': return ['ints', a.value];
    case 'floats': return ['floats', a.value.map(finite)];
    case 'strings': return ['strings', a.value];
    case 'tensor': return ['t', addTensor(`${n.name}/${k}`, a.value)];
    case 'graph': throw new GraphError(`attribute '${k}' is a subgraph; the packed format holds flat graphs only`, n);
  }
}

function decodeAttr([kind, v]: JsonAttr, tensors: TensorData[], where: string): Attr {
  switch (kind) {
    case 'i': return { type: 'int', value: v as number };
    case 'f': return { type: 'float', value: unfinite(v) };
    case 's': return { type: 'string', value: v as string };
    case 'ints': return { type: 'ints', value: v as number[] };
    case 'floats': return { type: 'floats', value: (v as unknown[]).map(unfinite) };
    case 'strings': return { type: 'strings', value: v as string[] };
    case 't': return { type: 'tensor', value: tensors[v as number] };
    default: throw new Error(`${where}: unknown attribute kind '${kind}'`);
  }
}

/** Serialize a graph (normally convert()'s output) to the packed format. */
export function writePacked(g: Graph): Uint8Array {
  const tensors: TensorEntry[] = [];
  const blobs: Uint8Array[] = [];
  const index = new Map<string, number>();
  const addTensor = (name: string, t: TensorData): number => {
    const [e, b] = encodeTensor(name, t);
    tensors.push(e);
    blobs.push(b);
    return tensors.length - 1;
  };
  for (const [name, t] of g.initializers) index.set(name, addTensor(name, t));
  const initializers = tensors.length;
  const nodes = g.nodes.map((n): NodeEntry => {
    const entry: NodeEntry = [n.op, n.name, n.inputs.map((i) => index.get(i) ?? i), n.outputs];
    const keys = Object.keys(n.attrs);
    if (keys.length || n.domain) entry.push(Object.fromEntries(keys.map((k) => [k, encodeAttr(n.attrs[k], n, k, addTensor)])));
    if (n.domain) entry.push(n.domain);
    return entry;
  });
  const header: Header = { name: g.name, inputs: g.inputs, outputs: g.outputs, opsets: g.opsets, tensors, initializers, nodes };
  if (g.meta) header.meta = g.meta;
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(12 + json.length + blobs.reduce((s, b) => s + b.length, 0));
  out.set(new TextEncoder().encode(PACKED_MAGIC), 0);
  const dv = new DataView(out.buffer);
  dv.setUint32(4, PACKED_VERSION, true);
  dv.setUint32(8, json.length, true);
  out.set(json, 12);
  let at = 12 + json.length;
  for (const b of blobs) {
    out.set(b, at);
    at += b.length;
  }
  return out;
}

export function isPacked(bytes: Uint8Array): boolean {
  return bytes.length >= 12 && bytes[0] === 0x51 && bytes[1] === 0x41 && bytes[2] === 0x54 && bytes[3] === 0x4b; // 'QATK'
}

function readHeader(bytes: Uint8Array, file: string): { header: Header; blobStart: number } {
  if (!isPacked(bytes)) throw new Error(`${file}: not a packed qatkit model (no '${PACKED_MAGIC}' magic)`);
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(4, true);
  if (version !== PACKED_VERSION) throw new Error(`${file}: packed format version ${version}, this reader knows ${PACKED_VERSION}`);
  const hlen = dv.getUint32(8, true);
  if (12 + hlen > bytes.length) throw new Error(`${file}: header of ${hlen} bytes runs past the end (${bytes.length} bytes)`);
  try {
    return { header: JSON.parse(new TextDecoder().decode(bytes.subarray(12, 12 + hlen))) as Header, blobStart: 12 + hlen };
  } catch (e) {
    throw new Error(`${file}: header is not JSON: ${(e as Error).message}`);
  }
}

const blobBytes = ([, , dims, bits]: TensorEntry): number => Math.ceil((elementCount(dims) * bits) / 8);

/** Parse a packed file back to a graph, integers unpacked to their dtype's arrays. `file` names errors. */
export function readPacked(bytes: Uint8Array, file = 'packed model'): Graph {
  const { header: h, blobStart } = readHeader(bytes, file);
  let at = blobStart;
  const tensors = h.tensors.map((e): TensorData => {
    const [name, dtype, dims, bits, value] = e;
    if (bits === 0) {
      if (dtype === 'string') return { dtype, dims: [...dims], data: [...(value as string[])] };
      const data = newArray(dtype, 1) as Float64Array;
      data[0] = unfinite(value);
      return { dtype, dims: [...dims], data };
    }
    const len = blobBytes(e);
    if (at + len > bytes.length) throw new Error(`${file}: tensor '${name}' runs past the end of the file`);
    const b = bytes.subarray(at, at + len);
    at += len;
    const data = newArray(dtype, elementCount(dims));
    if (PACKABLE.has(dtype)) unpackBits(b, data as Int32Array, bits, isSigned(dtype));
    else fromRawBytes(b, dtype, data);
    return { dtype, dims: [...dims], data };
  });
  if (at !== bytes.length) throw new Error(`${file}: ${bytes.length - at} bytes after the last tensor`);
  const nodes = h.nodes.map(([op, name, inputs, outputs, attrs, domain]): Node => {
    const node: Node = {
      name,
      op,
      inputs: inputs.map((i) => (typeof i === 'number' ? h.tensors[i][0] : i)),
      outputs,
      attrs: Object.fromEntries(Object.entries(attrs ?? {}).map(([k, a]) => [k, decodeAttr(a, tensors, `${file}: node '${name}' (op ${op})`)])),
    };
    if (domain) node.domain = domain;
    return node;
  });
  const g: Graph = {
    name: h.name,
    nodes,
    inputs: h.inputs,
    outputs: h.outputs,
    opsets: h.opsets,
    initializers: new Map(h.tensors.slice(0, h.initializers).map((e, i) => [e[0], tensors[i]])),
  };
  if (h.meta) g.meta = h.meta;
  return g;
}

/** Run a packed file directly: unpack at load, then an integer session (requantization from the graph's meta). */
export function createPackedSession(bytes: Uint8Array, opts?: IntSessionOptions): IntSession {
  return createIntSession(readPacked(bytes), opts);
}

/** Bytes of a packed file by part: the header, and the tensor data by stored bit width. */
export function packedBreakdown(bytes: Uint8Array): { total: number; header: number; byBits: Record<number, { tensors: number; bytes: number }> } {
  const { header, blobStart } = readHeader(bytes, 'packed model');
  const byBits: Record<number, { tensors: number; bytes: number }> = {};
  for (const e of header.tensors) {
    const b = (byBits[e[3]] ??= { tensors: 0, bytes: 0 });
    b.tensors++;
    b.bytes += blobBytes(e);
  }
  return { total: bytes.length, header: blobStart, byBits };
}
