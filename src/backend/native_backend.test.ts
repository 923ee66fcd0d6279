// Every kernel the native backend overrides, against tfjs's cpu backend (fp32, norm-wise
// relative error < 1e-5), on random shapes incl. odd sizes, strides, paddings, batch 1;
// backward kernels through tf.grads. Skipped (with a note) when the addon is not built.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, nativeLoadError } from './index.js';
import { nativeAddon, nativeFallbackCounts } from './native_backend.js';
import { compareWithCpu, randArray, randInt, relErr, rng, runOn } from './test_util.js';
import { batchNormTrain, hasBatchNormTrainKernel } from './batchnorm_kernels.js';
import { fakeQuantGradKernel, fakeQuantKernel, fakeQuantObserveKernel, fakeQuantWithGrad, hasFakeQuantKernel,
  minMaxKernel } from './fakequant_kernels.js';

const TOL = 1e-5;
const NATIVE = 'qatkit-native';
const active = await initBackend('native');
const skip = active !== NATIVE ? `native backend not available: ${nativeLoadError()}` : false;
// The ISA the process started with (QATKIT_ISA may force a lower one: then every test uses it).
const startIsa = skip ? 'generic' : (nativeAddon().info().isa.replace('+fma', '') as 'avx512' | 'avx2' | 'generic');
const isas = skip ? [] : (['generic', 'avx2', 'avx512'] as const).filter((i) => nativeAddon().setIsa(i).startsWith(i));
if (!skip) nativeAddon().setIsa(startIsa);

/** Compares with cpu and checks that no overridden kernel fell back to cpu (unless allowed). */
async function close(name: string, fn: () => tf.Tensor | tf.Tensor[], allowFallback = false): Promise<void> {
  const before = nativeFallbackCounts();
  const err = await compareWithCpu(NATIVE, fn);
  assert.ok(err < TOL, `${name}: rel err ${err}`);
  if (!allowFallback) {
    for (const [k, v] of nativeFallbackCounts()) {
      assert.equal(v, before.get(k) ?? 0, `${name}: kernel ${k} fell back to cpu`);
    }
  }
}

/** Runs body once per ISA the CPU has (generic, avx2, avx512), restoring the best one. */
async function forEachIsa(body: (isa: string) => Promise<void>): Promise<void> {
  try {
    for (const isa of isas) {
      nativeAddon().setIsa(isa);
      await body(isa);
    }
  } finally {
    nativeAddon().setIsa(startIsa);
  }
}

test('native backend is the default when built, and reports its ISA and threads', { skip }, () => {
  assert.equal(tf.getBackend(), NATIVE);
  const info = nativeAddon().info();
  assert.ok(info.threads >= 1);
  assert.ok(['avx512', 'avx2+fma', 'generic'].includes(info.isa));
});

test('recycled output buffers never show through: dataSync copies, slice views, reshapes', { skip }, () => {
  const a = tf.fill([1000], 2), b = tf.fill([1000], 3);
  const x = tf.mul(a, b);                      // native output, pooled memory
  const seen = x.dataSync();
  const view = tf.slice(x, [10], [20]);         // cpu Slice: a subarray view of x's buffer
  const same = tf.reshape(x, [10, 100]);        // shares x's data id
  x.dispose();
  for (let i = 0; i < 5; i++) tf.dispose([tf.add(a, b), tf.sub(a, b)]); // would reuse x's buffer if freed
  assert.deepEqual(Array.from(seen.slice(0, 3)), [6, 6, 6]);
  assert.deepEqual(Array.from(view.dataSync().slice(0, 3)), [6, 6, 6]);
  assert.deepEqual(Array.from(same.dataSync().slice(0, 3)), [6, 6, 6]);
  tf.dispose([view, same]);
  // Now x's buffer is free: it is reused, and earlier reads are unaffected.
  const y = tf.add(a, b);
  assert.equal(y.dataSync()[0], 5);
  assert.equal(seen[0], 6);
  tf.dispose([a, b, y]);
});

