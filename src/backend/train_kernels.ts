/**
 * Training-step kernels of the native backend that stand for chains of tfjs ops, with the tfjs-op path elsewhere:
 *
 *   QatSgdStep        {p0, g0, buf0?, p1, ...} {lr, mu, nesterov, wd: [per param]} -> [p0', buf0', p1', ...] (no buf
 *                     when mu = 0): every parameter of a step in one call
 *   QatAdamStep       {p0, g0, m0, v0, p1, ...} {s: AdamScalars[per param]}       -> [p0', m0', v0', p1', ...]
 *   QatChannelDiv     {x, s}                                -> x / s (s: [C], the last axis of x)
 *   QatChannelDivGrad {dy, x, s}                            -> [dy / s, -sum(dy*x) / s^2 per channel]
 *   QatReluGrad       {dy, x}                               -> dy * step(x)
 *   QatAddRelu        {a, b}                                -> relu(a + b) (a, b of one shape; gradient below)
 *   QatFoldWeight     {w, gamma, variance} {eps}            -> [w * sf per w's axis 0, sf = gamma / sqrt(variance + eps)]
 *   QatFoldWeightGrad {dy, dsf, w, sf, variance} {eps}      -> [dy * sf, (dsf + sum(dy * w)) / sqrt(variance + eps)]
 *
 * The kernels (native/train_ops.cc) do, per element, the float32 operations of the tfjs-op path in the same order,
 * so both give the same bits, except that QatChannelDivGrad's per-channel sum adds in another order (float
 * reassociation, as any two reductions). Composed from tfjs ops an SGD-momentum update with weight decay takes six
 * kernel calls per parameter, Adam about a dozen (here one call updates all parameters); x / s and its gradient
 * eleven calls and four passes over x; ConvBn's weight folding five calls forward and six backward.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, TensorInfo } from '@tensorflow/tfjs-core';
import type { AddonBackend } from './native_addon.js';

/** QatSgdStep's attributes: the step's SGD hyper-parameters, with one weight decay per parameter. */
interface SgdAttrs {
  lr: number;
  wd: number[];
  mu: number;
  nesterov: boolean;
}

/** SGD hyper-parameters of one update; wd = 0 for a parameter without weight decay, mu = 0 without momentum. */
export interface SgdScalars {
  lr: number;
  wd: number;
  mu: number;
  nesterov: boolean;
}

/**
 * Adam's per-step constants, as torch.optim.Adam(W) computes them: decay = 1 - lr*wd for AdamW (1 otherwise),
 * wd the L2 factor added to the gradient (Adam; 0 otherwise), stepSize = lr / (1 - b1^t), bc2Sqrt = sqrt(1 - b2^t).
 */
export interface AdamScalars {
  decay: number;
  wd: number;
  oneMinusB1: number;
  b2: number;
  oneMinusB2: number;
  bc2Sqrt: number;
  eps: number;
  stepSize: number;
}

export function adamScalars(o: { lr: number; b1: number; b2: number; eps: number; wd: number; decoupled: boolean; step: number }): AdamScalars {
  return {
    decay: o.decoupled && o.wd !== 0 ? 1 - o.lr * o.wd : 1,
    wd: o.decoupled ? 0 : o.wd,
    oneMinusB1: 1 - o.b1,
    b2: o.b2,
    oneMinusB2: 1 - o.b2,
    bc2Sqrt: Math.sqrt(1 - o.b2 ** o.step),
    eps: o.eps,
    stepSize: o.lr / (1 - o.b1 ** o.step),
  };
}

const sgdKernel: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as AddonBackend;
  const { lr, wd, mu, nesterov } = attrs as unknown as SgdAttrs;
  return wd.flatMap((decay, i) => {
    const p = inputs[`p${i}`] as TensorInfo;
    const pv = be.f32(p);
    const pOut = be.alloc(pv.length);
    const bufOut = mu !== 0 ? be.alloc(pv.length) : null;
    be.addon.sgdStep(pv, be.f32(inputs[`g${i}`] as TensorInfo), bufOut ? be.f32(inputs[`buf${i}`] as TensorInfo) : null, pOut, bufOut, lr,
      decay, mu, nesterov);
    return [pOut, bufOut].filter((o) => o !== null).map((o) => be.out(p.shape.slice(), o));
  });
};

