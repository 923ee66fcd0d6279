// prepare(graph, recipe): insert fake-quant where integer runtimes quantize.
//
// Weights of Conv/Gemm/MatMul get a weight quantizer (per channel by default). Activations get exactly one
// quantizer per tensor: at the inputs of Conv/Gemm/MatMul/Add/pooling and at the outputs of Conv/Add/pooling
// (after a ReLU that is their only consumer, which runtimes fuse). Ops that only move or select values (MaxPool,
// Flatten, Reshape, ReLU...) get an output quantizer that shares their input's scale and zero point, so every
// tensor between integer ops sits on a known grid: what ONNX Runtime's QDQ fusion and our integer converter need.
import {
  allNames,
  cloneGraph,
  consumers,
  floatTensor,
  int,
  QATKIT_DOMAIN,
  str,
  topoSort,
  uniqueName,
  attrInt,
  type Attr,
  type Graph,
  type Node,
} from '../graph/ir.js';
import { qrange, type QuantizerConfig, type Recipe } from '../spec/quantspec.js';
import { foldBatchNorm, fuseConvBnForQat } from './fold.js';
import './qat_ops.js';

export type PrepareMode = 'qat' | 'ptq';

const WEIGHTED = new Set(['Conv', 'Gemm', 'MatMul']);
const ACT_INPUTS = new Set(['Conv', 'ConvBn', 'Gemm', 'MatMul', 'Add', 'GlobalAveragePool', 'AveragePool', 'Concat']);
const ACT_OUTPUTS = new Set(['Conv', 'ConvBn', 'Add', 'GlobalAveragePool', 'AveragePool', 'Concat']);
const PASSTHROUGH = new Set(['MaxPool', 'Flatten', 'Reshape', 'Relu', 'Identity', 'Transpose', 'Squeeze', 'Unsqueeze']);
const FUSED_ACT = new Set(['Relu']);

/** The FakeQuant attributes that describe a quantizer (with an optional prefix, 'w_' inside ConvBn). */
export function quantizerAttrs(q: QuantizerConfig, role: 'weight' | 'activation', axis: number | undefined, prefix = ''): Node['attrs'] {
  const { qmin, qmax } = qrange(q.spec);
  const a: Record<string, Attr> = {
    qmin: int(qmin),
    qmax: int(qmax),
    bits: int(q.spec.bits),
    signed: int(q.spec.signed ? 1 : 0),
    narrow: int(q.spec.narrowRange ? 1 : 0),
    symmetric: int(q.spec.symmetric ? 1 : 0),
    role: str(role),
    estimator: str(q.estimator),
    observer: str(JSON.stringify(q.observer)),
  };
  if (axis !== undefined) a.axis = int(axis);
  return Object.fromEntries(Object.entries(a).map(([k, v]) => [prefix + k, v]));
}

/** Output-channel axis of the weight input of a weighted op. */
function weightAxis(n: Node): number {
  if (n.op === 'Gemm') return attrInt(n, 'transB', 0) === 1 ? 0 : 1;
  if (n.op === 'MatMul') return 1;
  return 0;
}

export interface PrepareOptions {
  recipe: Recipe;
  mode: PrepareMode;
}

