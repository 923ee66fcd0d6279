// Import normalization: models exported at opsets 7..21 (PyTorch, tf2onnx, Paddle2ONNX) are rewritten
// into ONE canonical form so the executor needs to know a single form of each op.
//
// The canonical form (CANONICAL_OPSET = 18; opsets[''] becomes max(18, original)):
// - no Constant nodes: their values are initializers; graph inputs never repeat initializers;
// - every "axes"/"pads"/"starts"/"k"/"split"/"shape"/"min"/"max" operand is an INPUT (the opset 13..18 form):
//   Squeeze, Unsqueeze and all ReduceX take axes as an int64 input (ReduceMean etc. moved in opset 18,
//   which is why the canonical opset is 18 and not 13); Clip min/max, Pad pads/value, Slice starts/ends/axes,
//   Split split, TopK k and Reshape shape likewise;
// - Softmax/LogSoftmax/Hardmax have opset-13 meaning (one axis); pre-13 nodes that flattened from `axis`
//   get an explicit last axis when that is the same thing, otherwise Flatten -> op -> Reshape(Shape(x));
// - Dropout and Identity are gone (Identity kept only where it names a graph output), Upsample and
//   Resize-10 are Resize-18 with the same sampling, Scatter is ScatterElements;
// - BatchNormalization has no spatial/is_test/consumed_inputs and a single output;
// - every node has a unique, non-empty name and the default domain is '' (never 'ai.onnx').
// Anything else is left as is: the executor reports unsupported ops by node name.
// Operand initializers assume float32 data where the old attribute was a float (Clip, Pad value), as
// Clip-6 and Pad-2 are float ops in practice.

import {
  GraphError, cloneGraph, uniqueName, allNames,
  type Attr, type Graph, type Node, type TensorData,
} from '../graph/ir.js';
import { domainVersion } from './model.js';

export const CANONICAL_OPSET = 18;

const INT64_MAX = 2n ** 63n - 1n;
const INT64_MIN = -(2n ** 63n);
/** Attribute ints above 2^53 are INT64 sentinels held as the nearest double; clamp them back. */
const toInt64 = (v: number): bigint => {
  const b = BigInt(Math.trunc(v));
  return b > INT64_MAX ? INT64_MAX : b < INT64_MIN ? INT64_MIN : b;
};

const int64Tensor = (vals: number[], scalar = false): TensorData => ({
  dtype: 'int64', dims: scalar ? [] : [vals.length], data: BigInt64Array.from(vals.map(toInt64)),
});
const float32Scalar = (v: number): TensorData => ({ dtype: 'float32', dims: [], data: Float32Array.of(v) });

interface Ctx {
  g: Graph;
  /** the model's original default-domain opset */
  opset: number;
  /** the opset the result declares */
  target: number;
  taken: Set<string>;
  outputs: Set<string>;
  rank: (value: string) => number | undefined;
  file?: string;
}

const fresh = (ctx: Ctx, base: string): string => uniqueName(ctx.g, base, ctx.taken);

function addInit(ctx: Ctx, base: string, t: TensorData): string {
  const name = fresh(ctx, base);
  ctx.g.initializers.set(name, t);
  return name;
}

/** Values of a constant (initializer) as numbers, or undefined if the value is computed. */
function constValues(g: Graph, name: string | undefined): number[] | undefined {
  if (!name) return undefined;
  const t = g.initializers.get(name);
  if (!t || t.dtype === 'string') return undefined;
  return Array.from(t.data as ArrayLike<number | bigint>, Number);
}

const withoutAttrs = (n: Node, ...names: string[]): Record<string, Attr> =>
  Object.fromEntries(Object.entries(n.attrs).filter(([k]) => !names.includes(k)));

/** Trailing '' inputs are optional inputs left out; drop them so node arity stays minimal. */
function trimInputs(inputs: string[]): string[] {
  const out = [...inputs];
  while (out.length && out[out.length - 1] === '') out.pop();
  return out;
}