test('MatMul/BatchMatMul: all transposes, odd sizes, broadcast batches, every ISA', { skip }, async () => {
  const r = rng(11);
  const shapes = [[1, 1, 1], [1, 37, 5], [17, 1, 9], [7, 13, 3], [33, 65, 129], [130, 47, 300], [64, 64, 64], [9, 200, 2],
    [32, 16, 40], [48, 7, 33], [13, 57, 31]];
  await forEachIsa(async (isa) => {
    for (const [m, n, k] of shapes) {
      for (const [ta, tb] of [[false, false], [true, false], [false, true], [true, true]]) {
        const av = randArray(r, m * k), bv = randArray(r, k * n);
        await close(`${isa} ${m}x${n}x${k} tA=${ta} tB=${tb}`, () =>
          tf.matMul(tf.tensor2d(av, ta ? [k, m] : [m, k]), tf.tensor2d(bv, tb ? [n, k] : [k, n]), ta, tb));
      }
    }
  });
  const av = randArray(r, 2 * 3 * 5 * 7), bv = randArray(r, 7 * 4), cv = randArray(r, 2 * 3 * 7 * 4);
  await close('batched, b broadcast', () => tf.matMul(tf.tensor4d(av, [2, 3, 5, 7]), tf.tensor2d(bv, [7, 4])));
  await close('batched, same batch', () => tf.matMul(tf.tensor4d(av, [2, 3, 5, 7]), tf.tensor4d(cv, [2, 3, 7, 4])));
  const dv = randArray(r, 35);
  await close('batched, a broadcast, transposed', () => tf.matMul(tf.tensor3d(dv, [1, 7, 5]),
    tf.tensor4d(cv, [2, 3, 7, 4]), true, false));
});

test('_FusedMatMul: bias and every activation', { skip }, async () => {
  const r = rng(12);
  const m = 19, k = 23, n = 37;
  const av = randArray(r, m * k), bv = randArray(r, k * n), bias = randArray(r, n), pw = randArray(r, n, 0, 0.5);
  for (const activation of ['linear', 'relu', 'relu6', 'elu', 'leakyrelu', 'sigmoid', 'prelu'] as const) {
    for (const tb of [false, true]) {
      await close(`fused ${activation} tB=${tb}`, () => tf.fused.matMul({
        a: tf.mul(tf.tensor2d(av, [m, k]), 4), b: tf.tensor2d(bv, tb ? [n, k] : [k, n]), transposeB: tb,
        bias: tf.tensor1d(bias), activation, preluActivationWeights: activation === 'prelu' ? tf.tensor1d(pw) : undefined,
        leakyreluAlpha: 0.1 }));
    }
  }
  // gradient of a dense layer goes through MatMul with transposes
  await close('dense layer grads', () => tf.grads((a: tf.Tensor, b: tf.Tensor) =>
    tf.sum(tf.relu(tf.fused.matMul({ a: a as tf.Tensor2D, b: b as tf.Tensor2D, bias: tf.tensor1d(bias) }))))(
    [tf.tensor2d(av, [m, k]), tf.tensor2d(bv, [k, n])]));
});

type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
interface ConvCase { b: number; h: number; w: number; c: number; co: number; kh: number; kw: number; s: [number, number]; pad: Pad; d: number }

function convCases(seed: number, n: number, wide: boolean): ConvCase[] {
  const r = rng(seed);
  const pads: Pad[] = ['same', 'valid', [[0, 0], [1, 2], [0, 1], [0, 0]], [[0, 0], [2, 0], [1, 1], [0, 0]]];
  const strides: [number, number][] = [[1, 1], [2, 2], [2, 1], [1, 3], [3, 3]];
  const out: ConvCase[] = [];
  for (let i = 0; i < n; i++) {
    const kh = randInt(r, 1, 4), kw = randInt(r, 1, 3), s = strides[i % strides.length];
    const d = s[0] === 1 && s[1] === 1 && i % 3 === 0 ? 2 : 1;
    out.push({
      b: i % 4 === 0 ? 1 : randInt(r, 2, 3), h: randInt(r, (kh - 1) * d + 2, 13), w: randInt(r, (kw - 1) * d + 2, 12),
      c: wide ? randInt(r, 17, 70) : randInt(r, 1, 6), co: wide ? randInt(r, 9, 40) : randInt(r, 1, 7), kh, kw, s,
      pad: pads[Math.floor(i / strides.length) % pads.length], d,
    });
  }
  return out;
}

test('Conv2D / FusedConv2D forward: strides, pads, dilations, few and many channels', { skip }, async () => {
  for (const [i, c] of [...convCases(21, 24, false), ...convCases(22, 16, true)].entries()) {
    const r = rng(300 + i);
    const xv = randArray(r, c.b * c.h * c.w * c.c), fv = randArray(r, c.kh * c.kw * c.c * c.co), bv = randArray(r, c.co);
    await close(`conv ${i} ${JSON.stringify(c)}`, () => {
      const x = tf.tensor4d(xv, [c.b, c.h, c.w, c.c]), f = tf.tensor4d(fv, [c.kh, c.kw, c.c, c.co]);
      return [tf.conv2d(x, f, c.s, c.pad, 'NHWC', c.d),
        tf.fused.conv2d({ x, filter: f, strides: c.s, pad: c.pad, dilations: c.d, bias: tf.tensor1d(bv), activation: 'relu' })];
    });
  }
});

