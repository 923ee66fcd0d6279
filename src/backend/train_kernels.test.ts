// The native optimizer kernels give the same bits as their tfjs-op reference, over a few steps and every option.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, nativeLoadError } from './index.js';
import { nativeAddon } from './native_backend.js';
import { randArray, rng } from './test_util.js';
import { fakeQuantGradKernel, fakeQuantSteGradKernel } from './fakequant_kernels.js';
import { batchNormTrain } from './batchnorm_kernels.js';
import { adamScalars, adamStepOps, adamSteps, addRelu, channelDiv, sgdStepOps, sgdSteps, type SgdScalars } from './train_kernels.js';

const active = await initBackend('native');
const skip = active !== 'qatkit-native' ? `native backend not available: ${nativeLoadError()}` : false;
const N = 70001; // more than one thread's share, and odd

function sameBits(a: tf.Tensor, b: tf.Tensor, what: string): void {
  const x = new Uint32Array((a.dataSync() as Float32Array).slice().buffer);
  const y = new Uint32Array((b.dataSync() as Float32Array).slice().buffer);
  assert.equal(x.length, y.length, what);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) assert.fail(`${what}[${i}]: ${a.dataSync()[i]} vs ${b.dataSync()[i]}`);
}

const SGD: SgdScalars[] = [
  { lr: 0.1, wd: 0, mu: 0, nesterov: false },
  { lr: 0.01, wd: 5e-4, mu: 0.9, nesterov: false },
  { lr: 0.03, wd: 1e-2, mu: 0.8, nesterov: true },
  { lr: 0.05, wd: 0, mu: 0.9, nesterov: false },
];

// several parameters in one call, each with its own size and weight decay (or Adam step)
const SIZES = [N, 7, 1];

test('QatSgdStep equals the tfjs-op update bit for bit, all parameters in one call', { skip }, () => {
  assert.ok(tf.getKernel('QatSgdStep', tf.getBackend()), 'the native backend registers QatSgdStep');
  const r = rng(7);
  for (const s of SGD) {
    tf.tidy(() => {
      const scalars = SIZES.map((_, i) => ({ ...s, wd: s.wd * i }));
      let pk = SIZES.map((n) => tf.tensor(randArray(r, n, -2, 2))), pr = pk;
      let bk = SIZES.map((n) => (s.mu ? tf.zeros([n]) : undefined)), br = bk;
      for (let step = 0; step < 3; step++) {
        const g = SIZES.map((n) => tf.tensor(randArray(r, n, -1, 1)));
        const k = sgdSteps(pk.map((p, i) => ({ p, g: g[i], buf: bk[i], s: scalars[i] })));
        const o = pr.map((p, i) => sgdStepOps(p, g[i], br[i], scalars[i]));
        [pk, bk, pr, br] = [k.map((x) => x.p), k.map((x) => x.buf), o.map((x) => x.p), o.map((x) => x.buf)];
      }
      SIZES.forEach((_, i) => {
        const what = `sgd ${JSON.stringify(scalars[i])}`;
        sameBits(pk[i], pr[i], `${what} p`);
        if (s.mu) sameBits(bk[i]!, br[i]!, `${what} buf`);
        else assert.equal(bk[i], undefined);
      });
    });
  }
});

test('QatAdamStep equals the tfjs-op update bit for bit (Adam, L2 Adam, AdamW), all parameters in one call', { skip }, () => {
  assert.ok(tf.getKernel('QatAdamStep', tf.getBackend()), 'the native backend registers QatAdamStep');
  const r = rng(8);
  for (const [wd, decoupled] of [[0, false], [1e-2, false], [1e-2, true]] as const) {
    tf.tidy(() => {
      let pk = SIZES.map((n) => tf.tensor(randArray(r, n, -2, 2))), pr = pk;
      let mk = SIZES.map((n) => tf.zeros([n])), mr = mk, vk = mk, vr = mk;
      for (let step = 1; step <= 3; step++) {
        const g = SIZES.map((n) => tf.tensor(randArray(r, n, -1, 1)));
        // parameter i lags i steps behind (PyTorch counts steps per parameter)
        const s = SIZES.map((_, i) => adamScalars({ lr: 1e-3, b1: 0.9, b2: 0.999, eps: 1e-8, wd: wd * (i + 1), decoupled, step: Math.max(1, step - i) }));
        const k = adamSteps(pk.map((p, i) => ({ p, g: g[i], m: mk[i], v: vk[i], s: s[i] })));
        const o = pr.map((p, i) => adamStepOps(p, g[i], mr[i], vr[i], s[i]));
        [pk, mk, vk] = [k.map((x) => x.p), k.map((x) => x.m), k.map((x) => x.v)];
        [pr, mr, vr] = [o.map((x) => x.p), o.map((x) => x.m), o.map((x) => x.v)];
      }
      SIZES.forEach((_, i) => {
        const what = `adam wd=${wd} decoupled=${decoupled} param ${i}`;
        sameBits(pk[i], pr[i], `${what} p`);
        sameBits(mk[i], mr[i], `${what} m`);
        sameBits(vk[i], vr[i], `${what} v`);
      });
    });
  }
});