function ints(n: Node, name: string): number[] | undefined {
  const a = n.attrs[name];
  if (!a) return undefined;
  if (a.type === 'ints') return a.value;
  if (a.type === 'int') return [a.value];
  throw new GraphError(`attribute '${name}' must be ints, got ${a.type}`, n);
}

function num(n: Node, name: string): number | undefined {
  const a = n.attrs[name];
  if (!a) return undefined;
  if (a.type === 'float' || a.type === 'int') return a.value;
  throw new GraphError(`attribute '${name}' must be a number, got ${a.type}`, n);
}

const REDUCE_OPS = ['ReduceMax', 'ReduceMin', 'ReduceMean', 'ReduceProd', 'ReduceSum', 'ReduceSumSquare', 'ReduceL1', 'ReduceL2', 'ReduceLogSum', 'ReduceLogSumExp'];

// ---- rank inference: just enough to tell whether a pre-13 Softmax axis is the last one --------------

type RankRule = (n: Node, r: (i: number) => number | undefined, g: Graph) => number | undefined;

const sameAsFirst: RankRule = (_n, r) => r(0);
const broadcast: RankRule = (n, r) => {
  let m = 0;
  for (let i = 0; i < n.inputs.length; i++) {
    const k = r(i);
    if (k === undefined) return undefined;
    m = Math.max(m, k);
  }
  return m;
};
const axesOf = (n: Node, g: Graph): number[] | undefined => ints(n, 'axes') ?? constValues(g, n.inputs[1]);

const RANK_RULES: Record<string, RankRule> = {
  Gemm: () => 2,
  Flatten: () => 2,
  Shape: () => 1,
  Size: () => 0,
  MatMul: (_n, r) => {
    const a = r(0), b = r(1);
    if (a === undefined || b === undefined) return undefined;
    return a === 1 ? b - 1 : b === 1 ? a - 1 : Math.max(a, b);
  },
  Reshape: (n, _r, g) => (ints(n, 'shape') ?? constValues(g, n.inputs[1]))?.length,
  Unsqueeze: (n, r, g) => { const k = r(0), a = axesOf(n, g); return k === undefined || !a ? undefined : k + a.length; },
  Squeeze: (n, r, g) => { const k = r(0), a = axesOf(n, g); return k === undefined || !a ? undefined : k - a.length; },
  Gather: (_n, r) => { const a = r(0), b = r(1); return a === undefined || b === undefined ? undefined : a - 1 + b; },
};
for (const op of ['Add', 'Sub', 'Mul', 'Div', 'Pow', 'Max', 'Min', 'Sum', 'Mean', 'PRelu', 'Where', 'Equal', 'Less', 'Greater', 'And', 'Or'])
  RANK_RULES[op] = broadcast;
for (const op of [
  'Relu', 'Sigmoid', 'Tanh', 'Clip', 'Dropout', 'Identity', 'BatchNormalization', 'LeakyRelu', 'Elu', 'Selu', 'Softplus',
  'Exp', 'Log', 'Neg', 'Abs', 'Sqrt', 'Reciprocal', 'Cast', 'Softmax', 'LogSoftmax', 'Hardmax', 'Erf', 'HardSigmoid',
  'HardSwish', 'LRN', 'InstanceNormalization', 'LayerNormalization', 'Pad', 'Upsample', 'Resize', 'MaxPool', 'AveragePool',
  'Conv', 'ConvTranspose', 'GlobalAveragePool', 'GlobalMaxPool', 'Transpose', 'Slice', 'DepthToSpace', 'SpaceToDepth',
  'Tile', 'Concat', 'Split', 'QuantizeLinear', 'DequantizeLinear', 'Not', 'Floor', 'Ceil', 'Round',
]) RANK_RULES[op] ??= sameAsFirst;
for (const op of REDUCE_OPS)
  RANK_RULES[op] = (n, r, g) => {
    const k = r(0);
    if (k === undefined) return undefined;
    if ((num(n, 'keepdims') ?? 1) !== 0) return k;
    const a = axesOf(n, g);
    return a ? k - a.length : 0;
  };

