// BatchNorm folding and fusion passes on the IR.
import {
  attrFloat,
  consumers,
  floatTensor,
  GraphError,
  producers,
  QATKIT_DOMAIN,
  uniqueName,
  allNames,
  type Graph,
  type Node,
  type TensorData,
} from '../graph/ir.js';

function f32(g: Graph, name: string, node: Node): Float32Array {
  const t = g.initializers.get(name);
  if (!t || t.dtype !== 'float32') throw new GraphError(`input '${name}' must be a float32 initializer`, node);
  return t.data as Float32Array;
}

/** W' = W * gamma/sqrt(var+eps) per output channel; B' = (B - mean) * gamma/sqrt(var+eps) + beta. */
export function foldedConvParams(
  w: TensorData,
  b: Float32Array | undefined,
  gamma: Float32Array,
  beta: Float32Array,
  mean: Float32Array,
  variance: Float32Array,
  eps: number,
): { w: TensorData; b: TensorData } {
  const O = w.dims[0];
  const per = (w.data as Float32Array).length / O;
  const wd = new Float32Array(w.data as Float32Array);
  const bd = new Float32Array(O);
  for (let o = 0; o < O; o++) {
    const sf = gamma[o] / Math.sqrt(variance[o] + eps);
    for (let i = 0; i < per; i++) wd[o * per + i] *= sf;
    bd[o] = ((b ? b[o] : 0) - mean[o]) * sf + beta[o];
  }
  return { w: floatTensor(w.dims, wd), b: floatTensor([O], bd) };
}

/** Folded weight and bias of a conv (weight, optional bias) and a BN's (gamma, beta, mean, var) initializers. */
function foldNamed(g: Graph, node: Node, w: string, b: string | undefined, bn: string[], eps: number) {
  const [gamma, beta, mean, variance] = bn.map((n) => f32(g, n, node));
  return foldedConvParams(g.initializers.get(w)!, b ? f32(g, b, node) : undefined, gamma, beta, mean, variance, eps);
}

interface ConvBnMatch {
  conv: Node;
  bn: Node;
}

function convBnPairs(g: Graph): ConvBnMatch[] {
  const prod = producers(g);
  const cons = consumers(g);
  const out: ConvBnMatch[] = [];
  for (const bn of g.nodes) {
    if (bn.op !== 'BatchNormalization' || bn.domain) continue;
    const conv = prod.get(bn.inputs[0]);
    if (!conv || conv.op !== 'Conv' || conv.domain) continue;
    if ((cons.get(conv.outputs[0]) ?? []).length !== 1) continue; // conv output used elsewhere: cannot fold
    if (g.outputs.some((o) => o.name === conv.outputs[0])) continue;
    if (!g.initializers.has(conv.inputs[1]) || bn.inputs.slice(1, 5).some((n) => !g.initializers.has(n))) continue;
    out.push({ conv, bn });
  }
  return out;
}

function dropUnused(g: Graph): void {
  const used = new Set<string>(g.outputs.map((o) => o.name));
  for (const n of g.nodes) for (const i of n.inputs) used.add(i);
  for (const k of [...g.initializers.keys()]) if (!used.has(k)) g.initializers.delete(k);
}

/** Fold every Conv -> BatchNormalization pair into the Conv (inference form, running statistics). In place. */
export function foldBatchNorm(g: Graph): Graph {
  const names = allNames(g);
  for (const { conv, bn } of convBnPairs(g)) {
    const folded = foldNamed(g, bn, conv.inputs[1], conv.inputs[2], bn.inputs.slice(1, 5), attrFloat(bn, 'epsilon', 1e-5));
    const wName = uniqueName(g, `${conv.name}.weight_folded`, names);
    const biasName = uniqueName(g, `${conv.name}.bias_folded`, names);
    g.initializers.set(wName, folded.w);
    g.initializers.set(biasName, folded.b);
    conv.inputs = [conv.inputs[0], wName, biasName];
    conv.outputs = [bn.outputs[0]];
    g.nodes = g.nodes.filter((n) => n !== bn);
  }
  dropUnused(g);
  return g;
}

/**
 * Fuse Conv -> BatchNormalization into one ai.qatkit ConvBn node for QAT (weight quantizer attributes prefixed
 * `w_`, its scale/zero point as inputs 7 and 8). In place.
 */
export function fuseConvBnForQat(
  g: Graph,
  weightAttrs: Node['attrs'],
  makeQparams: (convName: string, channels: number) => [string, string],
): Graph {
  for (const { conv, bn } of convBnPairs(g)) {
    const channels = g.initializers.get(conv.inputs[1])!.dims[0];
    const [s, z] = makeQparams(conv.name, channels);
    const fused: Node = {
      name: conv.name,
      op: 'ConvBn',
      domain: QATKIT_DOMAIN,
      inputs: [conv.inputs[0], conv.inputs[1], conv.inputs[2] ?? '', ...bn.inputs.slice(1, 5), s, z],
      outputs: [bn.outputs[0]],
      attrs: { ...conv.attrs, ...weightAttrs, epsilon: bn.attrs.epsilon ?? { type: 'float', value: 1e-5 }, momentum: bn.attrs.momentum ?? { type: 'float', value: 0.9 } },
    };
    g.nodes[g.nodes.indexOf(conv)] = fused;
    g.nodes = g.nodes.filter((n) => n !== bn);
  }
  return g;
}

/**
 * After QAT: rewrite each ConvBn to Conv(x, FakeQuant(W_folded), B_folded) with the running statistics, the
 * deployed form whose weights the simulation already quantized. In place.
 */
export function foldConvBn(g: Graph): Graph {
  const names = allNames(g);
  const out: Node[] = [];
  for (const n of g.nodes) {
    if (n.op !== 'ConvBn' || n.domain !== QATKIT_DOMAIN) {
      out.push(n);
      continue;
    }
    const [x, wName, bName, , , , , sName, zName] = n.inputs;
    const folded = foldNamed(g, n, wName, bName, n.inputs.slice(3, 7), attrFloat(n, 'epsilon', 1e-5));
    const wf = uniqueName(g, `${n.name}.weight_folded`, names);
    const bf = uniqueName(g, `${n.name}.bias_folded`, names);
    const wq = uniqueName(g, `${n.name}.weight_q`, names);
    g.initializers.set(wf, folded.w);
    g.initializers.set(bf, folded.b);
    const convAttrs: Node['attrs'] = {};
    const fqAttrs: Node['attrs'] = {};
    for (const [k, v] of Object.entries(n.attrs)) {
      if (k.startsWith('w_')) fqAttrs[k.slice(2)] = v;
      else if (k !== 'epsilon' && k !== 'momentum') convAttrs[k] = v;
    }
    out.push({ name: uniqueName(g, `${n.name}.weight_fq`, names), op: 'FakeQuant', domain: QATKIT_DOMAIN, inputs: [wf, sName, zName], outputs: [wq], attrs: fqAttrs });
    out.push({ name: n.name, op: 'Conv', inputs: [x, wq, bf], outputs: n.outputs, attrs: convAttrs });
  }
  g.nodes = out;
  dropUnused(g);
  return g;
}
