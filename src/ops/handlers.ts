// The ONNX ops the executor runs, each a forward on tfjs ops (tfjs records gradients).
import * as tf from '@tensorflow/tfjs-core';
import { attrFloat, attrInt, attrInts, attrString, GraphError, type Node, type TensorData } from '../graph/ir.js';
import { registerOp, type OpCtx } from './registry.js';
import { batchNormTrain } from '../backend/batchnorm_kernels.js';
import { addRelu } from '../backend/train_kernels.js';

/** NCHW axis -> NHWC axis for 4-D tensors */
export const NHWC_AXIS = [0, 3, 1, 2];
export const axisFor = (ctx: OpCtx, axis: number, rank: number): number => {
  const a = axis < 0 ? axis + rank : axis;
  return ctx.layout === 'nhwc' && rank === 4 ? NHWC_AXIS[a] : a;
};

function constInts(ctx: OpCtx, i: number, inputs: (tf.Tensor | undefined)[]): number[] | undefined {
  const c = ctx.constInput(i);
  if (c) return Array.from(c.data as ArrayLike<number | bigint>, Number);
  const t = inputs[i];
  return t ? Array.from(t.dataSync(), Number) : undefined;
}

const need = (t: tf.Tensor | undefined, node: Node, what: string): tf.Tensor => {
  if (!t) throw new GraphError(`missing input: ${what}`, node);
  return t;
};

// ---- element-wise ---------------------------------------------------------------

const binary = (op: string, f: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor) =>
  registerOp({ op, layout: 'elementwise', run: (ctx, [a, b]) => [f(need(a, ctx.node, 'A'), need(b, ctx.node, 'B'))] });
registerOp({
  op: 'Add',
  layout: 'elementwise',
  fusesReluAfter: true,
  run: (ctx, [a, b]) => {
    const [x, y] = [need(a, ctx.node, 'A'), need(b, ctx.node, 'B')];
    return [ctx.reluOutput ? addRelu(x, y) : tf.add(x, y)];
  },
});
binary('Sub', tf.sub);
binary('Mul', tf.mul);
binary('Div', (a, b) => (a.dtype === 'int32' ? tf.floorDiv(a, b) : tf.div(a, b)));
binary('Pow', tf.pow);
binary('Max', tf.maximum);
binary('Min', tf.minimum);

const unary = (op: string, f: (a: tf.Tensor) => tf.Tensor) =>
  registerOp({ op, layout: 'elementwise', run: (ctx, [a]) => [f(need(a, ctx.node, 'X'))] });
unary('Relu', tf.relu);
unary('Sigmoid', tf.sigmoid);
unary('Tanh', tf.tanh);
unary('Sqrt', tf.sqrt);
unary('Exp', tf.exp);
unary('Log', tf.log);
unary('Neg', tf.neg);
unary('Abs', tf.abs);
unary('Reciprocal', tf.reciprocal);
unary('Identity', (x) => tf.clone(x));
unary('Erf', tf.erf);
registerOp({
  op: 'LeakyRelu',
  layout: 'elementwise',
  run: (ctx, [x]) => [tf.leakyRelu(need(x, ctx.node, 'X'), attrFloat(ctx.node, 'alpha', 0.01))],
});
registerOp({
  op: 'Dropout',
  layout: 'elementwise',
  // inference semantics: the exported models we import are for inference; training-time dropout is not simulated
  run: (ctx, [x]) => [tf.clone(need(x, ctx.node, 'X'))],
});
registerOp({
  op: 'Clip',
  layout: 'elementwise',
  run: (ctx, inputs) => {
    const x = need(inputs[0], ctx.node, 'input');
    const lo = inputs[1] ? constInts(ctx, 1, inputs)![0] : -Infinity;
    const hi = inputs[2] ? constInts(ctx, 2, inputs)![0] : Infinity;
    if (lo === 0 && hi === Infinity) return [tf.relu(x)];
    if (lo === 0 && hi === 6) return [tf.relu6(x)];
    return [tf.clipByValue(x, lo, hi)];
  },
});

// ---- linear algebra -----------------------------------------------------------------