function rankInference(g: Graph): (value: string) => number | undefined {
  const prod = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) prod.set(o, n);
  const memo = new Map<string, number | undefined>();
  const rank = (v: string): number | undefined => {
    if (memo.has(v)) return memo.get(v);
    memo.set(v, undefined); // cycle guard
    let k: number | undefined;
    const init = g.initializers.get(v);
    const inp = g.inputs.find((i) => i.name === v);
    if (init) k = init.dims.length;
    else if (inp) k = inp.shape?.length;
    else {
      const n = prod.get(v);
      const rule = n && (n.domain ?? '') === '' ? RANK_RULES[n.op] : undefined;
      if (n && rule) k = rule(n, (i) => (n.inputs[i] ? rank(n.inputs[i]) : undefined), g);
    }
    memo.set(v, k);
    return k;
  };
  return rank;
}

// ---- node rules: each returns the replacement nodes, or undefined to keep the node ----------------

type Rule = (n: Node, ctx: Ctx) => Node[] | undefined;

/** Move an attribute list to an int64 input at `index` (axes, pads, starts, ...). */
function attrToInput(n: Node, ctx: Ctx, attr: string, index: number, asScalar = false): Node {
  const v = ints(n, attr);
  if (v === undefined) return n;
  const inputs = [...n.inputs];
  while (inputs.length < index) inputs.push('');
  inputs[index] = addInit(ctx, `${n.name}_${attr}`, int64Tensor(v, asScalar));
  return { ...n, inputs, attrs: withoutAttrs(n, attr) };
}

const axesToInput: Rule = (n, ctx) => (n.attrs.axes ? [attrToInput(n, ctx, 'axes', 1)] : undefined);

/** Pre-13 Softmax/LogSoftmax/Hardmax: coerce to 2-D at `axis` (default 1), apply on the second dimension. */
const flatteningSoftmax: Rule = (n, ctx) => {
  if (ctx.opset >= 13) return undefined;
  const axis = num(n, 'axis') ?? 1;
  const r = ctx.rank(n.inputs[0]);
  if (axis === -1 || (r !== undefined && (axis < 0 ? axis + r : axis) === r - 1))
    return [{ ...n, attrs: { ...n.attrs, axis: { type: 'int', value: -1 } } }];
  // axis is not the last one (or the rank is unknown): make the flattening explicit
  const flat = fresh(ctx, `${n.name}_flat`);
  const soft = fresh(ctx, `${n.name}_2d`);
  const shape = fresh(ctx, `${n.name}_shape`);
  return [
    { name: fresh(ctx, `${n.name}/Flatten`), op: 'Flatten', inputs: [n.inputs[0]], outputs: [flat], attrs: { axis: { type: 'int', value: axis } } },
    { ...n, inputs: [flat], outputs: [soft], attrs: { ...n.attrs, axis: { type: 'int', value: -1 } } },
    { name: fresh(ctx, `${n.name}/Shape`), op: 'Shape', inputs: [n.inputs[0]], outputs: [shape], attrs: {} },
    { name: fresh(ctx, `${n.name}/Reshape`), op: 'Reshape', inputs: [soft, shape], outputs: [n.outputs[0]], attrs: {} },
  ];
};

/** Upsample (any opset) and Resize-10 -> Resize-18 with the same sampling: asymmetric coordinates;
 *  nearest picks floor when enlarging and ceil when shrinking (onnxruntime's pre-11 behaviour). */
