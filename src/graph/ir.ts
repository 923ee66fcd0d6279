// The one model representation: a graph with ONNX operator semantics.
// Plain data (no tfjs), so that `int` and `onnx` can use it without a tensor library.

export type DType =
  | 'float32' | 'float64' | 'float16'
  | 'int8' | 'uint8' | 'int16' | 'uint16' | 'int32' | 'uint32' | 'int64' | 'uint64'
  | 'int4' | 'uint4' | 'bool' | 'string';

export type TypedArray =
  | Float32Array | Float64Array | Int8Array | Uint8Array | Int16Array | Uint16Array
  | Int32Array | Uint32Array | BigInt64Array | BigUint64Array;

/** A dense tensor value (an initializer, a Constant, a test input). int4/uint4 hold one value per element (unpacked). */
export interface TensorData {
  dtype: DType;
  dims: number[];
  data: TypedArray | string[];
}

export type Dim = number | string | null;

export interface ValueInfo {
  name: string;
  dtype: DType;
  shape?: Dim[];
}

/** ONNX attribute with its wire type kept, so export writes back what was read. */
export type Attr =
  | { type: 'int'; value: number }
  | { type: 'float'; value: number }
  | { type: 'string'; value: string }
  | { type: 'ints'; value: number[] }
  | { type: 'floats'; value: number[] }
  | { type: 'strings'; value: string[] }
  | { type: 'tensor'; value: TensorData }
  | { type: 'graph'; value: Graph };

export interface Node {
  name: string;
  op: string;
  /** '' (or undefined) is the default ONNX domain. */
  domain?: string;
  /** '' marks an omitted optional input, as in ONNX. */
  inputs: string[];
  outputs: string[];
  attrs: Record<string, Attr>;
}

export interface Graph {
  name: string;
  nodes: Node[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializers: Map<string, TensorData>;
  /** opset imports: domain ('' = ai.onnx) -> version */
  opsets: Record<string, number>;
  /** free-form metadata carried to export (metadata_props) */
  meta?: Record<string, string>;
}

export const QATKIT_DOMAIN = 'ai.qatkit';

export function elementCount(dims: readonly number[]): number {
  let n = 1;
  for (const d of dims) n *= d;
  return n;
}

// ---- attribute helpers -------------------------------------------------------

export function attrInt(node: Node, name: string, dflt: number): number;
export function attrInt(node: Node, name: string): number | undefined;
export function attrInt(node: Node, name: string, dflt?: number): number | undefined {
  const a = node.attrs[name];
  if (a === undefined) return dflt;
  if (a.type !== 'int') throw new GraphError(`attribute '${name}' must be an int, got ${a.type}`, node);
  return a.value;
}

export function attrFloat(node: Node, name: string, dflt: number): number;
export function attrFloat(node: Node, name: string): number | undefined;
export function attrFloat(node: Node, name: string, dflt?: number): number | undefined {
  const a = node.attrs[name];
  if (a === undefined) return dflt;
  if (a.type !== 'float' && a.type !== 'int') throw new GraphError(`attribute '${name}' must be a float, got ${a.type}`, node);
  return a.value;
}

export function attrInts(node: Node, name: string, dflt: number[]): number[];
export function attrInts(node: Node, name: string): number[] | undefined;
export function attrInts(node: Node, name: string, dflt?: number[]): number[] | undefined {
  const a = node.attrs[name];
  if (a === undefined) return dflt;
  if (a.type !== 'ints') throw new GraphError(`attribute '${name}' must be ints, got ${a.type}`, node);
  return a.value;
}

export function attrString(node: Node, name: string, dflt: string): string;
export function attrString(node: Node, name: string): string | undefined;
export function attrString(node: Node, name: string, dflt?: string): string | undefined {
  const a = node.attrs[name];
  if (a === undefined) return dflt;
  if (a.type !== 'string') throw new GraphError(`attribute '${name}' must be a string, got ${a.type}`, node);
  return a.value;
}

export const int = (value: number): Attr => ({ type: 'int', value });
export const float = (value: number): Attr => ({ type: 'float', value });
export const ints = (value: number[]): Attr => ({ type: 'ints', value });
export const str = (value: string): Attr => ({ type: 'string', value });

/** An error about a graph that names the node and op it concerns. */
export class GraphError extends Error {
  constructor(message: string, readonly node?: Pick<Node, 'name' | 'op'>, readonly file?: string) {
    super(
      (file ? `${file}: ` : '') +
        (node ? `node '${node.name}' (op ${node.op}): ` : '') +
        message,
    );
    this.name = 'GraphError';
  }
}

// ---- small graph utilities ----------------------------------------------------

export function emptyGraph(name: string, opset = 17): Graph {
  return { name, nodes: [], inputs: [], outputs: [], initializers: new Map(), opsets: { '': opset } };
}

export function floatTensor(dims: number[], data?: Float32Array | number[]): TensorData {
  const n = elementCount(dims);
  const arr = data === undefined ? new Float32Array(n) : data instanceof Float32Array ? data : Float32Array.from(data);
  if (arr.length !== n) throw new Error(`tensor data has ${arr.length} elements, dims ${JSON.stringify(dims)} need ${n}`);
  return { dtype: 'float32', dims: [...dims], data: arr };
}

/** Map from value name to the node producing it. */
export function producers(g: Graph): Map<string, Node> {
  const m = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) m.set(o, n);
  return m;
}