registerOp({
  op: 'Gemm',
  run: (ctx, [a, b, c]) => {
    const n = ctx.node;
    const alpha = attrFloat(n, 'alpha', 1);
    const beta = attrFloat(n, 'beta', 1);
    let y = tf.matMul(need(a, n, 'A') as tf.Tensor2D, need(b, n, 'B') as tf.Tensor2D, attrInt(n, 'transA', 0) === 1, attrInt(n, 'transB', 0) === 1);
    if (alpha !== 1) y = tf.mul(y, alpha);
    if (c) y = tf.add(y, beta === 1 ? c : tf.mul(c, beta));
    return [y];
  },
});
registerOp({
  op: 'MatMul',
  run: (ctx, [a, b]) => {
    let A = need(a, ctx.node, 'A');
    let B = need(b, ctx.node, 'B');
    // numpy semantics: 1-D operands are promoted and the added dim removed afterwards
    const aVec = A.rank === 1;
    const bVec = B.rank === 1;
    if (aVec) A = tf.reshape(A, [1, -1]);
    if (bVec) B = tf.reshape(B, [-1, 1]);
    if (A.rank > 2 && B.rank === 2) {
      const lead = A.shape.slice(0, -1);
      const y = tf.matMul(tf.reshape(A, [-1, A.shape[A.rank - 1]]), B);
      return [tf.reshape(y, [...lead, B.shape[1] as number])];
    }
    let y = A.rank === 2 && B.rank === 2 ? tf.matMul(A as tf.Tensor2D, B as tf.Tensor2D) : batchMatMul(A, B);
    if (aVec) y = tf.squeeze(y, [y.rank - 2]);
    if (bVec) y = tf.squeeze(y, [y.rank - 1]);
    return [y];
  },
});

function batchMatMul(A: tf.Tensor, B: tf.Tensor): tf.Tensor {
  const r = Math.max(A.rank, B.rank);
  const pad = (t: tf.Tensor) => (t.rank < r ? tf.reshape(t, [...Array(r - t.rank).fill(1), ...t.shape]) : t);
  A = pad(A);
  B = pad(B);
  const batch = A.shape.slice(0, -2).map((d, i) => Math.max(d, B.shape[i]));
  A = tf.broadcastTo(A, [...batch, ...A.shape.slice(-2)]);
  B = tf.broadcastTo(B, [...batch, ...B.shape.slice(-2)]);
  const y = tf.matMul(tf.reshape(A, [-1, ...A.shape.slice(-2)]) as unknown as tf.Tensor3D, tf.reshape(B, [-1, ...B.shape.slice(-2)]) as unknown as tf.Tensor3D);
  return tf.reshape(y, [...batch, A.shape[r - 2], B.shape[r - 1]]);
}

// ---- convolution and pooling (NHWC inside) -----------------------------------------

interface Spatial {
  kernel: number[];
  strides: number[];
  dilations: number[];
  pads: number[]; // [top, left, bottom, right]
}

function spatialAttrs(node: Node, inH: number, inW: number, kernel: number[]): Spatial {
  const strides = attrInts(node, 'strides', [1, 1]);
  const dilations = attrInts(node, 'dilations', [1, 1]);
  if (kernel.length !== 2) throw new GraphError(`only 2-D kernels are supported, got ${kernel.length}-D`, node);
  const autoPad = attrString(node, 'auto_pad', 'NOTSET');
  let pads = attrInts(node, 'pads', [0, 0, 0, 0]);
  if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
    pads = [0, 0, 0, 0];
    [inH, inW].forEach((size, d) => {
      const out = Math.ceil(size / strides[d]);
      const eff = (kernel[d] - 1) * dilations[d] + 1;
      const total = Math.max(0, (out - 1) * strides[d] + eff - size);
      const small = Math.floor(total / 2);
      const [first, second] = autoPad === 'SAME_UPPER' ? [small, total - small] : [total - small, small];
      pads[d] = first;
      pads[d + 2] = second;
    });
  } else if (autoPad === 'VALID') pads = [0, 0, 0, 0];
  return { kernel, strides, dilations, pads };
}