const toResize: Rule = (n, ctx) => {
  if (n.op === 'Resize' && ctx.opset >= 11) return undefined;
  let scalesName = n.inputs[1];
  const attrScales = n.attrs.scales;
  if (attrScales) {
    if (attrScales.type !== 'floats') throw new GraphError(`attribute 'scales' must be floats, got ${attrScales.type}`, n, ctx.file);
    scalesName = addInit(ctx, `${n.name}_scales`, { dtype: 'float32', dims: [attrScales.value.length], data: Float32Array.from(attrScales.value) });
  }
  if (!scalesName) return undefined;
  let mode = n.attrs.mode?.type === 'string' ? n.attrs.mode.value : 'nearest';
  if (mode === 'bilinear' || mode === 'trilinear') mode = 'linear';
  const attrs: Record<string, Attr> = {
    mode: { type: 'string', value: mode },
    coordinate_transformation_mode: { type: 'string', value: 'asymmetric' },
  };
  if (mode === 'nearest') {
    const s = constValues(ctx.g, scalesName);
    const shrink = s?.some((v) => v < 1);
    const grow = s === undefined || s.some((v) => v > 1);
    if (shrink && grow) return undefined; // mixed: no single nearest_mode matches, leave for the executor to report
    attrs.nearest_mode = { type: 'string', value: shrink ? 'ceil' : 'floor' };
  }
  return [{ name: n.name, op: 'Resize', inputs: [n.inputs[0], '', scalesName], outputs: n.outputs, attrs }];
};

const RULES: Record<string, Rule> = {
  Squeeze: axesToInput,
  Unsqueeze: axesToInput,
  Softmax: flatteningSoftmax,
  LogSoftmax: flatteningSoftmax,
  Hardmax: flatteningSoftmax,
  Upsample: toResize,
  Resize: toResize,
  Scatter: (n) => [{ ...n, op: 'ScatterElements' }],
  Reshape: (n, ctx) => (n.attrs.shape ? [attrToInput(n, ctx, 'shape', 1)] : undefined),
  TopK: (n, ctx) => (n.attrs.k ? [attrToInput(n, ctx, 'k', 1)] : undefined),
  Slice: (n, ctx) => {
    if (!n.attrs.starts) return undefined;
    let m = attrToInput(n, ctx, 'starts', 1);
    m = attrToInput(m, ctx, 'ends', 2);
    return [attrToInput(m, ctx, 'axes', 3)];
  },
  Split: (n, ctx) => {
    const m = n.attrs.split ? attrToInput(n, ctx, 'split', 1) : n;
    // opset 18 wants either the split input or num_outputs; before 18 neither meant equal parts
    if (ctx.target >= 18 && !m.inputs[1] && !m.attrs.num_outputs)
      return [{ ...m, attrs: { ...m.attrs, num_outputs: { type: 'int', value: m.outputs.length } } }];
    return m === n ? undefined : [m];
  },
  Clip: (n, ctx) => {
    if (!n.attrs.min && !n.attrs.max) return undefined;
    const lo = num(n, 'min'), hi = num(n, 'max');
    const inputs = [n.inputs[0],
      lo === undefined ? '' : addInit(ctx, `${n.name}_min`, float32Scalar(lo)),
      hi === undefined ? '' : addInit(ctx, `${n.name}_max`, float32Scalar(hi))];
    return [{ ...n, inputs: trimInputs(inputs), attrs: withoutAttrs(n, 'min', 'max') }];
  },
  Pad: (n, ctx) => {
    const pads = ints(n, 'pads') ?? ints(n, 'paddings');
    if (!pads) return undefined;
    const value = num(n, 'value') ?? 0;
    const inputs = [n.inputs[0], addInit(ctx, `${n.name}_pads`, int64Tensor(pads))];
    if (value !== 0) inputs.push(addInit(ctx, `${n.name}_value`, float32Scalar(value)));
    return [{ ...n, inputs, attrs: withoutAttrs(n, 'pads', 'paddings', 'value') }];
  },
  BatchNormalization: (n, ctx) => {
    const spatial = num(n, 'spatial');
    if (spatial !== undefined && spatial !== 1) return undefined; // per-activation statistics: not the canonical op
    // inference uses only Y; the running/saved statistics outputs must be unused to drop them
    const extra = n.outputs.slice(1).filter((o) => o && (ctx.outputs.has(o) || isConsumed(ctx.g, o)));
    if (extra.length) return undefined;
    return [{ ...n, outputs: [n.outputs[0]], attrs: withoutAttrs(n, 'spatial', 'is_test', 'consumed_inputs') }];
  },
  Dropout: (n, ctx) => {
    const mask = n.outputs[1];
    if (mask && (ctx.outputs.has(mask) || isConsumed(ctx.g, mask))) return undefined;
    return [{ name: n.name, op: 'Identity', inputs: [n.inputs[0]], outputs: [n.outputs[0]], attrs: {} }];
  },
};
for (const op of REDUCE_OPS) RULES[op] = axesToInput;