test('Conv2D gradients (Conv2DBackpropInput, Conv2DBackpropFilter) vs cpu', { skip }, async () => {
  const cases = [...convCases(31, 24, false), ...convCases(32, 12, true)].filter((c) => c.d === 1);
  await forEachIsa(async (isa) => {
    for (const [i, c] of cases.entries()) {
      if (isa !== 'avx512' && i % 3) continue; // other ISAs: a subset keeps the test short
      const r = rng(400 + i);
      const xv = randArray(r, c.b * c.h * c.w * c.c), fv = randArray(r, c.kh * c.kw * c.c * c.co);
      await close(`${isa} conv grad ${i} ${JSON.stringify(c)}`, () => {
        const x = tf.tensor4d(xv, [c.b, c.h, c.w, c.c]), f = tf.tensor4d(fv, [c.kh, c.kw, c.c, c.co]);
        return tf.grads((a: tf.Tensor, b: tf.Tensor) => {
          const y = tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.s, c.pad);
          return tf.sum(tf.mul(y, tf.cos(y)));
        })([x, f]);
      });
    }
  });
});

test('Conv2D and both gradients on batches large enough to split into per-image tasks', { skip }, async () => {
  // LeNet- and ResNet-like layers (odd sizes too): batch-parallel forward, filter-gradient partial sums merged
  // over tasks, input gradient through the flipped filter (stride 1, >= 16 input channels) or gathered columns;
  // whole output rows of 8 or 16 pixels (evenly spaced GEMM rows).
  const cases: ConvCase[] = [
    { b: 36, h: 28, w: 28, c: 1, co: 6, kh: 5, kw: 5, s: [1, 1], pad: 'same', d: 1 },
    { b: 24, h: 14, w: 14, c: 6, co: 16, kh: 5, kw: 5, s: [1, 1], pad: 'valid', d: 1 },
    { b: 12, h: 17, w: 15, c: 16, co: 16, kh: 3, kw: 3, s: [1, 1], pad: 'same', d: 1 },
    { b: 8, h: 16, w: 16, c: 16, co: 16, kh: 3, kw: 3, s: [1, 1], pad: 'same', d: 1 },
    { b: 16, h: 8, w: 8, c: 64, co: 40, kh: 3, kw: 3, s: [1, 1], pad: 'same', d: 1 },
    { b: 2, h: 16, w: 16, c: 3, co: 16, kh: 3, kw: 3, s: [1, 1], pad: 'same', d: 1 },
    { b: 32, h: 16, w: 15, c: 16, co: 32, kh: 3, kw: 3, s: [2, 2], pad: 'same', d: 1 },
    { b: 32, h: 16, w: 16, c: 16, co: 32, kh: 1, kw: 1, s: [2, 2], pad: 'valid', d: 1 },
    { b: 8, h: 9, w: 8, c: 20, co: 7, kh: 3, kw: 2, s: [1, 1], pad: [[0, 0], [2, 0], [1, 1], [0, 0]], d: 1 },
    // ResNet-8's stride-1 3x3 layers and odd variants of them: 16 or 32 output channels on AVX-512 take the
    // row-blocked direct kernels (row tails of 8/4/2/1 pixels; input channels in passes of 4, 3, 2 or 1).
    { b: 32, h: 32, w: 32, c: 3, co: 16, kh: 3, kw: 3, s: [1, 1], pad: 'same', d: 1 },
    { b: 32, h: 16, w: 16, c: 32, co: 32, kh: 3, kw: 3, s: [1, 1], pad: 'same', d: 1 },
    { b: 1, h: 7, w: 23, c: 5, co: 32, kh: 3, kw: 3, s: [1, 1], pad: 'same', d: 1 },
    { b: 5, h: 11, w: 13, c: 7, co: 16, kh: 2, kw: 3, s: [1, 1], pad: [[0, 0], [0, 1], [2, 0], [0, 0]], d: 1 },
    { b: 6, h: 9, w: 20, c: 17, co: 32, kh: 5, kw: 3, s: [1, 1], pad: 'valid', d: 1 },
    { b: 4, h: 10, w: 29, c: 16, co: 16, kh: 1, kw: 3, s: [1, 1], pad: [[0, 0], [0, 0], [1, 1], [0, 0]], d: 1 },
    // Its 64-channel layers and a 56-channel one: GEMMs of up to 64 columns in 6-row tiles of 4 vectors.
    { b: 32, h: 16, w: 16, c: 32, co: 64, kh: 3, kw: 3, s: [2, 2], pad: 'same', d: 1 },
    { b: 32, h: 8, w: 8, c: 64, co: 64, kh: 3, kw: 3, s: [1, 1], pad: 'same', d: 1 },
    { b: 6, h: 9, w: 11, c: 24, co: 56, kh: 3, kw: 3, s: [1, 1], pad: 'same', d: 1 },
    // Strided with 16 or 32 input channels on AVX-512: the input gradient by output phases (1-3 taps per kernel
    // row, phases no tap reaches, negative phase pads).
    { b: 1, h: 9, w: 11, c: 16, co: 8, kh: 5, kw: 5, s: [2, 2], pad: 'same', d: 1 },
    { b: 3, h: 10, w: 7, c: 32, co: 12, kh: 3, kw: 3, s: [2, 1], pad: [[0, 0], [2, 0], [1, 1], [0, 0]], d: 1 },
    { b: 2, h: 8, w: 9, c: 16, co: 20, kh: 2, kw: 3, s: [3, 3], pad: 'valid', d: 1 },
    { b: 4, h: 7, w: 7, c: 32, co: 5, kh: 1, kw: 4, s: [1, 2], pad: 'same', d: 1 },
    { b: 2, h: 12, w: 10, c: 16, co: 9, kh: 3, kw: 3, s: [2, 2], pad: [[0, 0], [4, 1], [3, 0], [0, 0]], d: 1 },
    // Row-blocked forward with stride 2 along rows (any stride down columns).
    { b: 3, h: 11, w: 13, c: 5, co: 32, kh: 3, kw: 3, s: [2, 2], pad: 'same', d: 1 },
    { b: 2, h: 9, w: 10, c: 16, co: 16, kh: 4, kw: 3, s: [3, 2], pad: 'valid', d: 1 },
    { b: 1, h: 6, w: 35, c: 7, co: 16, kh: 3, kw: 3, s: [1, 2], pad: [[0, 0], [1, 0], [2, 1], [0, 0]], d: 1 },
    { b: 3, h: 9, w: 11, c: 24, co: 16, kh: 1, kw: 1, s: [2, 2], pad: 'valid', d: 1 },
  ];
  for (const [i, c] of cases.entries()) {
    const r = rng(450 + i);
    const xv = randArray(r, c.b * c.h * c.w * c.c), fv = randArray(r, c.kh * c.kw * c.c * c.co);
    await close(`batched conv ${i} ${JSON.stringify(c)}`, () => {
      const x = tf.tensor4d(xv, [c.b, c.h, c.w, c.c]), f = tf.tensor4d(fv, [c.kh, c.kw, c.c, c.co]);
      const [dx, df] = tf.grads((a: tf.Tensor, b: tf.Tensor) => {
        const y = tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.s, c.pad);
        return tf.sum(tf.mul(y, tf.cos(y)));
      })([x, f]);
      return [tf.conv2d(x, f, c.s, c.pad), dx, df];
    });
  }
});