const explicitPad = (p: number[]): [[number, number], [number, number], [number, number], [number, number]] => [
  [0, 0],
  [p[0], p[2]],
  [p[1], p[3]],
  [0, 0],
];

/** x NHWC, w ONNX OIHW -> y NHWC */
export function conv2dOnnx(node: Node, x: tf.Tensor4D, w: tf.Tensor4D, b?: tf.Tensor): tf.Tensor4D {
  const group = attrInt(node, 'group', 1);
  const [O, I, kh, kw] = w.shape;
  const s = spatialAttrs(node, x.shape[1], x.shape[2], attrInts(node, 'kernel_shape', [kh, kw]));
  const C = x.shape[3];
  if (C !== I * group)
    throw new GraphError(`input has ${C} channels but the weight expects ${I * group} (${I} x group ${group})`, node);
  const pad = s.pads.every((p) => p === 0) ? 'valid' : explicitPad(s.pads);
  const strides: [number, number] = [s.strides[0], s.strides[1]];
  const dil: [number, number] = [s.dilations[0], s.dilations[1]];
  let y: tf.Tensor4D;
  if (group === 1) {
    y = tf.conv2d(x, tf.transpose(w, [2, 3, 1, 0]) as tf.Tensor4D, strides, pad, 'NHWC', dil);
  } else if (I === 1 && O % group === 0) {
    // depthwise: ONNX [C*mult, 1, kh, kw] -> tfjs [kh, kw, C, mult]
    const mult = O / group;
    const f = tf.transpose(tf.reshape(w, [group, mult, kh, kw]), [2, 3, 0, 1]) as tf.Tensor4D;
    y = tf.depthwiseConv2d(x, f, strides, pad, 'NHWC', dil);
  } else {
    const xs = tf.split(x, group, 3);
    const ws = tf.split(w, group, 0);
    y = tf.concat(xs.map((xi, g) => tf.conv2d(xi as tf.Tensor4D, tf.transpose(ws[g], [2, 3, 1, 0]) as tf.Tensor4D, strides, pad, 'NHWC', dil)), 3);
  }
  return b ? tf.add(y, b) : y;
}

registerOp({
  op: 'Conv',
  layout: 'spatial',
  run: (ctx, [x, w, b]) => {
    const n = ctx.node;
    const X = need(x, n, 'X');
    if (X.rank !== 4) throw new GraphError(`only 2-D convolution (4-D input) is supported, got rank ${X.rank}`, n);
    return [conv2dOnnx(n, X as tf.Tensor4D, need(w, n, 'W') as tf.Tensor4D, b)];
  },
});

function pool(ctx: OpCtx, x: tf.Tensor4D, kind: 'max' | 'avg'): tf.Tensor {
  const n = ctx.node;
  if (attrInt(n, 'ceil_mode', 0) !== 0) throw new GraphError('ceil_mode=1 is not supported', n);
  const kernel = attrInts(n, 'kernel_shape');
  if (!kernel) throw new GraphError(`attribute 'kernel_shape' is required`, n);
  const s = spatialAttrs(n, x.shape[1], x.shape[2], kernel);
  if (s.dilations.some((d) => d !== 1)) throw new GraphError('pool dilations are not supported', n);
  const k: [number, number] = [kernel[0], kernel[1]];
  const st: [number, number] = [s.strides[0], s.strides[1]];
  const padded = s.pads.some((p) => p !== 0);
  if (kind === 'max') {
    const xp = padded ? tf.pad(x, explicitPad(s.pads), -3.4e38) : x;
    return tf.maxPool(xp as tf.Tensor4D, k, st, 'valid');
  }
  if (!padded) return tf.avgPool(x, k, st, 'valid');
  const sum = tf.mul(tf.avgPool(tf.pad(x, explicitPad(s.pads)) as tf.Tensor4D, k, st, 'valid'), k[0] * k[1]);
  if (attrInt(n, 'count_include_pad', 0) === 1) return tf.div(sum, k[0] * k[1]);
  const ones = tf.pad(tf.ones([1, x.shape[1], x.shape[2], 1]), explicitPad(s.pads)) as tf.Tensor4D;
  const count = tf.mul(tf.avgPool(ones, k, st, 'valid'), k[0] * k[1]);
  return tf.div(sum, count);
}

