// ModelProto <-> Graph. Reads what the IR can hold and fails loudly on what it cannot
// (sparse initializers, model-local functions, sequence/map inputs) instead of dropping it.
// value_info, doc strings and producer fields are not kept: the IR has no place for them.

import { GraphError, type Attr, type Dim, type Graph, type Node, type ValueInfo } from '../graph/ir.js';
import { ProtoReader, ProtoWriter, Wire, decodeUtf8, encodeUtf8 } from './protobuf.js';
import { decodeTensor, dtypeFromOnnx, encodeTensor, ONNX_DTYPE } from './tensor.js';

// AttributeProto.AttributeType
const AT = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, GRAPH: 5, FLOATS: 6, INTS: 7, STRINGS: 8 } as const;
const AT_NAMES: Record<number, string> = {
  ...Object.fromEntries(Object.entries(AT).map(([k, v]) => [v, k])),
  9: 'TENSORS', 10: 'GRAPHS', 11: 'SPARSE_TENSOR', 12: 'SPARSE_TENSORS', 13: 'TYPE_PROTO', 14: 'TYPE_PROTOS',
};

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);

/** Attribute int64s beyond 2^53 are sentinels (Slice ends = INT64_MAX): keep them as the nearest double, write back clamped. */
const lossyInt64 = (r: ProtoReader): number => Number(r.int64Big());
const int64Wire = (v: number): number | bigint => {
  if (Number.isSafeInteger(v)) return v;
  if (!Number.isFinite(v) || !Number.isInteger(v)) throw new RangeError(`int64 value ${v} is not an integer`);
  const b = BigInt(v);
  return b > INT64_MAX ? INT64_MAX : b < INT64_MIN ? INT64_MIN : b;
};

/**
 * A model that is valid ONNX but uses what the IR cannot hold (sequence or optional types, untyped subgraph values,
 * sparse initializers, model-local functions): callers may skip such models rather than fail.
 */
export class UnsupportedModelError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnsupportedModelError';
  }
}

// ---- reading -----------------------------------------------------------------

interface Ctx {
  file: string;
}

function readStringEntry(r: ProtoReader): [string, string] {
  let key = '';
  let value = '';
  while (!r.eof()) {
    const { field, wire } = r.tag();
    if (field === 1) key = r.string();
    else if (field === 2) value = r.string();
    else r.skip(wire);
  }
  return [key, value];
}

function readDims(r: ProtoReader): Dim[] {
  const dims: Dim[] = [];
  while (!r.eof()) {
    const { field, wire } = r.tag();
    if (field !== 1) {
      r.skip(wire);
      continue;
    }
    const d = r.message();
    let dim: Dim = null;
    while (!d.eof()) {
      const k = d.tag();
      if (k.field === 1) dim = d.int64();
      else if (k.field === 2) dim = d.string();
      else d.skip(k.wire);
    }
    dims.push(dim);
  }
  return dims;
}

/** ValueInfoProto of a graph input or output: only tensor types are supported. */
function readValueInfo(r: ProtoReader, where: string, subgraph: boolean): ValueInfo {
  let name = '';
  let elemType: number | undefined;
  let shape: Dim[] | undefined;
  let other: string | undefined;
  while (!r.eof()) {
    const { field, wire } = r.tag();
    if (field === 1) name = r.string();
    else if (field === 2) {
      const t = r.message();
      while (!t.eof()) {
        const k = t.tag();
        if (k.field === 1) {
          const tt = t.message();
          while (!tt.eof()) {
            const kk = tt.tag();
            if (kk.field === 1) elemType = tt.int32();
            else if (kk.field === 2) shape = readDims(tt.message());
            else tt.skip(kk.wire);
          }
        } else if (k.field === 4 || k.field === 5 || k.field === 8 || k.field === 9) {
          other = ({ 4: 'sequence', 5: 'map', 8: 'sparse tensor', 9: 'optional' } as Record<number, string>)[k.field];
          t.skip(k.wire);
        } else t.skip(k.wire);
      }
    } else r.skip(wire);
  }
  if (other) throw new UnsupportedModelError(`${where} '${name}': ${other} types are not supported (tensors only)`);
  // ONNX lets a subgraph (a Loop body, say) leave its value types to inference; the IR needs a dtype on each
  if (elemType === undefined && subgraph)
    throw new UnsupportedModelError(`${where} '${name}': subgraph values without a tensor element type are not supported`);
  if (elemType === undefined) throw new Error(`${where} '${name}': no tensor element type`);
  const vi: ValueInfo = { name, dtype: dtypeFromOnnx(elemType, `${where} '${name}'`) };
  if (shape) vi.shape = shape;
  return vi;
}