const adamKernel: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as AddonBackend;
  return (attrs as unknown as { s: AdamScalars[] }).s.flatMap((s, i) => {
    const [p, g, m, v] = ['p', 'g', 'm', 'v'].map((k) => inputs[`${k}${i}`] as TensorInfo);
    const pv = be.f32(p);
    const [pOut, mOut, vOut] = [0, 1, 2].map(() => be.alloc(pv.length));
    be.addon.adamStep(pv, be.f32(g), be.f32(m), be.f32(v), pOut, mOut, vOut, s.decay, s.wd, s.oneMinusB1, s.b2, s.oneMinusB2,
      s.bc2Sqrt, s.eps, s.stepSize);
    return [pOut, mOut, vOut].map((o) => be.out(p.shape.slice(), o));
  });
};

const lastAxis = (t: TensorInfo) => t.shape[t.shape.length - 1];

const channelDivKernel: KernelFunc = ({ inputs, backend }) => {
  const be = backend as unknown as AddonBackend;
  const { x, s } = inputs as Record<'x' | 's', TensorInfo>;
  const xv = be.f32(x);
  const y = be.alloc(xv.length);
  be.addon.channelDiv(xv, be.f32(s), y, lastAxis(x));
  return be.out(x.shape.slice(), y);
};

const channelDivGradKernel: KernelFunc = ({ inputs, backend }) => {
  const be = backend as unknown as AddonBackend;
  const { dy, x, s } = inputs as Record<'dy' | 'x' | 's', TensorInfo>;
  const xv = be.f32(x);
  const dx = be.alloc(xv.length), ds = new Float32Array(lastAxis(x));
  be.addon.channelDivGrad(be.f32(dy), xv, be.f32(s), dx, ds, lastAxis(x));
  return [be.out(x.shape.slice(), dx), be.out(s.shape.slice(), ds)];
};

const reluGradKernel: KernelFunc = ({ inputs, backend }) => {
  const be = backend as unknown as AddonBackend;
  const { dy, x } = inputs as Record<'dy' | 'x', TensorInfo>;
  const xv = be.f32(x);
  const dx = be.alloc(xv.length);
  be.addon.reluGrad(be.f32(dy), xv, dx);
  return be.out(x.shape.slice(), dx);
};

const addReluKernel: KernelFunc = ({ inputs, backend }) => {
  const be = backend as unknown as AddonBackend;
  const { a, b } = inputs as Record<'a' | 'b', TensorInfo>;
  const av = be.f32(a);
  const y = be.alloc(av.length);
  be.addon.addRelu(av, be.f32(b), y);
  return be.out(a.shape.slice(), y);
};

/** gamma / sqrt(variance + eps) per channel, each operation rounded to float32 as tfjs's Add, Sqrt and RealDiv */
function rootsOf(be: AddonBackend, variance: TensorInfo, eps: number): Float32Array {
  const e = Math.fround(eps);
  return be.f32(variance).map((v) => Math.sqrt(Math.fround(v + e)));
}

const foldWeightKernel: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as AddonBackend;
  const { w, gamma, variance } = inputs as Record<'w' | 'gamma' | 'variance', TensorInfo>;
  const root = rootsOf(be, variance, (attrs as { eps: number }).eps);
  const sf = be.f32(gamma).map((g, o) => g / root[o]);
  const wv = be.f32(w);
  const y = be.alloc(wv.length);
  be.addon.foldWeight(wv, sf, y);
  return [be.out(w.shape.slice(), y), be.out(gamma.shape.slice(), sf)];
};

const foldWeightGradKernel: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as AddonBackend;
  const { dy, dsf, w, sf, variance } = inputs as Record<'dy' | 'dsf' | 'w' | 'sf' | 'variance', TensorInfo>;
  const root = rootsOf(be, variance, (attrs as { eps: number }).eps);
  const wv = be.f32(w);
  const dw = be.alloc(wv.length), dsw = new Float32Array(sf.shape[0]);
  be.addon.foldWeightGrad(be.f32(dy), wv, be.f32(sf), dw, dsw);
  // sf's two gradients summed as the tape sums them (one float addition: the order of its operands does not matter)
  const d = be.f32(dsf);
  const dgamma = dsw.map((v, o) => Math.fround(d[o] + v) / root[o]);
  return [be.out(w.shape.slice(), dw), be.out(sf.shape.slice(), dgamma)];
};