test('DepthwiseConv2dNative forward and both backprops (multiplier 1 and 2)', { skip }, async () => {
  for (const [i, c] of convCases(41, 30, false).entries()) {
    if (Array.isArray(c.pad)) continue;
    const r = rng(500 + i);
    const m = i % 2 ? 2 : 1, s: [number, number] = [c.s[0], c.s[0]];
    const xv = randArray(r, c.b * c.h * c.w * c.c), fv = randArray(r, c.kh * c.kw * c.c * m);
    await close(`depthwise ${i} ${JSON.stringify(c)} m=${m}`, () => {
      const x = tf.tensor4d(xv, [c.b, c.h, c.w, c.c]), f = tf.tensor4d(fv, [c.kh, c.kw, c.c, m]);
      const fwd = tf.depthwiseConv2d(x, f, s, c.pad, 'NHWC', s[0] === 1 ? c.d : 1);
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor) => {
        const y = tf.depthwiseConv2d(a as tf.Tensor4D, b as tf.Tensor4D, s, c.pad);
        return tf.sum(tf.mul(y, tf.sin(y)));
      })([x, f]);
      return [fwd, ...g];
    });
  }
});

test('MaxPool/AvgPool forward and gradients; max ties go to the first maximum; every ISA', { skip }, async () => {
  const r = rng(51);
  const poolCases: [number | [number, number], number | [number, number], 'same' | 'valid'][] =
    [[2, 2, 'valid'], [3, 2, 'same'], [3, 1, 'same'], [2, 1, 'valid'], [3, 3, 'valid'], [[2, 3], [1, 2], 'same'],
      [3, 3, 'same'], [[2, 2], [3, 2], 'same']];
  for (const [i, [k, s, pad]] of poolCases.entries()) {
    const b = i % 2 ? 1 : 2, h = 7 + i, w = 8, c = [5, 16, 21][i % 3]; // channels: a masked tail, full vectors, both
    const xv = randArray(r, b * h * w * c);
    for (let j = 0; j < xv.length; j += 3) xv[j] = 0; // many ties after relu
    await forEachIsa((isa) => close(`${isa} pool k=${k} s=${s} ${pad}`, () => {
      const x = tf.relu(tf.tensor4d(xv, [b, h, w, c]));
      const fwd = [tf.maxPool(x, k, s, pad), tf.avgPool(x, k, s, pad)];
      const gm = tf.grad((a: tf.Tensor) => tf.sum(tf.mul(tf.maxPool(a as tf.Tensor4D, k, s, pad), tf.reshape(tf.range(1, 1 + fwd[0].size), fwd[0].shape))))(x);
      return [...fwd, gm];
    }));
    if (pad === 'valid') {
      await close(`avgPool grad k=${k} s=${s} valid`, () => tf.grad((a: tf.Tensor) =>
        tf.sum(tf.square(tf.avgPool(a as tf.Tensor4D, k, s, pad))))(tf.tensor4d(xv, [b, h, w, c])));
    }
  }
});