function isConsumed(g: Graph, value: string): boolean {
  return g.nodes.some((n) => n.inputs.includes(value) || Object.values(n.attrs).some((a) => a.type === 'graph' && isConsumed(a.value, value)));
}

// ---- graph passes ------------------------------------------------------------------------------------

/** Constant node -> initializer, for every `value*` form (value_float(s)/value_int(s)/value_string(s) since opset 12). */
function constantValue(n: Node): TensorData | undefined {
  const entries = Object.entries(n.attrs);
  if (entries.length !== 1) return undefined;
  const [k, a] = entries[0];
  switch (k) {
    case 'value': return a.type === 'tensor' ? a.value : undefined;
    case 'value_float': return a.type === 'float' ? float32Scalar(a.value) : undefined;
    case 'value_floats': return a.type === 'floats' ? { dtype: 'float32', dims: [a.value.length], data: Float32Array.from(a.value) } : undefined;
    case 'value_int': return a.type === 'int' ? int64Tensor([a.value], true) : undefined;
    case 'value_ints': return a.type === 'ints' ? int64Tensor(a.value) : undefined;
    case 'value_string': return a.type === 'string' ? { dtype: 'string', dims: [], data: [a.value] } : undefined;
    case 'value_strings': return a.type === 'strings' ? { dtype: 'string', dims: [a.value.length], data: [...a.value] } : undefined;
  }
  return undefined; // sparse_value: left for the executor to report
}

function constantsToInitializers(g: Graph, taken: Set<string>): void {
  const outputs = new Set(g.outputs.map((o) => o.name));
  const kept: Node[] = [];
  for (const n of g.nodes) {
    const t = n.op === 'Constant' && (n.domain ?? '') === '' ? constantValue(n) : undefined;
    if (!t) {
      kept.push(n);
      continue;
    }
    const out = n.outputs[0];
    if (!outputs.has(out)) {
      g.initializers.set(out, t);
      continue;
    }
    // a graph output must be produced by a node: keep an Identity from a renamed initializer
    const init = uniqueName(g, `${out}_value`, taken);
    g.initializers.set(init, t);
    kept.push({ name: n.name, op: 'Identity', inputs: [init], outputs: [out], attrs: {} });
  }
  g.nodes = kept;
}

/** Rename uses of a value everywhere, subgraphs included (they may read outer values). */
function renameUses(g: Graph, from: string, to: string): void {
  for (const n of g.nodes) {
    for (let i = 0; i < n.inputs.length; i++) if (n.inputs[i] === from) n.inputs[i] = to;
    for (const a of Object.values(n.attrs)) if (a.type === 'graph') renameUses(a.value, from, to);
  }
}

function removeIdentities(g: Graph): void {
  const outputs = new Set(g.outputs.map((o) => o.name));
  g.nodes = g.nodes.filter((n) => {
    if (n.op !== 'Identity' || (n.domain ?? '') !== '' || outputs.has(n.outputs[0])) return true;
    renameUses(g, n.outputs[0], n.inputs[0]);
    return false;
  });
}

function usedNames(g: Graph, out = new Set<string>()): Set<string> {
  for (const n of g.nodes) {
    for (const i of n.inputs) out.add(i);
    for (const a of Object.values(n.attrs)) if (a.type === 'graph') usedNames(a.value, out);
  }
  for (const o of g.outputs) out.add(o.name);
  return out;
}

function nameNodes(g: Graph, taken: Set<string>): void {
  const seen = new Set<string>();
  for (const n of g.nodes) {
    if (!n.name || seen.has(n.name)) n.name = uniqueName(g, n.name || n.op, taken);
    seen.add(n.name);
  }
}