export function trainKernelConfigs(backendName: string): KernelConfig[] {
  return [
    { kernelName: 'QatSgdStep', backendName, kernelFunc: sgdKernel },
    { kernelName: 'QatAdamStep', backendName, kernelFunc: adamKernel },
    { kernelName: 'QatChannelDiv', backendName, kernelFunc: channelDivKernel },
    { kernelName: 'QatChannelDivGrad', backendName, kernelFunc: channelDivGradKernel },
    { kernelName: 'QatReluGrad', backendName, kernelFunc: reluGradKernel },
    { kernelName: 'QatAddRelu', backendName, kernelFunc: addReluKernel },
    { kernelName: 'QatFoldWeight', backendName, kernelFunc: foldWeightKernel },
    { kernelName: 'QatFoldWeightGrad', backendName, kernelFunc: foldWeightGradKernel },
  ];
}

const hasKernel = (name: string) => tf.getKernel(name, tf.getBackend()) != null;

/** The SGD update composed from tfjs ops (any backend; the reference the kernel matches). */
export function sgdStepOps(p: tf.Tensor, g: tf.Tensor, buf: tf.Tensor | undefined, s: SgdScalars): { p: tf.Tensor; buf?: tf.Tensor } {
  return tf.tidy(() => {
    let d = g;
    if (s.wd !== 0) d = tf.add(d, tf.mul(p, s.wd));
    let nb: tf.Tensor | undefined;
    if (s.mu !== 0) {
      // buf = mu*buf + d; a zero buffer makes the first step buf = d, as PyTorch's clone(d)
      nb = tf.add(tf.mul(buf!, s.mu), d);
      d = s.nesterov ? tf.add(d, tf.mul(nb, s.mu)) : nb;
    }
    return { p: tf.sub(p, tf.mul(d, s.lr)), buf: nb };
  });
}

/** One parameter's SGD update: its tensors and its scalars; buf is the momentum buffer (needed when mu != 0). */
export interface SgdParam {
  p: tf.Tensor;
  g: tf.Tensor;
  buf?: tf.Tensor;
  s: SgdScalars;
}

const allF32 = (ts: (tf.Tensor | undefined)[]) => ts.every((t) => !t || t.dtype === 'float32');

/**
 * SGD updates (torch.optim.SGD) of several parameters sharing lr, mu and nesterov (each its own weight decay), in
 * one kernel call where the backend has QatSgdStep. New tensors out, in order.
 */