registerOp({ op: 'MaxPool', layout: 'spatial', run: (ctx, [x]) => [pool(ctx, need(x, ctx.node, 'X') as tf.Tensor4D, 'max')] });
registerOp({ op: 'AveragePool', layout: 'spatial', run: (ctx, [x]) => [pool(ctx, need(x, ctx.node, 'X') as tf.Tensor4D, 'avg')] });
registerOp({
  op: 'GlobalAveragePool',
  layout: 'spatial',
  run: (ctx, [x]) => [tf.mean(need(x, ctx.node, 'X'), [1, 2], true)],
});
registerOp({
  op: 'GlobalMaxPool',
  layout: 'spatial',
  run: (ctx, [x]) => [tf.max(need(x, ctx.node, 'X'), [1, 2], true)],
});

/**
 * BatchNormalization, NHWC. In training (and not frozen) it normalizes with the batch statistics and schedules the
 * running-stat update (ONNX: running = running*momentum + batch*(1-momentum), the batch variance unbiased as PyTorch).
 * ctx.reluOutput: returns relu of it (a Relu fused after it).
 */
export function batchNorm(
  ctx: OpCtx,
  x: tf.Tensor,
  scale: tf.Tensor,
  bias: tf.Tensor,
  meanName: string,
  varName: string,
  mean: tf.Tensor,
  variance: tf.Tensor,
): tf.Tensor {
  const n = ctx.node;
  const eps = attrFloat(n, 'epsilon', 1e-5);
  const momentum = attrFloat(n, 'momentum', 0.9);
  const axes = x.rank === 4 ? (ctx.layout === 'nhwc' ? [0, 1, 2] : [0, 2, 3]) : [0];
  const c = x.rank === 4 ? axisFor(ctx, 1, 4) : 1;
  const shape = x.shape.map((d, i) => (i === c ? d : 1));
  let m = mean;
  let v = variance;
  if (ctx.training && !ctx.session.bnFrozen) {
    const count = axes.reduce((p, a) => p * x.shape[a], 1);
    const update = (bm: tf.Tensor, bv: tf.Tensor) => {
      ctx.session.scheduleRunningAverage(meanName, bm, momentum);
      ctx.session.scheduleRunningAverage(varName, bv, momentum, count / Math.max(1, count - 1)); // unbiased
    };
    if (c === x.rank - 1) {
      // channels last: one fused pass forward and backward where the backend has the kernels, a following Relu in it
      const r = batchNormTrain(x, scale, bias, eps, ctx.reluOutput);
      update(r.mean, r.variance);
      return r.y;
    }
    const mom = tf.moments(x, axes);
    m = mom.mean;
    v = mom.variance;
    update(m, v);
  }
  const inv = tf.mul(tf.rsqrt(tf.add(v, eps)), scale);
  const y = tf.add(tf.mul(tf.sub(x, tf.reshape(m, shape)), tf.reshape(inv, shape)), tf.reshape(bias, shape));
  return ctx.reluOutput ? tf.relu(y) : y;
}

registerOp({
  op: 'BatchNormalization',
  layout: 'spatial',
  fusesReluAfter: true,
  buffers: () => [3, 4],
  run: (ctx, [x, scale, bias, mean, variance]) => {
    const n = ctx.node;
    return [
      batchNorm(ctx, need(x, n, 'X'), need(scale, n, 'scale'), need(bias, n, 'B'), n.inputs[3], n.inputs[4], need(mean, n, 'mean'), need(variance, n, 'var')),
    ];
  },
});

// ---- shape ops (ONNX layout) -----------------------------------------------------------

