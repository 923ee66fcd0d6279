// The two ops that quantization-aware graphs add to the IR (domain ai.qatkit):
//   FakeQuant(x, scale, zero_point)  quantize-dequantize with a gradient estimator
//   ConvBn(x, W, B, gamma, beta, mean, var, w_scale, w_zp)  Conv+BatchNorm trained with the BN folded into the
//     quantized weight (Jacob et al. 2018, sec. 3.2; PyTorch's ConvBn2d._forward_approximate), so that what is
//     simulated is the folded integer conv that gets deployed. foldConvBn() rewrites it to Conv + FakeQuant.
import * as tf from '@tensorflow/tfjs-core';
import { attrFloat, attrInt, attrString, GraphError, QATKIT_DOMAIN, type Node } from '../graph/ir.js';
import { batchNorm, conv2dOnnx, axisFor } from '../ops/handlers.js';
import { registerOp, type OpCtx } from '../ops/registry.js';
import { fakeQuant } from '../quant/fakequant.js';
import { channelDiv, foldConvBnWeight } from '../backend/train_kernels.js';

/** Installed on a Session under QUANT_SERVICE by the QuantController. */
export interface QuantHooks {
  /** false: fake-quant is the identity (float forward, e.g. while PTQ calibrates) */
  readonly enabled: boolean;
  /** true while observers update qparams (observe() then needs the quantizer's input) */
  readonly observing: boolean;
  /** lets the observer of `key` see x and update the scale/zero-point variables in place */
  observe(key: string, x: tf.Tensor): void;
}
export const QUANT_SERVICE = 'quant';

export interface FqParams {
  qmin: number;
  qmax: number;
  axis?: number;
  estimator: string;
}

export function fqParams(node: Node, prefix = ''): FqParams {
  const axis = attrInt(node, `${prefix}axis`);
  return {
    qmin: attrInt(node, `${prefix}qmin`, 0),
    qmax: attrInt(node, `${prefix}qmax`, 255),
    axis,
    estimator: attrString(node, `${prefix}estimator`, 'ste'),
  };
}

/** Fake-quantize x (rank r) with scale/zp of shape [] or [C] along `axis` (already mapped to x's layout). */
export function applyFakeQuant(x: tf.Tensor, scale: tf.Tensor, zp: tf.Tensor, p: FqParams, axis: number | undefined, relu = false): tf.Tensor {
  return fakeQuant(x, scale, zp, { qmin: p.qmin, qmax: p.qmax, estimator: p.estimator, relu }, scale.rank === 1 ? axis : undefined);
}

const learned = (est: string) => est === 'lsq';

function hooks(ctx: OpCtx): QuantHooks | undefined {
  return ctx.session.service<QuantHooks>(QUANT_SERVICE);
}

registerOp({
  op: 'FakeQuant',
  domain: QATKIT_DOMAIN,
  layout: 'elementwise',
  buffers: (n) => (learned(attrString(n, 'estimator', 'ste')) ? [] : [1, 2]),
  fusesRelu: true,
  run: (ctx, [x0, scale, zp]) => {
    const n = ctx.node;
    if (!x0 || !scale || !zp) throw new GraphError('FakeQuant needs x, scale and zero_point', n);
    const h = hooks(ctx);
    // x0 before the Relu that feeds this node (ctx.reluInput): relu inside the fake-quant unless relu(x0) is needed
    const fused = ctx.reluInput === true && (!h || (h.enabled && !h.observing));
    const x = ctx.reluInput && !fused ? tf.relu(x0) : x0;
    if (!fused) h?.observe(n.name, x);
    if (h && !h.enabled) return [tf.clone(x)];
    const p = fqParams(n);
    return [applyFakeQuant(x, scale, zp, p, p.axis === undefined ? undefined : axisFor(ctx, p.axis, x.rank), fused)];
  },
});

registerOp({
  op: 'ConvBn',
  domain: QATKIT_DOMAIN,
  layout: 'spatial',
  buffers: (n) => (learned(attrString(n, 'w_estimator', 'ste')) ? [5, 6] : [5, 6, 7, 8]),
  run: (ctx, [x, w, b, gamma, beta, mean, variance, ws, wz]) => {
    const n = ctx.node;
    if (!x || !w || !gamma || !beta || !mean || !variance || !ws || !wz) throw new GraphError('ConvBn is missing inputs', n);
    const eps = attrFloat(n, 'epsilon', 1e-5);
    const { w: wFold, sf } = foldConvBnWeight(w, gamma, variance, eps);
    const h = hooks(ctx);
    h?.observe(`${n.name}/weight`, wFold);
    const wq = h && !h.enabled ? wFold : applyFakeQuant(wFold, ws, wz, fqParams(n, 'w_'), 0);
    let y: tf.Tensor = conv2dOnnx(n, x as tf.Tensor4D, wq as tf.Tensor4D);
    y = channelDiv(y, sf); // NHWC: channel is last
    if (b) y = tf.add(y, b);
    return [batchNorm(ctx, y, gamma, beta, n.inputs[5], n.inputs[6], mean, variance)];
  },
});