interface RawAttr {
  name: string;
  type: number;
  f?: number;
  i?: number;
  s?: Uint8Array;
  t?: Attr & { type: 'tensor' };
  g?: Graph;
  floats: number[];
  ints: number[];
  strings: Uint8Array[];
  unsupported?: number;
}

function readAttr(r: ProtoReader, node: Pick<Node, 'name' | 'op'>, opsets: Record<string, number>, ctx: Ctx, where: string): [string, Attr] {
  const a: RawAttr = { name: '', type: 0, floats: [], ints: [], strings: [] };
  while (!r.eof()) {
    const { field, wire } = r.tag();
    switch (field) {
      case 1: a.name = r.string(); break;
      case 20: a.type = r.int32(); break;
      case 2: a.f = r.float(); break;
      case 3: a.i = lossyInt64(r); break;
      case 4: a.s = r.bytesView(); break;
      case 5: a.t = { type: 'tensor', value: decodeTensor(r.message(`${where} attribute tensor`), `${where} attribute`).tensor }; break;
      case 6: a.g = readGraph(r.message(`${where} subgraph`), opsets, ctx, `${where} subgraph`, true); break;
      case 7: r.repeated(wire, Wire.Fixed32, (s) => s.float(), a.floats); break;
      case 8: r.repeated(wire, Wire.Varint, lossyInt64, a.ints); break;
      case 9: a.strings.push(r.bytesView()); break;
      case 10: case 11: case 22: case 23: case 14: case 15:
        a.unsupported = { 10: 9, 11: 10, 22: 11, 23: 12, 14: 13, 15: 14 }[field];
        r.skip(wire);
        break;
      default: r.skip(wire); // doc_string, ref_attr_name
    }
  }
  // Old exporters omit `type`; infer it from the field that is set.
  let type = a.type;
  if (type === 0)
    type = a.unsupported ?? (a.floats.length ? AT.FLOATS : a.ints.length ? AT.INTS : a.strings.length ? AT.STRINGS
      : a.t ? AT.TENSOR : a.g ? AT.GRAPH : a.f !== undefined ? AT.FLOAT : a.i !== undefined ? AT.INT : a.s ? AT.STRING : AT.INTS);
  const missing = (): never => { throw new GraphError(`attribute '${a.name}' of type ${AT_NAMES[type]} has no value`, node, ctx.file || undefined); };
  switch (type) {
    case AT.FLOAT: return [a.name, { type: 'float', value: a.f ?? missing() }];
    case AT.INT: return [a.name, { type: 'int', value: a.i ?? missing() }];
    case AT.STRING: return [a.name, { type: 'string', value: decodeUtf8(a.s ?? missing()) }];
    case AT.TENSOR: return [a.name, a.t ?? missing()];
    case AT.GRAPH: return [a.name, { type: 'graph', value: a.g ?? missing() }];
    case AT.FLOATS: return [a.name, { type: 'floats', value: a.floats }];
    case AT.INTS: return [a.name, { type: 'ints', value: a.ints }];
    case AT.STRINGS: return [a.name, { type: 'strings', value: a.strings.map(decodeUtf8) }];
  }
  throw new GraphError(`attribute '${a.name}' has type ${AT_NAMES[type] ?? type}, which qatkit does not support`, node, ctx.file || undefined);
}

function readNode(r: ProtoReader, opsets: Record<string, number>, ctx: Ctx, where: string): Node {
  const node: Node = { name: '', op: '', inputs: [], outputs: [], attrs: {} };
  const attrs: ProtoReader[] = [];
  while (!r.eof()) {
    const { field, wire } = r.tag();
    switch (field) {
      case 1: node.inputs.push(r.string()); break;
      case 2: node.outputs.push(r.string()); break;
      case 3: node.name = r.string(); break;
      case 4: node.op = r.string(); break;
      case 5: attrs.push(r.message()); break; // parsed once name and op are known, for error messages
      case 7: { const d = r.string(); if (d) node.domain = d; break; }
      default: r.skip(wire);
    }
  }
  const here = `${where} node '${node.name}' (op ${node.op})`;
  for (const a of attrs) {
    const [k, v] = readAttr(new ProtoReader(a.bytes, a.pos, a.end, here), node, opsets, ctx, here);
    node.attrs[k] = v;
  }
  return node;
}