test('channelDiv: QatChannelDiv is tf.div bit for bit; its gradient too, up to the order of the per-channel sum', { skip }, () => {
  const r = rng(9);
  for (const shape of [[32, 9, 9, 16], [3, 5, 7], [1000, 1]]) {
    tf.tidy(() => {
      const n = shape.reduce((a, b) => a * b, 1), c = shape[shape.length - 1];
      const x = tf.tensor(randArray(r, n, -3, 3), shape), s = tf.tensor(randArray(r, c, 0.2, 2)), dy = tf.tensor(randArray(r, n), shape);
      const f = (div: (a: tf.Tensor, b: tf.Tensor) => tf.Tensor) => tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(div(a, b), dy)));
      sameBits(channelDiv(x, s), tf.div(x, s), `y ${shape}`);
      const [gx, gs] = f(channelDiv)([x, s]);
      const [rx, rs] = f(tf.div)([x, s]);
      sameBits(gx, rx, `dx ${shape}`);
      const a = gs.dataSync(), b = rs.dataSync();
      b.forEach((v, i) => assert.ok(Math.abs(a[i] - v) <= 1e-5 * (Math.abs(v) + 1e-3), `ds[${i}] ${a[i]} vs ${v}`));
    });
  }
});

test('Relu gradient (QatReluGrad) equals tfjs\'s dy * step(x), NaN, -0 and Infinity included', { skip }, () => {
  assert.ok(tf.getKernel('QatReluGrad', tf.getBackend()), 'the native backend registers QatReluGrad');
  const r = rng(10);
  const xv = randArray(r, N), dv = randArray(r, N);
  xv.set([NaN, 0, -0, Infinity, -Infinity, 1e-40, -1e-40, 2, -2]);
  dv.set([1, -1, -2, 3, Infinity, -Infinity, NaN, -0, -5]);
  tf.tidy(() => {
    const x = tf.tensor(xv), dy = tf.tensor(dv);
    const got = tf.grad((a: tf.Tensor) => tf.relu(a))(x, dy);
    sameBits(got, tf.mul(dy, tf.cast(tf.step(x), 'float32')), 'relu dx');
  });
});

test('addRelu (QatAddRelu) equals relu(a + b) each way, bit for bit, NaN, -0 and Infinity included', { skip }, () => {
  assert.ok(tf.getKernel('QatAddRelu', tf.getBackend()), 'the native backend registers QatAddRelu');
  const r = rng(12);
  const av = randArray(r, N), bv = randArray(r, N), dv = randArray(r, N);
  av.set([NaN, 0, -0, Infinity, -Infinity, 1, -1, 2, 0]);
  bv.set([1, -0, -0, -Infinity, 1, -1, 1, -3, NaN]);
  dv.set([1, -1, -2, 3, Infinity, -Infinity, NaN, -0, -5]);
  tf.tidy(() => {
    const a = tf.tensor(av), b = tf.tensor(bv), dy = tf.tensor(dv);
    sameBits(addRelu(a, b), tf.relu(tf.add(a, b)), 'y');
    const got = tf.grads((x: tf.Tensor, y: tf.Tensor) => addRelu(x, y))([a, b], dy);
    const want = tf.grads((x: tf.Tensor, y: tf.Tensor) => tf.relu(tf.add(x, y)))([a, b], dy);
    sameBits(got[0], want[0], 'da');
    sameBits(got[1], want[1], 'db');
    // one input on the gradient's path, and both inputs one tensor (the tape adds the two gradients)
    sameBits(tf.grad((x: tf.Tensor) => addRelu(a, x))(b, dy), want[1], 'db alone');
    sameBits(tf.grad((x: tf.Tensor) => addRelu(x, x))(a, dy), tf.grad((x: tf.Tensor) => tf.relu(tf.add(x, x)))(a, dy), 'd(x + x)');
  });
});

