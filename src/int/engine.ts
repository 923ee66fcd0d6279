// The integer inference engine: runs a graph whose every op has an integer kernel in the registry.
// No tfjs and no node: imports, so it also runs in the browser.
import { type Graph, type Node, type TensorData, GraphError, elementCount, topoSort } from '../graph/ir.js';
import { type IntKernel, type KernelContext, type Requant, REQUANT_MODES, getIntKernel, normDomain } from './registry.js';
import { registerBuiltinIntKernels } from './kernels/index.js';
import { type ArrayPool, recycle, setArrayPool } from './tensor.js';

export interface IntSessionOptions {
  /**
   * Requantization of QLinear* kernels. Default: the graph's meta 'qatkit.requant' if set, else 'float'
   * (ONNX Runtime's float32 semantics, what the ONNX node tests expect).
   */
  requant?: Requant;
  /** Run nodes whose inputs are all constant once, at session creation (default true). */
  foldConstants?: boolean;
  /**
   * Fold a Clip with constant bounds into the requantizing node before it (default true): the converter's
   * sub-8-bit grids and fused ReLUs then cost no extra pass. Same results either way (integer bounds).
   */
  fuseClamp?: boolean;
}

export interface IntSession {
  readonly inputNames: string[];
  readonly outputNames: string[];
  run(feeds: Record<string, TensorData>): Record<string, TensorData>;
}

interface Step {
  node: Node;
  kernel: IntKernel;
  ctx: KernelContext;
  /** values whose last use is this step, freed after it */
  free: string[];
}

/** Nodes of g that have no registered integer kernel. */
export function unsupportedNodes(g: Graph): Node[] {
  registerBuiltinIntKernels();
  return g.nodes.filter((n) => !getIntKernel(n.op, n.domain));
}

function opsetOf(g: Graph, node: Node): number {
  const d = normDomain(node.domain);
  return g.opsets[d] ?? (d === '' ? g.opsets['ai.onnx'] ?? 0 : 0);
}

/** A Clip with constant bounds that is the only reader of a clampable node's output, folded into that node. */
interface ClampFusion { clip: Node; qmin: number; qmax: number }

function clampFusions(g: Graph, order: Node[], consts: ReadonlyMap<string, TensorData>): Map<Node, ClampFusion> {
  const readers = new Map<string, Node[]>();
  for (const n of order) for (const i of n.inputs) if (i) readers.set(i, [...(readers.get(i) ?? []), n]);
  const graphOutputs = new Set(g.outputs.map((o) => o.name));
  const bound = (name: string | undefined): number | undefined => {
    const t = name ? consts.get(name) : undefined;
    if (!t || Array.isArray(t.data) || t.data.length !== 1 || typeof t.data[0] !== 'number') return undefined;
    return t.data[0];
  };
  const out = new Map<Node, ClampFusion>();
  for (const n of order) {
    const y = n.outputs[0];
    const r = y ? readers.get(y) : undefined;
    if (!r || r.length !== 1 || graphOutputs.has(y) || !getIntKernel(n.op, n.domain)?.clampable) continue;
    const c = r[0];
    // Clip before opset 11 takes its bounds as attributes; only the input form is folded
    if (c.op !== 'Clip' || normDomain(c.domain) !== '' || c.inputs[0] !== y || opsetOf(g, c) < 11) continue;
    const lo = c.inputs[1] ? bound(c.inputs[1]) : -Infinity;
    const hi = c.inputs[2] ? bound(c.inputs[2]) : Infinity;
    if (lo === undefined || hi === undefined || !(lo <= hi)) continue;
    out.set(n, { clip: c, qmin: Math.ceil(lo), qmax: Math.floor(hi) });
  }
  return out;
}

function runStep(step: Step, inputs: (TensorData | undefined)[]): TensorData[] {
  const { node } = step;
  let outs: TensorData[];
  try {
    outs = step.kernel.run(inputs, step.ctx);
  } catch (e) {
    if (e instanceof GraphError) throw e;
    throw new GraphError(e instanceof Error ? e.message : String(e), node);
  }
  if (outs.length < node.outputs.filter((o) => o).length)
    throw new GraphError(`kernel returned ${outs.length} outputs, node has ${node.outputs.length}`, node);
  return outs;
}