function readGraph(r: ProtoReader, opsets: Record<string, number>, ctx: Ctx, where: string, subgraph = false): Graph {
  const g: Graph = { name: '', nodes: [], inputs: [], outputs: [], initializers: new Map(), opsets };
  while (!r.eof()) {
    const { field, wire } = r.tag();
    const at = r.pos;
    switch (field) {
      case 1: g.nodes.push(readNode(r.message(`${where} node[${g.nodes.length}]`), opsets, ctx, where)); break;
      case 2: g.name = r.string(); break;
      case 5: {
        const { name, tensor } = decodeTensor(r.message(`${where} initializer`), `${where} initializer`);
        g.initializers.set(name, tensor);
        break;
      }
      case 11: g.inputs.push(readValueInfo(r.message(`${where} input`), `${where} input`, subgraph)); break;
      case 12: g.outputs.push(readValueInfo(r.message(`${where} output`), `${where} output`, subgraph)); break;
      case 15: throw new UnsupportedModelError(`${where}: sparse_initializer (byte ${at}) is not supported; densify the model first`);
      default: r.skip(wire); // doc_string, value_info, quantization_annotation
    }
  }
  return g;
}

/** Parse an ONNX ModelProto. `file` only names the source in errors. */
export function readOnnx(bytes: Uint8Array, file?: string): Graph {
  const ctx: Ctx = { file: file ?? '' };
  const pre = file ? `${file}: ` : '';
  const r = new ProtoReader(bytes, 0, bytes.length, `${pre}ModelProto`);
  let graph: Graph | undefined;
  const opsets: Record<string, number> = {};
  let hasOpsets = false;
  let irVersion: number | undefined;
  const meta: Record<string, string> = {};
  let hasMeta = false;
  while (!r.eof()) {
    const { field, wire } = r.tag();
    const at = r.pos;
    switch (field) {
      case 1: irVersion = r.int64(); break;
      case 7: graph = readGraph(r.message(`${pre}GraphProto`), opsets, ctx, `${pre}graph`); break;
      case 8: {
        const o = r.message(`${pre}opset_import`);
        let domain = '';
        let version = 1;
        while (!o.eof()) {
          const k = o.tag();
          if (k.field === 1) domain = o.string();
          else if (k.field === 2) version = o.int64();
          else o.skip(k.wire);
        }
        opsets[domain] = version;
        hasOpsets = true;
        break;
      }
      case 14: {
        const [k, v] = readStringEntry(r.message(`${pre}metadata_props`));
        meta[k] = v;
        hasMeta = true;
        break;
      }
      case 25: throw new UnsupportedModelError(`${pre}model-local functions (ModelProto.functions, byte ${at}) are not supported; inline them first`);
      default: r.skip(wire); // producer, domain, model_version, doc_string, training_info
    }
  }
  if (!graph || irVersion === undefined || !hasOpsets)
    throw new Error(`${pre}not an ONNX model: ModelProto has no ${!graph ? 'graph' : irVersion === undefined ? 'ir_version' : 'opset_import'} (${bytes.length} bytes; truncated or another format?)`);
  if (!(domainVersion(opsets, '') > 0)) throw new Error(`${pre}ModelProto has no opset for the default ONNX domain`);
  if (hasMeta) graph.meta = meta;
  return graph;
}

/** Version of a domain, treating 'ai.onnx' as the default domain ''. */
export function domainVersion(opsets: Record<string, number>, domain: string): number {
  if (domain === '' || domain === 'ai.onnx') return opsets[''] ?? opsets['ai.onnx'] ?? 0;
  return opsets[domain] ?? 0;
}

// ---- writing -----------------------------------------------------------------

/** IR version for a default-domain opset: the lowest IR whose ONNX release covers the opset (never below 8, which every runtime we target reads). */
export function irVersionFor(opset: number): number {
  if (opset <= 18) return 8;
  if (opset <= 20) return 9;
  if (opset <= 22) return 10;
  return 11;
}

