import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from './index.js';
import { compareWithCpu, randArray, randInt, relErr, rng, runOn } from './test_util.js';

const TOL = 1e-5;
type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];

interface ConvCase { b: number; h: number; w: number; c: number; co: number; kh: number; kw: number; s: [number, number]; pad: Pad }

function convCases(seed: number, n: number, depthwise: boolean): ConvCase[] {
  const r = rng(seed);
  const pads: Pad[] = ['same', 'valid', [[0, 0], [1, 2], [0, 1], [0, 0]], [[0, 0], [2, 0], [1, 1], [0, 0]]];
  const strides: [number, number][] = [[1, 1], [2, 2], [2, 1], [1, 3]];
  const out: ConvCase[] = [];
  for (let i = 0; i < n; i++) {
    const kh = randInt(r, 1, 4), kw = randInt(r, 1, 3);
    out.push({
      b: i % 3 === 0 ? 1 : randInt(r, 2, 3), h: randInt(r, kh + 2, 11), w: randInt(r, kw + 2, 10),
      c: randInt(r, 1, 5), co: depthwise ? randInt(r, 1, 3) : randInt(r, 1, 6), kh, kw,
      s: strides[i % strides.length], pad: pads[Math.floor(i / strides.length) % pads.length],
    });
  }
  return out;
}

await initBackend('wasm');

test('wasm lacks no kernel that a conv/bn/pool/matmul training step needs', () => {
  for (const k of ['Conv2DBackpropFilter', 'Conv2DBackpropInput', 'DepthwiseConv2dNativeBackpropFilter',
    'DepthwiseConv2dNativeBackpropInput', 'MaxPoolGrad', 'AvgPoolGrad', 'UnsortedSegmentSum']) {
    assert.ok(tf.getKernel(k, 'wasm') != null, `${k} missing on wasm`);
  }
});

test('conv2d gradients (input and filter) on wasm match cpu', async () => {
  for (const [i, c] of convCases(1, 32, false).entries()) {
    const r = rng(100 + i);
    const xv = randArray(r, c.b * c.h * c.w * c.c), fv = randArray(r, c.kh * c.kw * c.c * c.co);
    const err = await compareWithCpu('wasm', () => {
      const x = tf.tensor4d(xv, [c.b, c.h, c.w, c.c]), f = tf.tensor4d(fv, [c.kh, c.kw, c.c, c.co]);
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => {
        const y = tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.s, c.pad);
        return tf.sum(tf.mul(y, tf.cos(y)));   // non-uniform dy
      });
      return g([x, f]);
    });
    assert.ok(err < TOL, `case ${i} ${JSON.stringify(c)}: rel err ${err}`);
  }
});

test('depthwise conv gradients on wasm match cpu', async () => {
  for (const [i, c] of convCases(2, 32, true).entries()) {
    if (Array.isArray(c.pad)) continue; // tfjs depthwise takes 'same'|'valid'|number only
    const r = rng(200 + i);
    const s: [number, number] = [c.s[0], c.s[0]]; // tfjs depthwise needs equal strides
    const xv = randArray(r, c.b * c.h * c.w * c.c), fv = randArray(r, c.kh * c.kw * c.c * c.co);
    const err = await compareWithCpu('wasm', () => {
      const x = tf.tensor4d(xv, [c.b, c.h, c.w, c.c]), f = tf.tensor4d(fv, [c.kh, c.kw, c.c, c.co]);
      return tf.grads((a: tf.Tensor, b: tf.Tensor) => {
        const y = tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, s, c.pad as 'same');
        return tf.sum(tf.mul(y, tf.sin(y)));
      })([x, f]);
    });
    assert.ok(err < TOL, `case ${i} ${JSON.stringify(c)}: rel err ${err}`);
  }
});