registerOp({
  op: 'Flatten',
  run: (ctx, [x]) => {
    const X = need(x, ctx.node, 'input');
    let axis = attrInt(ctx.node, 'axis', 1);
    if (axis < 0) axis += X.rank;
    const outer = X.shape.slice(0, axis).reduce((a, b) => a * b, 1);
    return [tf.reshape(X, [outer, -1])];
  },
});
registerOp({
  op: 'Reshape',
  run: (ctx, inputs) => {
    const X = need(inputs[0], ctx.node, 'data');
    const shape = constInts(ctx, 1, inputs);
    if (!shape) throw new GraphError('missing input: shape', ctx.node);
    const allowZero = attrInt(ctx.node, 'allowzero', 0) === 1;
    const target = shape.map((d, i) => (d === 0 && !allowZero ? X.shape[i] : d));
    return [tf.reshape(X, target)];
  },
});
registerOp({
  op: 'Transpose',
  run: (ctx, [x]) => {
    const X = need(x, ctx.node, 'data');
    const perm = attrInts(ctx.node, 'perm', [...Array(X.rank).keys()].reverse());
    return [tf.transpose(X, perm)];
  },
});
registerOp({
  op: 'Squeeze',
  run: (ctx, inputs) => {
    const X = need(inputs[0], ctx.node, 'data');
    const axes = inputs[1] ? constInts(ctx, 1, inputs) : attrInts(ctx.node, 'axes');
    return [axes ? tf.squeeze(X, axes.map((a) => (a < 0 ? a + X.rank : a))) : tf.squeeze(X)];
  },
});
registerOp({
  op: 'Unsqueeze',
  run: (ctx, inputs) => {
    let X = need(inputs[0], ctx.node, 'data');
    const axes = (inputs[1] ? constInts(ctx, 1, inputs) : attrInts(ctx.node, 'axes')) ?? [];
    const outRank = X.rank + axes.length;
    const norm = axes.map((a) => (a < 0 ? a + outRank : a)).sort((a, b) => a - b);
    for (const a of norm) X = tf.expandDims(X, a);
    return [X];
  },
});
registerOp({
  op: 'Concat',
  layout: 'elementwise',
  run: (ctx, inputs) => {
    const ts = inputs.filter((t): t is tf.Tensor => !!t);
    const rank = ts[0].rank;
    return [tf.concat(ts, axisFor(ctx, attrInt(ctx.node, 'axis', 0), rank))];
  },
});
registerOp({
  op: 'Softmax',
  run: (ctx, [x]) => {
    const X = need(x, ctx.node, 'input');
    let axis = attrInt(ctx.node, 'axis', -1);
    if (axis < 0) axis += X.rank;
    if (axis === X.rank - 1) return [tf.softmax(X)];
    const perm = [...Array(X.rank).keys()];
    perm[axis] = X.rank - 1;
    perm[X.rank - 1] = axis;
    return [tf.transpose(tf.softmax(tf.transpose(X, perm)), perm)];
  },
});
registerOp({
  op: 'LogSoftmax',
  run: (ctx, [x]) => {
    const X = need(x, ctx.node, 'input');
    const axis = attrInt(ctx.node, 'axis', -1);
    if (axis !== -1 && axis !== X.rank - 1) throw new GraphError('LogSoftmax is supported on the last axis only', ctx.node);
    return [tf.logSoftmax(X)];
  },
});
const reduce = (op: string, f: (x: tf.Tensor, axes: number[] | undefined, keep: boolean) => tf.Tensor) =>
  registerOp({
    op,
    run: (ctx, inputs) => {
      const X = need(inputs[0], ctx.node, 'data');
      const axes = inputs[1] ? constInts(ctx, 1, inputs) : attrInts(ctx.node, 'axes');
      // opset 18: empty axes with noop_with_empty_axes=1 is the identity
      if ((!axes || axes.length === 0) && attrInt(ctx.node, 'noop_with_empty_axes', 0) === 1) return [tf.clone(X)];
      return [f(X, axes && axes.length ? axes : undefined, attrInt(ctx.node, 'keepdims', 1) === 1)];
    },
  });