function writeValueInfo(w: ProtoWriter, v: ValueInfo): void {
  w.stringField(1, v.name);
  w.messageField(2, (t) =>
    t.messageField(1, (tt) => {
      tt.varintField(1, ONNX_DTYPE[v.dtype]);
      if (v.shape)
        tt.messageField(2, (s) => {
          for (const d of v.shape!)
            s.messageField(1, (dm) => {
              if (typeof d === 'number') dm.varintField(1, d);
              else if (typeof d === 'string') dm.stringField(2, d);
            });
        });
    }),
  );
}

function writeAttr(w: ProtoWriter, name: string, a: Attr, node: Node): void {
  w.stringField(1, name);
  switch (a.type) {
    case 'float': w.floatField(2, a.value); break;
    case 'int': w.varintField(3, int64Wire(a.value)); break;
    case 'string': w.bytesField(4, encodeUtf8(a.value)); break;
    case 'tensor': w.messageField(5, (t) => encodeTensor(t, a.value, '')); break;
    case 'graph': w.messageField(6, (g) => writeGraph(g, a.value)); break;
    case 'floats': w.packedFloats(7, a.value); break;
    case 'ints': w.packedVarints(8, a.value.map(int64Wire)); break;
    case 'strings': for (const s of a.value) w.bytesField(9, encodeUtf8(s)); break;
    default: throw new GraphError(`attribute '${name}' has unknown type ${(a as { type: string }).type}`, node);
  }
  w.varintField(20, AT[a.type.toUpperCase() as keyof typeof AT]);
}

function writeNode(w: ProtoWriter, n: Node): void {
  for (const i of n.inputs) w.stringField(1, i);
  for (const o of n.outputs) w.stringField(2, o);
  if (n.name) w.stringField(3, n.name);
  w.stringField(4, n.op);
  for (const [k, a] of Object.entries(n.attrs)) w.messageField(5, (aw) => writeAttr(aw, k, a, n));
  if (n.domain) w.stringField(7, n.domain);
}

function writeGraph(w: ProtoWriter, g: Graph): void {
  for (const n of g.nodes) w.messageField(1, (nw) => writeNode(nw, n));
  w.stringField(2, g.name);
  for (const [name, t] of g.initializers) w.messageField(5, (tw) => encodeTensor(tw, t, name));
  for (const v of g.inputs) w.messageField(11, (vw) => writeValueInfo(vw, v));
  for (const v of g.outputs) w.messageField(12, (vw) => writeValueInfo(vw, v));
}

/** Domains used by nodes (subgraphs included), so each gets an opset_import entry. */
function usedDomains(g: Graph, out = new Set<string>()): Set<string> {
  for (const n of g.nodes) {
    out.add(n.domain ?? '');
    for (const a of Object.values(n.attrs)) if (a.type === 'graph') usedDomains(a.value, out);
  }
  return out;
}

export interface WriteOnnxOptions {
  /** default: irVersionFor(opsets['']) */
  irVersion?: number;
  producerVersion?: string;
  docString?: string;
}

/** Serialize a Graph as an ONNX ModelProto (producer 'qatkit'). Domains used without an opset get version 1. */
export function writeOnnx(g: Graph, opts: WriteOnnxOptions = {}): Uint8Array {
  const opset = domainVersion(g.opsets, '');
  if (!(opset > 0)) throw new Error(`graph '${g.name}': no opset for the default ONNX domain in opsets ${JSON.stringify(g.opsets)}`);
  const opsets: Record<string, number> = { ...g.opsets };
  for (const d of usedDomains(g)) if (d !== '' && d !== 'ai.onnx' && !(d in opsets)) opsets[d] = 1;
  const w = new ProtoWriter();
  w.varintField(1, opts.irVersion ?? irVersionFor(opset));
  w.stringField(2, 'qatkit');
  if (opts.producerVersion) w.stringField(3, opts.producerVersion);
  if (opts.docString) w.stringField(6, opts.docString);
  w.messageField(7, (gw) => writeGraph(gw, g));
  for (const [domain, version] of Object.entries(opsets))
    w.messageField(8, (o) => {
      if (domain) o.stringField(1, domain);
      o.varintField(2, version);
    });
  for (const [k, v] of Object.entries(g.meta ?? {}))
    w.messageField(14, (m) => m.stringField(1, k).stringField(2, v));
  return w.finish();
}