// tfjs's cpu depthwise backprop kernels are wrong for dilation > 1 (tfjs's gradient never
// calls them so), so the reference here is an undilated conv with a zero-inserted filter.
test('depthwise backprop kernels with dilation match a zero-inserted-filter reference', async () => {
  const r = rng(3);
  for (const [d, pad] of [[2, 'same'], [2, 'valid'], [1, 1], [3, 'same'], [2, 2]] as const) {
    const b = 2, h = 9, w = 8, c = 3, m = 2, k = 3, kd = (k - 1) * d + 1;
    const xv = randArray(r, b * h * w * c), fv = randArray(r, k * k * c * m);
    const info = tf.backend_util.computeConv2DInfo([b, h, w, c], [k, k, c, m], 1, d, pad, undefined, true);
    const dyv = randArray(r, b * info.outHeight * info.outWidth * c * m);
    const inputs = () => ({ x: tf.tensor4d(xv, [b, h, w, c]), f: tf.tensor4d(fv, [k, k, c, m]),
      dy: tf.tensor4d(dyv, [b, info.outHeight, info.outWidth, c * m]) });
    const ref = await runOn('cpu', () => {
      const { x, f, dy } = inputs();
      const fz = tf.slice(tf.reshape(tf.pad(tf.reshape(f, [k, 1, k, 1, c, m]), [[0, 0], [0, d - 1], [0, 0], [0, d - 1], [0, 0], [0, 0]]),
        [k * d, k * d, c, m]), 0, [kd, kd, c, m]);
      const [dx, dfz] = tf.grads((a: tf.Tensor, bb: tf.Tensor) =>
        tf.sum(tf.mul(tf.depthwiseConv2d(a as tf.Tensor4D, bb as tf.Tensor4D, 1, pad), dy)))([x, fz]);
      return [tf.stridedSlice(dfz, [0, 0, 0, 0], [kd, kd, c, m], [d, d, 1, 1]), dx];
    });
    const got = await runOn('wasm', () => {
      const { x, f, dy } = inputs();
      const attrs = { strides: [1, 1], pad, dilations: [d, d] };
      return [
        tf.engine().runKernel('DepthwiseConv2dNativeBackpropFilter', { x, dy }, { ...attrs, filterShape: [k, k, c, m] }) as tf.Tensor,
        tf.engine().runKernel('DepthwiseConv2dNativeBackpropInput', { dy, filter: f }, { ...attrs, inputShape: [b, h, w, c] }) as tf.Tensor,
      ];
    });
    for (let i = 0; i < 2; i++) {
      const err = relErr(got[i].data, ref[i].data);
      assert.ok(err < TOL, `dilation ${d} pad ${pad} output ${i}: rel err ${err}`);
    }
  }
});

test('wasm conv2d forward with stride > kernel (XNNPACK returns zeros there) matches cpu', async () => {
  const r = rng(7);
  for (const [s, kh, kw, pad] of [[[1, 3], 3, 1, 'same'], [[3, 1], 1, 2, 'same'], [[3, 3], 2, 2, 'valid'], [[4, 2], 3, 1, 'same']] as const) {
    const xv = randArray(r, 2 * 9 * 10 * 3), fv = randArray(r, kh * kw * 3 * 4);
    const err = await compareWithCpu('wasm', () => {
      const x = tf.tensor4d(xv, [2, 9, 10, 3]), f = tf.tensor4d(fv, [kh, kw, 3, 4]);
      return [tf.conv2d(x, f, s as [number, number], pad),
        tf.fused.conv2d({ x, filter: f, strides: s as [number, number], pad, bias: tf.ones([4]), activation: 'relu' })];
    });
    assert.ok(err < TOL, `strides ${s} kernel ${kh}x${kw}: rel err ${err}`);
  }
});

test('Conv2DBackpropFilter on NCHW data matches cpu', async () => {
  const r = rng(4);
  const b = 2, c = 3, h = 7, w = 6, co = 4, k = 3;
  const xv = randArray(r, b * c * h * w), dyv = randArray(r, b * co * 4 * 3);
  const err = await compareWithCpu('wasm', () => tf.engine().runKernel('Conv2DBackpropFilter',
    { x: tf.tensor4d(xv, [b, c, h, w]), dy: tf.tensor4d(dyv, [b, co, 4, 3]) },
    { strides: [2, 2], pad: 'same', dataFormat: 'NCHW', filterShape: [k, k, c, co] }) as tf.Tensor);
  assert.ok(err < TOL, `rel err ${err}`);
});

test('gather gradient (UnsortedSegmentSum) on wasm matches cpu', async () => {
  const r = rng(5);
  const tv = randArray(r, 10 * 4);
  const ids = Int32Array.from({ length: 17 }, () => randInt(r, 0, 9));
  const err = await compareWithCpu('wasm', () => tf.grad((t: tf.Tensor) =>
    tf.sum(tf.square(tf.gather(t, tf.tensor1d(ids, 'int32')))))(tf.tensor2d(tv, [10, 4])));
  assert.ok(err < TOL, `rel err ${err}`);
  const seg = await compareWithCpu('wasm', () => tf.unsortedSegmentSum(
    tf.tensor2d(tv, [10, 4]), tf.tensor1d([0, 2, -1, 2, 5, 0, 1, 1, 9, 3], 'int32'), 6));
  assert.ok(seg < TOL, `segment sum rel err ${seg}`);
});