export function sgdSteps(items: SgdParam[]): { p: tf.Tensor; buf?: tf.Tensor }[] {
  for (const { buf, s } of items) if (s.mu !== 0 && !buf) throw new Error('sgdSteps: momentum needs a buffer');
  const { lr, mu, nesterov } = items[0]?.s ?? { lr: 0, mu: 0, nesterov: false };
  const shared = items.every(({ s }) => s.lr === lr && s.mu === mu && s.nesterov === nesterov);
  if (!items.length || !shared || !hasKernel('QatSgdStep') || !items.every(({ p, g, buf }) => allF32([p, g, buf])))
    return items.map(({ p, g, buf, s }) => sgdStepOps(p, g, buf, s));
  const inputs: tf.NamedTensorMap = {};
  items.forEach(({ p, g, buf }, i) => {
    inputs[`p${i}`] = p;
    inputs[`g${i}`] = g;
    if (mu !== 0) inputs[`buf${i}`] = buf!;
  });
  const attrs: SgdAttrs = { lr, mu, nesterov, wd: items.map(({ s }) => s.wd) };
  const outs = tf.engine().runKernel('QatSgdStep', inputs, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
  const k = mu !== 0 ? 2 : 1;
  return items.map((_, i) => ({ p: outs[i * k], buf: mu !== 0 ? outs[i * k + 1] : undefined }));
}

/** The Adam update composed from tfjs ops (any backend; the reference the kernel matches). */
export function adamStepOps(p: tf.Tensor, g: tf.Tensor, m: tf.Tensor, v: tf.Tensor, s: AdamScalars): { p: tf.Tensor; m: tf.Tensor; v: tf.Tensor } {
  return tf.tidy(() => {
    const gw = s.wd !== 0 ? tf.add(g, tf.mul(p, s.wd)) : g;
    const w = s.decay !== 1 ? tf.mul(p, s.decay) : p;
    const m1 = tf.add(m, tf.mul(tf.sub(gw, m), s.oneMinusB1)); // torch: exp_avg.lerp_(grad, 1 - beta1)
    const v1 = tf.add(tf.mul(v, s.b2), tf.mul(tf.mul(gw, gw), s.oneMinusB2));
    const denom = tf.add(tf.div(tf.sqrt(v1), s.bc2Sqrt), s.eps);
    return { p: tf.sub(w, tf.mul(tf.div(m1, denom), s.stepSize)), m: m1, v: v1 };
  });
}

/** One parameter's Adam update: its tensors (moments m, v) and its scalars. */
export interface AdamParam {
  p: tf.Tensor;
  g: tf.Tensor;
  m: tf.Tensor;
  v: tf.Tensor;
  s: AdamScalars;
}

/** Adam / AdamW updates of several parameters in one kernel call where the backend has QatAdamStep. New tensors out. */
export function adamSteps(items: AdamParam[]): { p: tf.Tensor; m: tf.Tensor; v: tf.Tensor }[] {
  if (!items.length || !hasKernel('QatAdamStep') || !items.every(({ p, g, m, v }) => allF32([p, g, m, v])))
    return items.map(({ p, g, m, v, s }) => adamStepOps(p, g, m, v, s));
  const inputs: tf.NamedTensorMap = {};
  items.forEach((t, i) => {
    for (const k of ['p', 'g', 'm', 'v'] as const) inputs[`${k}${i}`] = t[k];
  });
  const outs = tf.engine().runKernel('QatAdamStep', inputs, { s: items.map(({ s }) => s) } as unknown as tf.NamedAttrMap) as tf.Tensor[];
  return items.map((_, i) => ({ p: outs[3 * i], m: outs[3 * i + 1], v: outs[3 * i + 2] }));
}

/** x / s for s of shape [C] on the last axis of x, differentiable in both: one kernel each way where the backend has them. */
export function channelDiv(x: tf.Tensor, s: tf.Tensor): tf.Tensor {
  const fits = s.rank === 1 && x.rank > 0 && s.shape[0] === x.shape[x.rank - 1] && x.dtype === 'float32' && s.dtype === 'float32';
  if (!fits || !hasKernel('QatChannelDiv')) return tf.div(x, s);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xx, ss] = args as tf.Tensor[];
    (args[2] as tf.GradSaveFunc)([xx, ss]);
    return {
      value: tf.engine().runKernel('QatChannelDiv', { x: xx, s: ss }) as tf.Tensor,
      gradFunc: (dy: tf.Tensor, [sx, sd]: tf.Tensor[]) => tf.engine().runKernel('QatChannelDivGrad', { dy, x: sx, s: sd }) as tf.Tensor[],
    };
  });
  return f(x, s);
}

/** relu(a + b): one kernel each way where the backend has QatAddRelu and a, b have one shape (no broadcast). */
export function addRelu(a: tf.Tensor, b: tf.Tensor): tf.Tensor {
  const fits = a.dtype === 'float32' && b.dtype === 'float32' && a.shape.length === b.shape.length && a.shape.every((d, i) => d === b.shape[i]);
  if (!fits || !hasKernel('QatAddRelu')) return tf.relu(tf.add(a, b));
  return tf.engine().runKernel('QatAddRelu', { a, b }) as tf.Tensor;
}

/** tfjs's Relu gradient dy * step(x): one pass (QatReluGrad) where the backend has it, else its three kernels. */
function reluGrad(dy: tf.Tensor, x: tf.Tensor): tf.Tensor {
  if (hasKernel('QatReluGrad') && x.dtype === 'float32' && dy.dtype === 'float32') return tf.engine().runKernel('QatReluGrad', { dy, x }) as tf.Tensor;
  return tf.mul(dy, tf.cast(tf.step(x), 'float32'));
}