reduce('ReduceMean', tf.mean);
reduce('ReduceSum', tf.sum);
reduce('ReduceMax', tf.max);
reduce('ReduceMin', tf.min);
registerOp({
  op: 'Split',
  run: (ctx, inputs) => {
    const X = need(inputs[0], ctx.node, 'input');
    let axis = attrInt(ctx.node, 'axis', 0);
    if (axis < 0) axis += X.rank;
    const sizes = inputs[1] ? constInts(ctx, 1, inputs) : attrInts(ctx.node, 'split');
    const parts = attrInt(ctx.node, 'num_outputs') ?? ctx.node.outputs.length;
    if (sizes) return tf.split(X, sizes, axis);
    const chunk = Math.ceil(X.shape[axis] / parts);
    const even = Array.from({ length: parts }, (_, i) => Math.min(chunk, X.shape[axis] - i * chunk));
    return tf.split(X, even, axis);
  },
});
registerOp({
  op: 'Shape',
  run: (ctx, [x]) => [tf.tensor1d(need(x, ctx.node, 'data').shape, 'int32')],
});
registerOp({
  op: 'Constant',
  run: (ctx) => {
    const a = ctx.node.attrs.value;
    if (!a || a.type !== 'tensor') throw new GraphError(`Constant needs a tensor 'value' attribute (import normalizes the other forms)`, ctx.node);
    return [tensorOf(a.value)];
  },
});

function tensorOf(d: TensorData): tf.Tensor {
  const data = d.data as ArrayLike<number | bigint>;
  if (d.dtype === 'float32' || d.dtype === 'float64') return tf.tensor(Float32Array.from(data as ArrayLike<number>), d.dims, 'float32');
  return tf.tensor(Int32Array.from(data, Number), d.dims, 'int32');
}

// ---- QDQ (so imported or exported QDQ models run in the float executor) -------------------------------------------

function qdqParams(ctx: OpCtx, x: tf.Tensor, scale: tf.Tensor, zp: tf.Tensor | undefined): { s: tf.Tensor; z: tf.Tensor } {
  let s = scale;
  let z = zp ? tf.cast(zp, 'float32') : tf.zerosLike(scale);
  if (scale.rank === 1 && scale.size > 1) {
    const axis = axisFor(ctx, attrInt(ctx.node, 'axis', 1), x.rank);
    const shape = x.shape.map((d, i) => (i === axis ? d : 1));
    s = tf.reshape(s, shape);
    z = tf.reshape(z, shape);
  }
  return { s, z };
}

const QDQ_RANGE: Record<string, [number, number]> = {
  uint8: [0, 255],
  int8: [-128, 127],
  uint16: [0, 65535],
  int16: [-32768, 32767],
  int32: [-2147483648, 2147483647],
  uint4: [0, 15],
  int4: [-8, 7],
};

registerOp({
  op: 'QuantizeLinear',
  run: (ctx, [x, scale, zp]) => {
    const n = ctx.node;
    const X = need(x, n, 'x');
    const { s, z } = qdqParams(ctx, X, need(scale, n, 'y_scale'), zp);
    const zpType = ctx.constInput(2)?.dtype ?? 'uint8';
    const range = QDQ_RANGE[zpType];
    if (!range) throw new GraphError(`QuantizeLinear to ${zpType} is not supported`, n);
    // integers carried in float32 tensors: tfjs has no int8 dtype; DequantizeLinear reads them back
    return [tf.clipByValue(tf.add(tf.round(tf.div(X, s)), z), range[0], range[1])];
  },
});
registerOp({
  op: 'DequantizeLinear',
  run: (ctx, [x, scale, zp]) => {
    const n = ctx.node;
    const X = tf.cast(need(x, n, 'x'), 'float32');
    const { s, z } = qdqParams(ctx, X, need(scale, n, 'x_scale'), zp);
    return [tf.mul(tf.sub(X, z), s)];
  },
});