/** A new graph with fake-quant inserted; the input graph is not changed. */
export function prepare(graph: Graph, opts: PrepareOptions): Graph {
  const g = cloneGraph(graph);
  const { recipe } = opts;
  const names = allNames(g);
  const perChannel = recipe.weights.spec.granularity.kind !== 'per_tensor';
  if (recipe.weights.spec.granularity.kind === 'per_group')
    throw new Error('per_group weight granularity is not supported by prepare() yet (use per_channel or per_tensor)');

  const qparamInits = (base: string, channels?: number): [string, string] => {
    const s = uniqueName(g, `${base}.scale`, names);
    const z = uniqueName(g, `${base}.zero_point`, names);
    const dims = channels === undefined ? [] : [channels];
    const n = channels ?? 1;
    const { qmin, qmax } = qrange(recipe.activations.spec);
    const mid = recipe.activations.spec.symmetric && !recipe.activations.spec.signed ? Math.floor((qmin + qmax + 1) / 2) : 0;
    g.initializers.set(s, floatTensor(dims, new Float32Array(n).fill(1)));
    g.initializers.set(z, floatTensor(dims, new Float32Array(n).fill(channels === undefined ? mid : 0)));
    return [s, z];
  };

  if (opts.mode === 'ptq') foldBatchNorm(g);
  else
    fuseConvBnForQat(g, quantizerAttrs(recipe.weights, 'weight', perChannel ? 0 : undefined, 'w_'), (conv, c) =>
      qparamInits(`${conv}.weight_q`, perChannel ? c : undefined),
    );

  const order = topoSort(g);
  const cons = consumers(g);
  const newNodes = new Map<Node, Node[]>(); // quantizers inserted after a node (or before the first for inputs)
  const leading: Node[] = [];
  const quantized = new Map<string, { q: string; s: string; z: string; attrs: Node['attrs'] }>();
  const isInit = (v: string) => g.initializers.has(v);
  const producer = new Map<string, Node>();
  for (const n of order) for (const o of n.outputs) producer.set(o, n);

  const rewire = (from: string, to: string, except: Node) => {
    for (const c of cons.get(from) ?? []) if (c !== except) c.inputs = c.inputs.map((i) => (i === from ? to : i));
  };

  const addFq = (v: string, s: string, z: string, attrs: Node['attrs']): string => {
    const q = uniqueName(g, `${v}_q`, names);
    const fq: Node = { name: uniqueName(g, `${v}_fq`, names), op: 'FakeQuant', domain: QATKIT_DOMAIN, inputs: [v, s, z], outputs: [q], attrs };
    const p = producer.get(v);
    if (p) newNodes.set(p, [...(newNodes.get(p) ?? []), fq]);
    else leading.push(fq);
    rewire(v, q, fq);
    quantized.set(v, { q, s, z, attrs });
    quantized.set(q, { q, s, z, attrs });
    return q;
  };

  const weightQ = new Set<string>(); // outputs of weight quantizers: never activation-quantized again
  const quantizeAct = (v: string): void => {
    if (!v || isInit(v) || weightQ.has(v) || quantized.has(v)) return;
    const [s, z] = qparamInits(`${v}_q`);
    addFq(v, s, z, quantizerAttrs(recipe.activations, 'activation', undefined));
  };

  for (const n of order) {
    if (n.domain && n.domain !== QATKIT_DOMAIN) continue;
    // weights
    if (WEIGHTED.has(n.op) && !n.domain && isInit(n.inputs[1])) {
      const w = n.inputs[1];
      const axis = weightAxis(n);
      const channels = g.initializers.get(w)!.dims[axis];
      const [s, z] = qparamInits(`${n.name}.weight_q`, perChannel ? channels : undefined);
      const q = uniqueName(g, `${w}_q`, names);
      // a weight quantizer belongs to its op: weights shared by two ops get two quantizers
      const fq: Node = {
        name: uniqueName(g, `${n.name}.weight_fq`, names),
        op: 'FakeQuant',
        domain: QATKIT_DOMAIN,
        inputs: [w, s, z],
        outputs: [q],
        attrs: quantizerAttrs(recipe.weights, 'weight', perChannel ? axis : undefined),
      };
      leading.push(fq);
      weightQ.add(q);
      n.inputs[1] = q;
    }
    // activations at the inputs
    if (ACT_INPUTS.has(n.op)) {
      const dataInputs = n.op === 'Add' || n.op === 'Concat' || n.op === 'MatMul' ? n.inputs : [n.inputs[0]];
      if (n.op === 'Add' && n.inputs.some(isInit)) continue; // a bias-like add, not a residual
      for (const v of dataInputs) quantizeAct(v);
    }
    // activations at the outputs (after a ReLU that is the only consumer)
    if (ACT_OUTPUTS.has(n.op)) {
      let out = n.outputs[0];
      const c = cons.get(out) ?? [];
      if (c.length === 1 && FUSED_ACT.has(c[0].op) && !c[0].domain) out = c[0].outputs[0];
      if (!g.outputs.some((o) => o.name === out)) quantizeAct(out);
    }
    // value-preserving ops share their input's grid
    if (PASSTHROUGH.has(n.op) && !n.domain) {
      const src = quantized.get(n.inputs[0]);
      const out = n.outputs[0];
      if (src && !quantized.has(out) && !g.outputs.some((o) => o.name === out)) {
        addFq(out, src.s, src.z, { ...src.attrs, shared: int(1) });
      }
    }
  }

  const nodes: Node[] = [...leading];
  for (const n of g.nodes) nodes.push(n, ...(newNodes.get(n) ?? []));
  g.nodes = nodes;
  g.meta = { ...(g.meta ?? {}), 'qatkit.recipe': JSON.stringify(recipe), 'qatkit.mode': opts.mode };
  return g;
}