export function createIntSession(g: Graph, opts: IntSessionOptions = {}): IntSession {
  registerBuiltinIntKernels();
  const requantMeta = g.meta?.['qatkit.requant'];
  const requant: Requant = opts.requant ?? (REQUANT_MODES.find((m) => m === requantMeta) ?? 'float');
  const order = topoSort(g);
  const feedNames = g.inputs.map((i) => i.name).filter((n) => !g.initializers.has(n));
  const outputNames = g.outputs.map((o) => o.name);

  const consts = new Map<string, TensorData>(g.initializers);
  const constData = new Set<unknown>([...g.initializers.values()].map((t) => t.data));
  // graph inputs that also have an initializer are overridable defaults (IR < 4): not constant
  const defaults = new Map<string, TensorData>();
  for (const i of g.inputs) {
    const t = consts.get(i.name);
    if (t) defaults.set(i.name, t);
    consts.delete(i.name);
  }

  const fusions = opts.fuseClamp ?? true ? clampFusions(g, order, consts) : new Map<Node, ClampFusion>();
  const folded = new Set([...fusions.values()].map((f) => f.clip));
  const steps: Step[] = [];
  for (const original of order) {
    if (folded.has(original)) continue;
    const fusion = fusions.get(original);
    // the fused node writes the Clip's output
    const node = fusion ? { ...original, outputs: [fusion.clip.outputs[0], ...original.outputs.slice(1)] } : original;
    const kernel = getIntKernel(node.op, node.domain);
    if (!kernel)
      throw new GraphError(`no integer kernel for op ${normDomain(node.domain) ? `${node.domain}::` : ''}${node.op}`, node);
    const inputs = node.inputs;
    const ctx: KernelContext = {
      node,
      requant,
      opset: opsetOf(g, node),
      isConst: (i) => !inputs[i] || consts.has(inputs[i]), // an omitted optional input is constant too
      cache: new Map(),
      clamp: fusion ? { qmin: fusion.qmin, qmax: fusion.qmax } : undefined,
    };
    const step: Step = { node, kernel, ctx, free: [] };
    if ((opts.foldConstants ?? true) && inputs.every((i) => i === '' || consts.has(i))) {
      const outs = runStep(step, inputs.map((i) => (i ? consts.get(i) : undefined)));
      node.outputs.forEach((o, k) => {
        if (!o) return;
        consts.set(o, outs[k]);
        constData.add(outs[k].data);
      });
      continue;
    }
    steps.push(step);
  }

  // free each intermediate value after its last reader
  const lastUse = new Map<string, Step>();
  for (const s of steps) for (const i of s.node.inputs) if (i && !consts.has(i)) lastUse.set(i, s);
  const keep = new Set(outputNames);
  for (const [name, s] of lastUse) if (!keep.has(name)) s.free.push(name);

  const declared = new Map(g.inputs.map((i) => [i.name, i]));
  // buffers of freed intermediates, reused by kernels' outputTensor in later steps and runs
  const pool: ArrayPool = new Map();
  const constBuffers = new Set([...consts.values()].map(bufferOf));
  // the inputs array each step's kernel receives, reused across runs (kernels do not keep it)
  const stepInputs = steps.map((s) => new Array<TensorData | undefined>(s.node.inputs.length));
  return {
    inputNames: feedNames,
    outputNames,
    run(feeds) {
      const values = new Map<string, TensorData>(defaults);
      const external = new Set<unknown>();
      for (const [name, t] of Object.entries(feeds)) {
        const vi = declared.get(name);
        if (!vi) throw new GraphError(`feed '${name}' is not a graph input (inputs: ${feedNames.join(', ')})`);
        if (vi.dtype !== t.dtype) throw new GraphError(`input '${name}' must have dtype ${vi.dtype}, got ${t.dtype}`);
        if (vi.shape) {
          const ok = vi.shape.length === t.dims.length && vi.shape.every((d, k) => typeof d !== 'number' || d === t.dims[k]);
          if (!ok) throw new GraphError(`input '${name}' must have shape [${vi.shape.join(', ')}], got [${t.dims.join(', ')}]`);
        }
        if (!Array.isArray(t.data) && t.data.length !== elementCount(t.dims))
          throw new GraphError(`input '${name}' has ${t.data.length} elements, shape [${t.dims.join(', ')}] needs ${elementCount(t.dims)}`);
        values.set(name, t);
      }
      for (const t of values.values()) external.add(bufferOf(t));
      for (const name of feedNames) if (!values.has(name)) throw new GraphError(`missing feed for graph input '${name}'`);
      const prevPool = setArrayPool(pool);
      try {
        steps.forEach((step, si) => {
          const node = step.node;
          const inputs = stepInputs[si];
          for (let k = 0; k < node.inputs.length; k++) {
            const i = node.inputs[k];
            if (!i) {
              inputs[k] = undefined;
              continue;
            }
            const v = values.get(i) ?? consts.get(i);
            if (!v) throw new GraphError(`input '${i}' has no value`, node);
            inputs[k] = v;
          }
          const outs = runStep(step, inputs);
          inputs.fill(undefined);
          node.outputs.forEach((o, k) => {
            if (o) values.set(o, outs[k]);
          });
          for (const name of step.free) {
            const v = values.get(name);
            values.delete(name);
            if (v && recyclable(v, values, external, constBuffers)) recycle(pool, v);
          }
        });
      } finally {
        setArrayPool(prevPool);
      }
      const result: Record<string, TensorData> = {};
      for (const name of outputNames) {
        const v = values.get(name) ?? consts.get(name);
        if (!v) throw new GraphError(`graph output '${name}' was not computed`);
        // never hand out a session constant's buffer: the caller may write to it
        result[name] = constData.has(v.data) || feeds[name] === v ? copyTensor(v) : v;
      }
      return result;
    },
  };
}

/** The memory a tensor's data lives in (views share it). */
const bufferOf = (t: TensorData): unknown => (Array.isArray(t.data) ? t.data : t.data.buffer);

/**
 * A freed intermediate's buffer may be reused when it is neither the caller's (feeds, defaults) nor a constant's, and
 * no live value views the same memory (Reshape / Flatten outputs alias their input).
 */
function recyclable(v: TensorData, live: Map<string, TensorData>, external: Set<unknown>, consts: Set<unknown>): boolean {
  const b = bufferOf(v);
  if (Array.isArray(b) || external.has(b) || consts.has(b)) return false;
  for (const t of live.values()) if (bufferOf(t) === b) return false;
  return true;
}

function copyTensor(t: TensorData): TensorData {
  return { dtype: t.dtype, dims: [...t.dims], data: Array.isArray(t.data) ? [...t.data] : t.data.slice() };
}

/** One-shot convenience: build a session and run it once. */
export function runInt(g: Graph, feeds: Record<string, TensorData>, opts?: IntSessionOptions): Record<string, TensorData> {
  return createIntSession(g, opts).run(feeds);
}