registerOp({
  op: 'Gather',
  run: (ctx, inputs) => {
    const X = need(inputs[0], ctx.node, 'data');
    const idx = need(inputs[1], ctx.node, 'indices');
    let axis = attrInt(ctx.node, 'axis', 0);
    if (axis < 0) axis += X.rank;
    // negative indices count from the end, as ONNX allows
    const fixed = tf.where(tf.less(idx, 0), tf.add(idx, X.shape[axis]), idx);
    return [tf.gather(X, tf.cast(fixed, 'int32'), axis)];
  },
});
registerOp({
  op: 'Cast',
  run: (ctx, [x]) => {
    const to = attrInt(ctx.node, 'to', 1);
    // ONNX TensorProto codes: 1 float, 6 int32, 7 int64, 9 bool, 11 double
    const dtype = to === 1 || to === 11 || to === 10 ? 'float32' : to === 9 ? 'bool' : 'int32';
    return [tf.cast(need(x, ctx.node, 'input'), dtype)];
  },
});
registerOp({
  op: 'Pad',
  run: (ctx, inputs) => {
    const X = need(inputs[0], ctx.node, 'data');
    const mode = attrString(ctx.node, 'mode', 'constant');
    if (mode !== 'constant') throw new GraphError(`Pad mode '${mode}' is not supported`, ctx.node);
    const pads = constInts(ctx, 1, inputs);
    if (!pads) throw new GraphError('missing input: pads', ctx.node);
    if (inputs[3]) throw new GraphError('Pad with axes is not supported', ctx.node);
    const value = inputs[2] ? (constInts(ctx, 2, inputs) ?? [0])[0] : 0;
    const r = X.rank;
    return [tf.pad(X, Array.from({ length: r }, (_, i) => [pads[i], pads[i + r]] as [number, number]), value)];
  },
});
registerOp({
  op: 'Slice',
  run: (ctx, inputs) => {
    const X = need(inputs[0], ctx.node, 'data');
    const starts = constInts(ctx, 1, inputs) ?? [];
    const ends = constInts(ctx, 2, inputs) ?? [];
    const axes = inputs[3] ? constInts(ctx, 3, inputs)! : starts.map((_, i) => i);
    const steps = inputs[4] ? constInts(ctx, 4, inputs)! : starts.map(() => 1);
    const begin = X.shape.map(() => 0);
    const end = [...X.shape];
    const stride = X.shape.map(() => 1);
    axes.forEach((a0, i) => {
      const a = a0 < 0 ? a0 + X.rank : a0;
      const d = X.shape[a];
      const clamp = (v: number, lo: number, hi: number) => Math.min(Math.max(v < 0 ? v + d : v, lo), hi);
      stride[a] = steps[i];
      if (steps[i] > 0) {
        begin[a] = clamp(starts[i], 0, d);
        end[a] = clamp(ends[i], 0, d);
      } else {
        begin[a] = clamp(starts[i], -1, d - 1);
        end[a] = clamp(ends[i], -1, d - 1);
      }
    });
    // tfjs reads a negative end as counting from the back; -1 here means "before index 0"
    const endMask = end.reduce((m, e, i) => (e === -1 && stride[i] < 0 ? m | (1 << i) : m), 0);
    return [tf.stridedSlice(X, begin, end, stride, 0, endMask)];
  },
});
registerOp({
  op: 'Resize',
  layout: 'spatial',
  run: (ctx, inputs) => {
    const n = ctx.node;
    const X = need(inputs[0], n, 'X') as tf.Tensor4D;
    if (X.rank !== 4) throw new GraphError('Resize is supported on 4-D inputs only', n);
    const mode = attrString(n, 'mode', 'nearest');
    const ctm = attrString(n, 'coordinate_transformation_mode', 'half_pixel');
    const [, H, W] = X.shape;
    let size: [number, number];
    if (inputs[3]) {
      const s = constInts(ctx, 3, inputs)!;
      size = [s[2], s[3]];
    } else {
      const sc = ctx.constInput(2)?.data ?? inputs[2]?.dataSync();
      if (!sc) throw new GraphError('Resize needs scales or sizes', n);
      size = [Math.floor(H * Number(sc[2])), Math.floor(W * Number(sc[3]))];
    }
    const alignCorners = ctm === 'align_corners';
    const halfPixel = ctm === 'half_pixel' || ctm === 'pytorch_half_pixel' || ctm === 'tf_half_pixel_for_nn';
    if (mode === 'nearest') return [tf.image.resizeNearestNeighbor(X, size, alignCorners, halfPixel && attrString(n, 'nearest_mode', 'round_prefer_floor') !== 'floor')];
    if (mode === 'linear') return [tf.image.resizeBilinear(X, size, alignCorners, halfPixel)];
    throw new GraphError(`Resize mode '${mode}' is not supported`, n);
  },
});
