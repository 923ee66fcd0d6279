// Runs an IR graph on tfjs ops, in eval or train mode. Float initializers live in tf.Variables so that tfjs's
// autodiff reaches them; 4-D activations are kept NHWC between layout-aware ops (tfjs's convs and pools are NHWC)
// and converted back to ONNX's NCHW only where an op needs ONNX's layout.
import * as tf from '@tensorflow/tfjs-core';
import { GraphError, topoSort, type Graph, type Node, type TensorData, type TypedArray } from '../graph/ir.js';
import { getOp, type Layout, type OpCtx, type OpHandler, type OpServices } from './registry.js';
import './handlers.js';

/** A node to run; reluInput / reluOutput: a Relu fused into it (see fuseRelus) */
interface Step {
  node: Node;
  handler: OpHandler;
  reluInput?: string;
  reluOutput?: string;
}

interface Value {
  t: tf.Tensor;
  layout: Layout;
}

const TO_NHWC = [0, 2, 3, 1];
const TO_NCHW = [0, 3, 1, 2];

export function toTfTensor(d: TensorData): tf.Tensor {
  if (Array.isArray(d.data)) throw new Error('string tensors are not supported by the tfjs executor');
  const data = d.data as TypedArray;
  if (d.dtype === 'float32' || d.dtype === 'float64' || d.dtype === 'float16')
    return tf.tensor(data instanceof Float32Array ? data : Float32Array.from(data as Float64Array), d.dims, 'float32');
  if (d.dtype === 'bool') return tf.tensor(Int32Array.from(data as Uint8Array), d.dims, 'bool');
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  return tf.tensor(out, d.dims, 'int32');
}

export function fromTfTensor(t: tf.Tensor): TensorData {
  const v = t.dataSync();
  return t.dtype === 'float32'
    ? { dtype: 'float32', dims: [...t.shape], data: Float32Array.from(v as Float32Array) }
    : { dtype: t.dtype === 'bool' ? 'bool' : 'int32', dims: [...t.shape], data: t.dtype === 'bool' ? Uint8Array.from(v) : Int32Array.from(v) };
}

export interface RunOptions {
  training?: boolean;
}

export class Session implements OpServices {
  readonly vars = new Map<string, tf.Variable>();
  readonly consts = new Map<string, tf.Tensor>();
  readonly bufferNames = new Set<string>();
  private readonly order: Step[];
  private readonly services = new Map<string, unknown>();
  private pending = new Map<string, { stat: tf.Tensor; momentum: number; scale: number }>();
  bnFrozen = false;

  constructor(readonly graph: Graph) {
    const unsupported: string[] = [];
    this.order = topoSort(graph).map((node) => {
      const handler = getOp(node.domain, node.op);
      if (!handler) unsupported.push(`node '${node.name}' (op ${node.domain ? node.domain + '.' : ''}${node.op})`);
      return { node, handler: handler! };
    });
    if (unsupported.length)
      throw new GraphError(`unsupported op${unsupported.length > 1 ? 's' : ''}: ${unsupported.join(', ')}`);
    this.order = fuseRelus(graph, this.order);
    for (const { node, handler } of this.order)
      for (const i of handler.buffers?.(node) ?? []) if (node.inputs[i]) this.bufferNames.add(node.inputs[i]);
    for (const [name, d] of graph.initializers) {
      const t = toTfTensor(d);
      if (t.dtype === 'float32') {
        this.vars.set(name, tf.variable(t, !this.bufferNames.has(name), `${name}_${Math.random().toString(36).slice(2, 8)}`));
        t.dispose();
      } else this.consts.set(name, t);
    }
  }

  /** The trainable parameters (float initializers that are not buffers). */
  params(): Map<string, tf.Variable> {
    return new Map([...this.vars].filter(([n]) => !this.bufferNames.has(n)));
  }

  setService(name: string, s: unknown): void {
    this.services.set(name, s);
  }
  service<T>(name: string): T | undefined {
    return this.services.get(name) as T | undefined;
  }