test('full conv-net training-step gradients on wasm match cpu', async () => {
  const r = rng(6);
  const B = 3, H = 12, W = 12, C = 3, NC = 5;
  const vals = {
    x: randArray(r, B * H * W * C), w1: randArray(r, 3 * 3 * C * 8, -0.5, 0.5), g1: randArray(r, 8, 0.5, 1.5),
    b1: randArray(r, 8, -0.1, 0.1), wd: randArray(r, 3 * 3 * 8 * 1, -0.5, 0.5), w2: randArray(r, 3 * 3 * 8 * 6, -0.3, 0.3),
    wf: randArray(r, 6 * NC, -0.5, 0.5), bf: randArray(r, NC, -0.1, 0.1),
  };
  const labels = Float32Array.from({ length: B * NC }, (_, i) => (i % NC === i % 4 ? 1 : 0));
  const err = await compareWithCpu('wasm', () => {
    const x = tf.tensor4d(vals.x, [B, H, W, C]);
    const params = [tf.tensor4d(vals.w1, [3, 3, C, 8]), tf.tensor1d(vals.g1), tf.tensor1d(vals.b1),
      tf.tensor4d(vals.wd, [3, 3, 8, 1]), tf.tensor4d(vals.w2, [3, 3, 8, 6]), tf.tensor2d(vals.wf, [6, NC]), tf.tensor1d(vals.bf)];
    const y = tf.tensor2d(labels, [B, NC]);
    const f = (w1: tf.Tensor, g1: tf.Tensor, b1: tf.Tensor, wd: tf.Tensor, w2: tf.Tensor, wf: tf.Tensor, bf: tf.Tensor) => {
      let h: tf.Tensor = tf.conv2d(x, w1 as tf.Tensor4D, 1, 'same');
      const { mean, variance } = tf.moments(h, [0, 1, 2]);
      h = tf.batchNorm(h, mean, variance, b1 as tf.Tensor1D, g1 as tf.Tensor1D, 1e-5);
      h = tf.relu(h);
      h = tf.maxPool(h as tf.Tensor4D, 2, 2, 'same');
      h = tf.depthwiseConv2d(h as tf.Tensor4D, wd as tf.Tensor4D, 1, 'same');
      h = tf.relu6(tf.conv2d(h as tf.Tensor4D, w2 as tf.Tensor4D, 2, 'valid')) as tf.Tensor4D;
      h = tf.avgPool(h as tf.Tensor4D, [h.shape[1]!, h.shape[2]!], 1, 'valid');
      const logits = tf.add(tf.matMul(tf.reshape(h, [B, 6]), wf as tf.Tensor2D), bf);
      return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
    };
    const { value, grads } = tf.valueAndGrads(f as (...a: tf.Tensor[]) => tf.Scalar)(params);
    return [value, ...grads];
  });
  assert.ok(err < TOL, `loss/gradient rel err ${err}`);
});

test('wasm Sum/Mean over long multi-axis reductions: staged, shapes as tfjs, near the float64 reference', async () => {
  const r = rng(7);
  const shape = [64, 24, 24, 3];
  // positive values with a large common offset: a single float32 chain over 36,864 of them drifts ~1e-5
  const xv = Float32Array.from(randArray(r, 64 * 24 * 24 * 3), (v) => 10 + v);
  const ref = new Float64Array(3);
  for (let i = 0; i < xv.length; i++) ref[i % 3] += xv[i];
  for (const [axis, keepDims, outShape] of [[[0, 1, 2], false, [3]], [[2, 0, 1], true, [1, 1, 1, 3]], [[-4, -3, -2], false, [3]]] as const) {
    const [s, m] = await runOn('wasm', () => [tf.sum(tf.tensor4d(xv, shape as [number, number, number, number]), axis as unknown as number[], keepDims),
      tf.mean(tf.tensor4d(xv, shape as [number, number, number, number]), axis as unknown as number[], keepDims)]);
    assert.deepEqual([s.shape, m.shape], [outShape, outShape], `axis ${axis}`);
    for (let c = 0; c < 3; c++) {
      assert.ok(Math.abs(s.data[c] - ref[c]) / ref[c] < 1e-6, `sum ${axis} channel ${c}: ${s.data[c]} vs ${ref[c]}`);
      assert.ok(Math.abs(m.data[c] - ref[c] / 36864) / (ref[c] / 36864) < 1e-6, `mean ${axis} channel ${c}`);
    }
  }
  // short and single-axis reductions take wasm's own kernel, unchanged
  const [one] = await runOn('wasm', () => tf.sum(tf.tensor2d([1, 2, 3, 4], [2, 2]), [0, 1]));
  assert.deepEqual([one.shape, Array.from(one.data)], [[], [10]]);
});