test('AvgPoolGrad is the exact adjoint of AvgPool, also at same-padded borders', { skip }, async () => {
  const r = rng(52);
  const b = 2, h = 7, w = 6, c = 3;
  for (const [k, s] of [[3, 1], [3, 2], [2, 2]] as const) {
    const info = tf.backend_util.computePool2DInfo([b, h, w, c], k, s, 1, 'same');
    const dyv = randArray(r, tf.util.sizeFromShape(info.outShape)), ev = randArray(r, b * h * w * c);
    const [dx] = await runOn(NATIVE, () => tf.engine().runKernel('AvgPoolGrad',
      { dy: tf.tensor(dyv, info.outShape), input: tf.zeros([b, h, w, c]) }, { filterSize: k, strides: s, pad: 'same' }) as tf.Tensor);
    const [pe] = await runOn('cpu', () => tf.avgPool(tf.tensor4d(ev, [b, h, w, c]), k, s, 'same'));
    let lhs = 0, rhs = 0;
    for (let i = 0; i < ev.length; i++) lhs += dx.data[i] * ev[i];
    for (let i = 0; i < dyv.length; i++) rhs += dyv[i] * pe.data[i];
    assert.ok(Math.abs(lhs - rhs) < 1e-5 * Math.max(1, Math.abs(rhs)), `k=${k} s=${s}: <dx,e>=${lhs} <dy,Ae>=${rhs}`);
  }
});

test('binary ops with broadcasting (and a pattern that falls back to cpu)', { skip }, async () => {
  const r = rng(61);
  const pairs: [number[], number[]][] = [[[3, 5], [3, 5]], [[2, 4, 4, 6], [6]], [[6], [2, 4, 4, 6]], [[5, 1], [5, 7]],
    [[4, 3, 2], [4, 1, 1]], [[], [3, 4]], [[3, 4], [1]], [[1, 7], [9, 7]], [[2, 1, 3], [1, 4, 1]], [[70000], [70000]], [[4, 1, 3], [1, 1, 3]],
    [[4, 1, 1, 6], [4, 5, 5, 6]], [[3, 1, 5], [3, 4, 5]], [[2, 1, 3, 1], [1, 4, 3, 5]], [[0, 3], [1, 3]]];
  const ops: [string, (a: tf.Tensor, b: tf.Tensor) => tf.Tensor][] = [['add', tf.add], ['sub', tf.sub], ['mul', tf.mul],
    ['div', tf.div], ['maximum', tf.maximum], ['minimum', tf.minimum], ['squaredDifference', tf.squaredDifference]];
  for (const [as, bs] of pairs) {
    const av = randArray(r, tf.util.sizeFromShape(as)), bv = randArray(r, tf.util.sizeFromShape(bs), 0.5, 2);
    for (const [name, op] of ops) {
      await close(`${name} [${as}] [${bs}]`, () => op(tf.tensor(av, as), tf.tensor(bv, bs)), as.join() === '2,1,3,1');
    }
  }
});

test('unary ops', { skip }, async () => {
  const r = rng(62);
  const v = randArray(r, 5000, -8, 8), pos = randArray(r, 5000, 0.01, 10);
  const ops: [string, (x: tf.Tensor) => tf.Tensor, Float32Array][] = [
    ['relu', tf.relu, v], ['relu6', tf.relu6, v], ['step', (x) => tf.step(x, 0.3), v], ['neg', tf.neg, v], ['exp', tf.exp, v],
    ['log', tf.log, pos], ['sqrt', tf.sqrt, pos], ['rsqrt', tf.rsqrt, pos], ['square', tf.square, v], ['abs', tf.abs, v],
    ['sigmoid', tf.sigmoid, v], ['tanh', tf.tanh, v], ['elu', tf.elu, v], ['leakyRelu', (x) => tf.leakyRelu(x, 0.15), v],
    ['reciprocal', tf.reciprocal, pos], ['log1p', tf.log1p, pos], ['softplus', tf.softplus, v]];
  for (const [name, op, data] of ops) await close(name, () => op(tf.tensor2d(data, [50, 100])));
});