  scheduleRunningAverage(name: string, stat: tf.Tensor, momentum: number, scale = 1): void {
    this.pending.get(name)?.stat.dispose();
    this.pending.set(name, { stat: tf.keep(stat), momentum, scale });
  }

  /** Apply BatchNorm running-stat updates recorded during the last training forward. */
  applyUpdates(): void {
    for (const [name, u] of this.pending) {
      const v = this.vars.get(name);
      if (v) {
        const t = tf.tensor(runningAverage(v.dataSync() as Float32Array, u.stat.dataSync() as Float32Array, u.momentum, u.scale), v.shape);
        v.assign(t);
        t.dispose();
      }
      u.stat.dispose();
    }
    this.pending.clear();
  }

  /** Run the graph; returns the graph outputs in order (NCHW). Call inside tf.tidy / a gradient function. */
  run(feeds: Record<string, tf.Tensor>, opts: RunOptions = {}): tf.Tensor[] {
    const training = opts.training ?? false;
    const env = new Map<string, Value>();
    for (const inp of this.graph.inputs) {
      if (this.graph.initializers.has(inp.name)) continue;
      const t = feeds[inp.name];
      if (!t) throw new GraphError(`no value fed for graph input '${inp.name}'`);
      env.set(inp.name, { t, layout: 'nchw' });
    }
    const lookup = (name: string, node: Node): Value | undefined => {
      if (!name) return undefined;
      const v = env.get(name);
      if (v) return v;
      const t = this.vars.get(name) ?? this.consts.get(name);
      if (t) return { t, layout: 'nchw' };
      throw new GraphError(`input '${name}' has no value`, node);
    };
    for (const { node, handler, reluInput, reluOutput } of this.order) {
      const vals = node.inputs.map((n, i) => lookup(i === 0 && reluInput !== undefined ? reluInput : n, node));
      const layout = chooseLayout(handler, vals);
      const inputs = vals.map((v, i) => {
        if (!v) return undefined;
        if (v.t.rank !== 4) return v.t;
        if (!convertsInput(handler, node, i, this.graph)) return v.t;
        return relayout(v, layout);
      });
      const ctx: OpCtx = {
        node,
        training,
        layout,
        constInput: (i) => this.graph.initializers.get(node.inputs[i]),
        session: this,
        reluInput: reluInput !== undefined,
        reluOutput: reluOutput !== undefined,
      };
      let outs: tf.Tensor[];
      try {
        outs = handler.run(ctx, inputs);
      } catch (e) {
        if (e instanceof GraphError) throw e;
        throw new GraphError((e as Error).message, node);
      }
      (reluOutput !== undefined ? [reluOutput] : node.outputs).forEach((o, i) => {
        if (o && outs[i]) env.set(o, { t: outs[i], layout });
      });
    }
    return this.graph.outputs.map((o) => {
      const v = lookup(o.name, { name: 'graph output', op: 'output' } as Node)!;
      return v.t.rank === 4 ? relayout(v, 'nchw') : v.t;
    });
  }

  /** Copy variable values back into the graph's initializers (before export or a graph pass). */
  writeBack(): Graph {
    for (const [name, v] of this.vars) this.graph.initializers.set(name, fromTfTensor(v));
    return this.graph;
  }

  /** All float state (params and buffers) as plain data, for checkpoints. */
  state(): Record<string, TensorData> {
    return Object.fromEntries([...this.vars].map(([n, v]) => [n, fromTfTensor(v)]));
  }

  load(state: Record<string, TensorData>): void {
    for (const [n, d] of Object.entries(state)) {
      const v = this.vars.get(n);
      if (!v) continue;
      const t = toTfTensor(d);
      v.assign(t);
      t.dispose();
    }
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    for (const t of this.consts.values()) t.dispose();
    for (const u of this.pending.values()) u.stat.dispose();
    this.pending.clear();
  }
}