/** Map from value name to the nodes consuming it. */
export function consumers(g: Graph): Map<string, Node[]> {
  const m = new Map<string, Node[]>();
  for (const n of g.nodes)
    for (const i of n.inputs) {
      if (!i) continue;
      const l = m.get(i);
      if (l) l.push(n);
      else m.set(i, [n]);
    }
  return m;
}

/** Nodes in an order where every input is produced before use; throws on cycles or undefined inputs. */
export function topoSort(g: Graph): Node[] {
  const known = new Set<string>([...g.inputs.map((i) => i.name), ...g.initializers.keys(), '']);
  const prod = producers(g);
  const order: Node[] = [];
  const state = new Map<Node, 1 | 2>();
  const visit = (n: Node): void => {
    const s = state.get(n);
    if (s === 2) return;
    if (s === 1) throw new GraphError('graph has a cycle', n);
    state.set(n, 1);
    for (const i of n.inputs) {
      if (known.has(i)) continue;
      const p = prod.get(i);
      if (!p) throw new GraphError(`input '${i}' is produced by no node, graph input or initializer`, n);
      visit(p);
    }
    state.set(n, 2);
    order.push(n);
  };
  for (const n of g.nodes) visit(n);
  return order;
}

/** A fresh name not yet used in the graph. */
export function uniqueName(g: Graph, base: string, taken?: Set<string>): string {
  const used = taken ?? allNames(g);
  let name = base;
  for (let k = 1; used.has(name); k++) name = `${base}_${k}`;
  used.add(name);
  return name;
}

export function allNames(g: Graph): Set<string> {
  const s = new Set<string>([...g.initializers.keys(), ...g.inputs.map((i) => i.name)]);
  for (const n of g.nodes) {
    s.add(n.name);
    for (const o of n.outputs) s.add(o);
  }
  return s;
}

/** Deep copy (typed arrays copied) so passes can mutate freely. */
export function cloneGraph(g: Graph): Graph {
  const cloneT = (t: TensorData): TensorData => ({
    dtype: t.dtype,
    dims: [...t.dims],
    data: Array.isArray(t.data) ? [...t.data] : (t.data as TypedArray).slice(),
  });
  const cloneAttr = (a: Attr): Attr =>
    a.type === 'tensor' ? { type: 'tensor', value: cloneT(a.value) }
    : a.type === 'graph' ? { type: 'graph', value: cloneGraph(a.value) }
    : Array.isArray(a.value) ? ({ type: a.type, value: [...a.value] } as Attr)
    : { ...a };
  return {
    name: g.name,
    nodes: g.nodes.map((n) => ({
      name: n.name,
      op: n.op,
      domain: n.domain,
      inputs: [...n.inputs],
      outputs: [...n.outputs],
      attrs: Object.fromEntries(Object.entries(n.attrs).map(([k, v]) => [k, cloneAttr(v)])),
    })),
    inputs: g.inputs.map((v) => ({ ...v, shape: v.shape ? [...v.shape] : undefined })),
    outputs: g.outputs.map((v) => ({ ...v, shape: v.shape ? [...v.shape] : undefined })),
    initializers: new Map([...g.initializers].map(([k, v]) => [k, cloneT(v)])),
    opsets: { ...g.opsets },
    meta: g.meta ? { ...g.meta } : undefined,
  };
}