test('Transpose: layouts, odd shapes, int32, size-1 dims', { skip }, async () => {
  const r = rng(65);
  const cases: [number[], number[]][] = [[[2, 3, 5, 7], [0, 2, 3, 1]], [[2, 7, 5, 3], [0, 3, 1, 2]], [[33, 65], [1, 0]],
    [[4, 1, 6, 1, 5], [4, 2, 0, 3, 1]], [[3, 4, 5], [2, 1, 0]], [[2, 3, 4, 5], [1, 0, 3, 2]], [[6], [0]], [[1, 300, 70], [0, 2, 1]]];
  for (const [shape, perm] of cases) {
    const v = randArray(r, tf.util.sizeFromShape(shape));
    await close(`transpose [${shape}] [${perm}]`, () => tf.transpose(tf.tensor(v, shape), perm));
    const iv = Int32Array.from(v, (x) => Math.round(x * 1000));
    await close(`transpose int32 [${shape}] [${perm}]`, () => tf.cast(tf.transpose(tf.tensor(iv, shape, 'int32'), perm), 'float32'));
  }
});

test('comparisons, logical ops, select, clip, round/floor/ceil', { skip }, async () => {
  const r = rng(66);
  const av = Float32Array.from(randArray(r, 6 * 35), (x) => Math.round(x * 4) / 2); // many ties and .5s
  const bv = Float32Array.from(randArray(r, 35), (x) => Math.round(x * 4) / 2);
  const asBool = (t: tf.Tensor) => tf.cast(t, 'float32');
  await close('compare', () => {
    const a = tf.tensor2d(av, [6, 35]), b = tf.tensor1d(bv);
    return [tf.greater(a, b), tf.greaterEqual(a, b), tf.less(a, b), tf.lessEqual(a, b), tf.equal(a, b), tf.notEqual(b, a),
      tf.greater(a, tf.scalar(0))].map(asBool);
  });
  await close('logical/select', () => {
    const a = tf.tensor2d(av, [6, 35]), b = tf.tile(tf.reshape(tf.tensor1d(bv), [1, 35]), [6, 1]);
    const p = tf.greater(a, 0), q = tf.lessEqual(b, 0);
    return [asBool(tf.logicalAnd(p, q)), asBool(tf.logicalOr(p, q)), asBool(tf.logicalNot(p)), tf.where(p, a, b)];
  });
  await close('clip/round/floor/ceil', () => {
    const a = tf.mul(tf.tensor2d(av, [6, 35]), 3);
    return [tf.clipByValue(a, -1.25, 2), tf.round(a), tf.round(tf.tensor1d([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, 1.49])), tf.floor(a), tf.ceil(a)];
  });
});

test('Sum/Max/Min/Mean over axes (contiguous natively, others via cpu)', { skip }, async () => {
  const r = rng(63);
  const shape = [3, 5, 7, 11];
  const v = randArray(r, tf.util.sizeFromShape(shape));
  const axes: (number | number[])[] = [0, 1, 2, 3, -1, [0, 1, 2], [1, 2], [2, 3], [0, 1, 2, 3], [0, 2], [1, 3]];
  for (const ax of axes) {
    for (const keepDims of [false, true]) {
      await close(`reduce ${JSON.stringify(ax)} keep=${keepDims}`, () => {
        const x = tf.tensor4d(v, shape as [number, number, number, number]);
        return [tf.sum(x, ax, keepDims), tf.max(x, ax, keepDims), tf.min(x, ax, keepDims), tf.mean(x, ax, keepDims)];
      }, JSON.stringify(ax) === '[0,2]' || JSON.stringify(ax) === '[1,3]');
    }
  }
  const big = randArray(r, 300000);
  await close('sum of 300k', () => [tf.sum(tf.tensor1d(big)), tf.mean(tf.tensor2d(big, [1000, 300]), 0)]);
  await close('column reductions over many rows', () => {
    const x = tf.tensor2d(big.subarray(0, 5003 * 16), [5003, 16]);
    return [tf.sum(x, 0), tf.mean(x, 0), tf.max(x, 0), tf.min(x, 0), tf.sum(tf.reshape(x, [1, 5003, 16]), [0, 1])];
  });
});

test('FusedBatchNorm and Softmax', { skip }, async () => {
  const r = rng(64);
  const x = randArray(r, 2 * 5 * 5 * 6), m = randArray(r, 6), va = randArray(r, 6, 0.1, 2), o = randArray(r, 6), s = randArray(r, 6);
  await close('batchNorm [C]', () => tf.batchNorm(tf.tensor4d(x, [2, 5, 5, 6]), tf.tensor1d(m), tf.tensor1d(va), tf.tensor1d(o), tf.tensor1d(s), 1e-3));
  await close('batchNorm no offset/scale', () => tf.batchNorm(tf.tensor4d(x, [2, 5, 5, 6]), tf.tensor1d(m), tf.tensor1d(va)));
  await close('batchNorm scalar params', () => tf.batchNorm(tf.tensor4d(x, [2, 5, 5, 6]), tf.scalar(0.3), tf.scalar(1.7), tf.scalar(0.1), tf.scalar(2)));
  await close('softmax', () => [tf.softmax(tf.tensor2d(x, [30, 10])), tf.softmax(tf.tensor2d(x, [300, 1]))]);
  await close('softmax cross-entropy grad', () => tf.grad((l: tf.Tensor) =>
    tf.losses.softmaxCrossEntropy(tf.oneHot(tf.tensor1d([1, 3, 0, 9, 2], 'int32'), 10), l) as tf.Scalar)(tf.tensor2d(x.slice(0, 50), [5, 10])));
});