test('batchNormTrain with relu equals relu(batchNormTrain) each way, bit for bit (zeros, -0, NaN, Infinity; every ISA)', { skip }, () => {
  const r = rng(13);
  const addon = nativeAddon();
  type Isa = 'generic' | 'avx2' | 'avx512';
  const best = addon.info().isa.replace('+fma', '') as Isa;
  // channels 1 to 33, one row, > 1024 rows; channel 0 of scale 0 and offset -0 gives +0 and -0 outputs (x above / below 0)
  const cases: number[][] = [[4, 7, 7, 6], [1, 5, 3, 33], [1, 16], [3, 2, 2, 3], [2, 33, 20, 33], [1100, 16], [5, 17, 19, 6]];
  try {
    for (const isa of (['generic', 'avx2', 'avx512'] as const).filter((i) => addon.setIsa(i).startsWith(i))) {
      for (const shape of cases) {
        const n = tf.util.sizeFromShape(shape), c = shape[shape.length - 1];
        const xv = randArray(r, n, -2, 3), dv = randArray(r, n), sv = randArray(r, c, 0.5, 1.5), ov = randArray(r, c, -1, 1);
        sv[0] = 0;
        ov[0] = -0;
        for (let i = 1; i < n; i += 97) dv[i] = [Infinity, -Infinity, NaN, -0, 0][i % 5]; // upstream gradients in masked places
        if (c > 2 && n > c) xv[2] = NaN; // a NaN channel: NaN statistics and outputs
        tf.tidy(() => {
          const x = tf.tensor(xv, shape), dy = tf.tensor(dv, shape), s = tf.tensor1d(sv), o = tf.tensor1d(ov);
          const what = `${isa} [${shape}]`;
          const fused = (a: tf.Tensor, b: tf.Tensor, cc: tf.Tensor) => batchNormTrain(a, b, cc, 1e-3, true).y;
          const unfused = (a: tf.Tensor, b: tf.Tensor, cc: tf.Tensor) => tf.relu(batchNormTrain(a, b, cc, 1e-3).y);
          sameBits(fused(x, s, o), unfused(x, s, o), `${what} y`);
          const got = tf.grads(fused)([x, s, o], dy), want = tf.grads(unfused)([x, s, o], dy);
          ['dx', 'dscale', 'doffset'].forEach((d, i) => sameBits(got[i], want[i], `${what} ${d}`));
        });
      }
    }
  } finally {
    addon.setIsa(best);
  }
});

test('QatFakeQuantSteGrad gives QatFakeQuantGrad\'s dx bit for bit (ties, clamping, per tensor and per channel)', { skip }, () => {
  const r = rng(11);
  const shape = [5, 7, 9, 12];
  const n = 5 * 7 * 9 * 12;
  const x = randArray(r, n, -4, 4);
  for (let i = 0; i < n; i += 3) x[i] = (Math.round(x[i] * 10) + 0.5) / 10; // ties at scale 0.1
  tf.tidy(() => {
    const xs = tf.tensor(x, shape), dy = tf.tensor(randArray(r, n), shape);
    for (const [axis, c] of [[-1, 1], [3, 12], [0, 5]]) {
      const s = tf.tensor(Float32Array.from({ length: c }, (_, i) => 0.1 * (1 + (i % 3)))), z = tf.tensor(Float32Array.from({ length: c }, (_, i) => i % 4));
      const want = fakeQuantGradKernel(dy, xs, s, z, -8, 7, axis).dx;
      sameBits(fakeQuantSteGradKernel(dy, xs, s, z, -8, 7, axis), want, `axis ${axis}`);
    }
  });
});