/**
 * running*momentum + stat*scale*(1-momentum) in float32, rounding after each operation as the tfjs ops
 * tf.add(tf.mul(running, momentum), tf.mul(tf.mul(stat, scale), 1 - momentum)) do (a double product or sum of
 * float32 values rounded once to float32 is the float32 result). A few values per channel: no kernels needed.
 */
export function runningAverage(running: Float32Array, stat: Float32Array, momentum: number, scale = 1): Float32Array {
  const f = Math.fround;
  const m = f(momentum), k = f(1 - momentum), s = f(scale);
  return running.map((r, i) => f(f(r * m) + f(f(stat[i] * s) * k)));
}

/**
 * Drops each Relu whose output only a fusesRelu handler reads (and is no graph output); that node reads the Relu's
 * input instead (reluInput) and applies the relu itself. Then each remaining Relu whose input only it reads, made by
 * a fusesReluAfter handler, goes into that node, which writes the Relu's output (reluOutput).
 */
function fuseRelus(g: Graph, order: Step[]): Step[] {
  const readers = new Map<string, number>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) readers.set(i, (readers.get(i) ?? 0) + 1);
  for (const o of g.outputs) readers.set(o.name, (readers.get(o.name) ?? 0) + 1);
  const isRelu = (n: Node) => n.op === 'Relu' && !n.domain && !!n.inputs[0];
  const relus = new Map(order.filter(({ node: n }) => isRelu(n)).map(({ node: n }) => [n.outputs[0], n]));
  const fused = new Set<Node>();
  const out = order.map((e) => {
    const relu = e.handler.fusesRelu ? relus.get(e.node.inputs[0]) : undefined;
    if (!relu || readers.get(e.node.inputs[0]) !== 1) return e;
    fused.add(relu);
    return { ...e, reluInput: relu.inputs[0] };
  });
  const reluOf = new Map(order.filter(({ node: n }) => isRelu(n) && !fused.has(n)).map(({ node: n }) => [n.inputs[0], n]));
  const after = out.map((e) => {
    const relu = e.handler.fusesReluAfter && e.node.outputs.length === 1 ? reluOf.get(e.node.outputs[0]) : undefined;
    if (!relu || readers.get(e.node.outputs[0]) !== 1) return e;
    fused.add(relu);
    return { ...e, reluOutput: relu.outputs[0] };
  });
  return after.filter((e) => !fused.has(e.node));
}

function isInit(g: Graph, name: string): boolean {
  return g.initializers.has(name);
}

function convertsInput(h: OpHandler, node: Node, i: number, g: Graph): boolean {
  if (h.layout !== 'spatial') return true;
  const di = h.dataInputs ?? [0];
  if (di === 'all') return !isInit(g, node.inputs[i]);
  return di.includes(i);
}

function chooseLayout(h: OpHandler, vals: (Value | undefined)[]): Layout {
  if (h.layout === 'spatial') return 'nhwc';
  if (h.layout !== 'elementwise') return 'nchw';
  let anyNhwc = false;
  for (const v of vals) {
    if (!v) continue;
    if (v.t.rank === 4) {
      if (v.layout === 'nhwc') anyNhwc = true;
    } else if (v.t.size !== 1) return 'nchw';
  }
  return anyNhwc ? 'nhwc' : 'nchw';
}

function relayout(v: Value, want: Layout): tf.Tensor {
  if (v.layout === want || v.t.rank !== 4) return v.t;
  const perm = want === 'nhwc' ? TO_NHWC : TO_NCHW;
  // a permutation that moves only size-1 axes (C = 1, or H = W = 1) keeps the element order: a reshape, no copy
  const moved = perm.filter((p) => v.t.shape[p] !== 1);
  if (moved.every((p, i) => i === 0 || moved[i - 1] < p)) return tf.reshape(v.t, perm.map((p) => v.t.shape[p]));
  return tf.transpose(v.t, perm);
}