test('fused training batch norm (QatBatchNormTrain + Grad) matches the tfjs-op composition on cpu', { skip }, async () => {
  assert.ok(hasBatchNormTrainKernel());
  const r = rng(67);
  // Several row chunks (> 1024 rows), channel counts with short and long patterns, a mean far from zero.
  const cases: [number[], number][] = [[[4, 7, 7, 6], 0], [[1, 5, 3, 33], 0], [[32, 10], 0], [[3, 2, 2, 1], 0],
    [[3, 30, 30, 6], 0], [[2, 33, 20, 33], 0], [[1100, 70], 0], [[5, 17, 19, 16], 100]];
  for (const [shape, center] of cases) {
    const n = tf.util.sizeFromShape(shape), c = shape[shape.length - 1];
    const xv = randArray(r, n, center - 2, center + 3), wv = randArray(r, n), sv = randArray(r, c, 0.5, 1.5), ov = randArray(r, c);
    await close(`batchNormTrain [${shape}]`, () => {
      const x = tf.tensor(xv, shape), w = tf.tensor(wv, shape), s = tf.tensor1d(sv), o = tf.tensor1d(ov);
      const { y, mean, variance } = batchNormTrain(x, s, o, 1e-3);
      const g = tf.grads((a: tf.Tensor, b: tf.Tensor, cc: tf.Tensor) => tf.sum(tf.mul(batchNormTrain(a, b, cc, 1e-3).y, w)))([x, s, o]);
      return [y, mean, variance, ...g];
    });
  }
});

// Reference fake quantization in float32 arithmetic (x times the float32 reciprocal, as PyTorch), round half to even.
function rne(v: number): number {
  const f = Math.floor(v), d = v - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}
function fqRef(x: Float32Array, shape: number[], s: Float32Array, z: Float32Array, qmin: number, qmax: number, axis: number) {
  const nch = axis < 0 ? 1 : shape[axis], inner = axis < 0 ? x.length : shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const y = new Float32Array(x.length), dx = new Float32Array(x.length), ds = new Float64Array(nch), dz = new Float64Array(nch);
  const mn = new Float32Array(nch).fill(Infinity), mx = new Float32Array(nch).fill(-Infinity);
  for (let i = 0; i < x.length; i++) {
    const c = Math.floor(i / inner) % nch;
    const t = Math.fround(x[i] * Math.fround(1 / s[c])), r = rne(t), q = r + z[c];
    const qc = Math.min(qmax, Math.max(qmin, q));
    y[i] = Math.fround((qc - z[c]) * s[c]);
    const inside = q >= qmin && q <= qmax;
    dx[i] = inside ? 1 : 0; // times dy = 1 below
    ds[c] += q < qmin ? qmin - z[c] : q > qmax ? qmax - z[c] : Math.fround(r - t);
    dz[c] += inside ? 0 : -s[c];
    mn[c] = Math.min(mn[c], x[i]);
    mx[c] = Math.max(mx[c], x[i]);
  }
  return { y, dx, ds: Float32Array.from(ds), dz: Float32Array.from(dz), mn, mx };
}