/** gamma / sqrt(variance + eps), differentiable in gamma (the running variance is a buffer): dgamma = dsf / root. */
export function bnScaleFactor(gamma: tf.Tensor, variance: tf.Tensor, eps: number): tf.Tensor {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const root = tf.sqrt(tf.add(variance, eps));
    (args[1] as tf.GradSaveFunc)([root]);
    return { value: tf.div(args[0] as tf.Tensor, root), gradFunc: (dy: tf.Tensor, [r]: tf.Tensor[]) => [tf.div(dy, r)] };
  });
  return f(gamma);
}

/** w [O, ...] times sf [O] per output channel: dw = dy * sf, dsf = sum(dy * w) over the other axes. */
export function foldWeight(w: tf.Tensor, sf: tf.Tensor): tf.Tensor {
  const shape = w.shape.map((d, i) => (i === 0 ? -1 : 1));
  const axes = w.shape.map((_, i) => i).slice(1);
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [ww, s] = args as tf.Tensor[];
    (args[2] as tf.GradSaveFunc)([ww, s]);
    return {
      value: tf.mul(ww, tf.reshape(s, shape)),
      gradFunc: (dy: tf.Tensor, [sw, ss]: tf.Tensor[]) => [tf.mul(dy, tf.reshape(ss, shape)), tf.sum(tf.mul(dy, sw), axes)],
    };
  });
  return f(w, sf);
}

/**
 * ConvBn's BN folding (the scale factor from the running variance, as PyTorch's approximate ConvBn forward): sf =
 * gamma / sqrt(variance + eps) and w * sf per output channel (w's axis 0), differentiable in w and gamma. One kernel
 * each way where the backend has QatFoldWeight, else bnScaleFactor and foldWeight; same values and gradients.
 */
export function foldConvBnWeight(w: tf.Tensor, gamma: tf.Tensor, variance: tf.Tensor, eps: number): { w: tf.Tensor; sf: tf.Tensor } {
  const fits = [w, gamma, variance].every((t) => t.dtype === 'float32') && gamma.rank === 1 && gamma.shape[0] === w.shape[0] && variance.size === gamma.size;
  if (!fits || !hasKernel('QatFoldWeight')) {
    const sf = bnScaleFactor(gamma, variance, eps);
    return { w: foldWeight(w, sf), sf };
  }
  const [wf, sf] = tf.engine().runKernel('QatFoldWeight', { w, gamma, variance }, { eps }) as tf.Tensor[];
  return { w: wf, sf };
}

/**
 * Registers the gradients of the training kernels: Relu's (replacing tfjs's dy * cast(step(x)), three kernel calls
 * and two passes, by reluGrad), QatAddRelu's and QatFoldWeight's. Call after tfjs's gradients are registered.
 */
export function registerTrainGradients(): void {
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy, [x]) => ({ x: () => reluGrad(dy as tf.Tensor, x) }),
  });
  tf.registerGradient({
    kernelName: 'QatAddRelu',
    // step(relu(s)) = step(s) for every s (-0 and NaN included): the output stands in for the sum
    outputsToSave: [true],
    gradFunc: (dy, [y]) => {
      // one pass for both inputs: the tape asks for a's gradient first (b's own tensor shares its data, since the tape
      // may add into one input's gradient and dispose it); b alone (a off the gradient's path) computes it
      let d: tf.Tensor | undefined;
      return { a: () => (d = reluGrad(dy as tf.Tensor, y)), b: () => (d ? tf.clone(d) : reluGrad(dy as tf.Tensor, y)) };
    },
  });
  tf.registerGradient({
    kernelName: 'QatFoldWeight',
    inputsToSave: ['w', 'variance'],
    outputsToSave: [false, true],
    gradFunc: (dys, [w, variance, sf], attrs) => {
      const [dy, dsf] = dys as tf.Tensor[];
      // both gradients from one call, made here in the backward pass's scope (not in one input's tidy)
      const [dw, dgamma] = tf.engine().runKernel('QatFoldWeightGrad', { dy, dsf, w, sf, variance }, attrs as unknown as tf.NamedAttrMap) as tf.Tensor[];
      // the running variance is a buffer (no gradient of its own, as in bnScaleFactor)
      return { w: () => dw, gamma: () => dgamma, variance: () => tf.zerosLike(variance) };
    },
  });
}