function normalizeBody(g: Graph, opset: number, target: number, file: string | undefined): void {
  const taken = allNames(g);
  for (const n of g.nodes) {
    if (!n.domain || n.domain === 'ai.onnx') delete n.domain; // one spelling of the default domain: no key
    if (n.attrs.consumed_inputs) delete n.attrs.consumed_inputs; // opset < 6 bookkeeping, meaningless now
    for (const a of Object.values(n.attrs)) if (a.type === 'graph') normalizeBody(a.value, opset, target, file);
  }
  nameNodes(g, taken);
  constantsToInitializers(g, taken);
  const ctx: Ctx = { g, opset, target, taken, outputs: new Set(g.outputs.map((o) => o.name)), rank: rankInference(g), file };
  const out: Node[] = [];
  for (const n of g.nodes) {
    const rule = (n.domain ?? '') === '' ? RULES[n.op] : undefined;
    let rep: Node[] | undefined;
    try {
      rep = rule?.(n, ctx);
    } catch (e) {
      if (e instanceof GraphError && file && !e.file) throw new GraphError(e.message, undefined, file);
      throw e;
    }
    out.push(...(rep ?? [n]));
  }
  g.nodes = out;
  removeIdentities(g);
  const used = usedNames(g);
  for (const k of [...g.initializers.keys()]) if (!used.has(k)) g.initializers.delete(k);
}

/** Rewrite a freshly imported graph into the canonical form described at the top of this file. Does not mutate `g`. */
export function normalize(src: Graph, opts: { file?: string } = {}): Graph {
  const g = cloneGraph(src);
  const opset = domainVersion(g.opsets, '');
  if (!(opset > 0)) throw new Error(`${opts.file ? `${opts.file}: ` : ''}graph '${g.name}' has no default-domain opset`);
  const target = Math.max(CANONICAL_OPSET, opset);
  // IR < 4 listed every initializer as a graph input too; the data inputs are the rest
  g.inputs = g.inputs.filter((i) => !g.initializers.has(i.name));
  normalizeBody(g, opset, target, opts.file);
  delete g.opsets['ai.onnx'];
  g.opsets[''] = target;
  return g;
}

/** Attributes that the canonical form has moved to inputs or dropped, per op. */
const NON_CANONICAL_ATTRS: Record<string, string[]> = {
  Squeeze: ['axes'], Unsqueeze: ['axes'], Slice: ['starts', 'ends', 'axes'], Split: ['split'], TopK: ['k'],
  Clip: ['min', 'max'], Pad: ['pads', 'paddings', 'value'], Reshape: ['shape'],
  BatchNormalization: ['spatial', 'is_test'],
  ...Object.fromEntries(REDUCE_OPS.map((op) => [op, ['axes']])),
};

/** What in `g` is not in the canonical form (empty when normalized); for tests and debugging. */
export function canonicalViolations(g: Graph): string[] {
  const bad: string[] = [];
  for (const n of g.nodes) {
    if ((n.domain ?? '') !== '') continue;
    const where = `node '${n.name}' (op ${n.op})`;
    if (!n.name) bad.push(`unnamed ${n.op} node`);
    if (['Constant', 'Dropout', 'Upsample', 'Scatter'].includes(n.op)) bad.push(`${where} should have been rewritten`);
    for (const a of [...(NON_CANONICAL_ATTRS[n.op] ?? []), 'consumed_inputs'])
      if (n.attrs[a]) bad.push(`${where} still has attribute '${a}'`);
    if (n.op === 'BatchNormalization' && n.outputs.length !== 1) bad.push(`${where} has ${n.outputs.length} outputs`);
  }
  for (const i of g.inputs) if (g.initializers.has(i.name)) bad.push(`graph input '${i.name}' is also an initializer`);
  if (!(g.opsets[''] >= CANONICAL_OPSET)) bad.push(`opsets[''] is ${g.opsets['']}, not >= ${CANONICAL_OPSET}`);
  return bad;
}