test('fake-quant kernels: per tensor and per channel, forward, STE/LSQ backward, min/max', { skip }, async () => {
  assert.ok(hasFakeQuantKernel());
  const r = rng(71);
  const cases: [number[], number][] = [[[1000], -1], [[4, 5, 6], -1], [[3, 3, 8, 16], 3], [[16, 3, 3, 8], 0], [[5, 7, 9], 1], [[257, 33], 1]];
  for (const [shape, axis] of cases) {
    const n = tf.util.sizeFromShape(shape), nch = axis < 0 ? 1 : shape[axis];
    const x = randArray(r, n, -3, 3), s = randArray(r, nch, 0.01, 0.05), z = Float32Array.from({ length: nch }, () => randInt(r, -3, 3));
    for (const [qmin, qmax] of [[-128, 127], [0, 15], [-8, 7]]) {
      const ref = fqRef(x, shape, s, z, qmin, qmax, axis);
      const xs = tf.tensor(x, shape), st = tf.tensor1d(s), zt = tf.tensor1d(z);
      const y = fakeQuantKernel(xs, st, zt, qmin, qmax, axis);
      assert.ok(relErr(y.dataSync(), ref.y) < 1e-6, `fq ${shape} axis ${axis} [${qmin},${qmax}]: ${relErr(y.dataSync(), ref.y)}`);
      const g = fakeQuantGradKernel(tf.onesLike(xs), xs, st, zt, qmin, qmax, axis);
      assert.deepEqual(Array.from(g.dx.dataSync()), Array.from(ref.dx));
      assert.ok(relErr(g.dScale.dataSync(), ref.ds) < 1e-5, `dScale ${shape} ${axis}: ${relErr(g.dScale.dataSync(), ref.ds)}`);
      assert.ok(relErr(g.dZeroPoint.dataSync(), ref.dz) < 1e-5, `dZp ${shape} ${axis}`);
      const o = fakeQuantObserveKernel(xs, st, zt, qmin, qmax, axis);
      assert.deepEqual(Array.from(o.y.dataSync()), Array.from(y.dataSync()));
      assert.deepEqual(Array.from(o.min.dataSync()), Array.from(ref.mn));
      assert.deepEqual(Array.from(o.max.dataSync()), Array.from(ref.mx));
      const mm = minMaxKernel(xs, axis);
      assert.deepEqual(Array.from(mm.max.dataSync()), Array.from(ref.mx));
      tf.dispose([xs, st, zt, y, g.dx, g.dScale, g.dZeroPoint, o.y, o.min, o.max, mm.min, mm.max]);
    }
  }
  // Per-tensor scale given as a scalar; gradient through tf.grads matches the kernel's.
  const x = tf.tensor1d(randArray(r, 500, -2, 2)), s = tf.scalar(0.02), z = tf.scalar(1);
  const [gx, gs, gz] = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) => tf.sum(tf.mul(fakeQuantWithGrad(a, b, c, -8, 7), a)))([x, s, z]);
  assert.deepEqual(gs.shape, []);
  assert.deepEqual(gz.shape, []);
  assert.equal(gx.shape[0], 500);
});

test('a conv-net training step: loss and all gradients match cpu', { skip }, async () => {
  const r = rng(81);
  const B = 4, H = 14, W = 14, C = 3, NC = 10;
  const v = {
    x: randArray(r, B * H * W * C), w1: randArray(r, 3 * 3 * C * 16, -0.4, 0.4), g1: randArray(r, 16, 0.5, 1.5),
    b1: randArray(r, 16, -0.1, 0.1), wd: randArray(r, 3 * 3 * 16, -0.4, 0.4), w2: randArray(r, 3 * 3 * 16 * 24, -0.2, 0.2),
    w3: randArray(r, 24 * 24, -0.2, 0.2), wf: randArray(r, 24 * NC, -0.3, 0.3), bf: randArray(r, NC, -0.1, 0.1),
  };
  const labels = Int32Array.from({ length: B }, (_, i) => (i * 7) % NC);
  await close('training step', () => {
    const x = tf.tensor4d(v.x, [B, H, W, C]);
    const y = tf.oneHot(tf.tensor1d(labels, 'int32'), NC);
    const params = [tf.tensor4d(v.w1, [3, 3, C, 16]), tf.tensor1d(v.g1), tf.tensor1d(v.b1), tf.tensor4d(v.wd, [3, 3, 16, 1]),
      tf.tensor4d(v.w2, [3, 3, 16, 24]), tf.tensor4d(v.w3, [1, 1, 24, 24]), tf.tensor2d(v.wf, [24, NC]), tf.tensor1d(v.bf)];
    const f = (...p: tf.Tensor[]) => {
      let h: tf.Tensor = tf.conv2d(x, p[0] as tf.Tensor4D, 1, 'same');
      const { mean, variance } = tf.moments(h, [0, 1, 2]);
      h = tf.relu(tf.batchNorm(h, mean, variance, p[2] as tf.Tensor1D, p[1] as tf.Tensor1D, 1e-5));
      h = tf.maxPool(h as tf.Tensor4D, 2, 2, 'valid');
      h = tf.depthwiseConv2d(h as tf.Tensor4D, p[3] as tf.Tensor4D, 1, 'same');
      h = tf.relu(tf.conv2d(h as tf.Tensor4D, p[4] as tf.Tensor4D, 2, 'same'));
      h = tf.add(h, tf.conv2d(h as tf.Tensor4D, p[5] as tf.Tensor4D, 1, 'valid')); // residual 1x1
      h = tf.mean(h, [1, 2]);
      const logits = tf.add(tf.matMul(h as tf.Tensor2D, p[6] as tf.Tensor2D), p[7]);
      return tf.losses.softmaxCrossEntropy(y, logits) as tf.Scalar;
    };
    const { value, grads } = tf.valueAndGrads(f)(params);
    return [value, ...grads];
  });
});
