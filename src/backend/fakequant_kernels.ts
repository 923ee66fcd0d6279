/**
 * Fake-quantization kernels of the native backend, and a small API over them.
 *
 * Kernels (registered for 'qatkit-native' only):
 *   QatFakeQuant        {x, scale, zeroPoint} {qmin, qmax, axis}   -> y
 *   QatFakeQuantObserve {x, scale, zeroPoint} {qmin, qmax, axis}   -> [y, min, max]  (fused observer)
 *   QatFakeQuantGrad    {dy, x, scale, zeroPoint} {qmin, qmax, axis} -> [dx, dScale, dZeroPoint]
 *   QatFakeQuantSteGrad {dy, x, scale, zeroPoint} {qmin, qmax, axis, relu} -> dx  (QatFakeQuantGrad's dx alone)
 *   QatReluFakeQuant    {x, scale, zeroPoint} {qmin, qmax, axis}   -> fake-quantized relu(x) (one pass)
 * relu (QatFakeQuantSteGrad): the backward of QatReluFakeQuant, as tfjs's chain Relu -> fake-quant gives it.
 *   QatMinMax           {x} {axis}                                 -> [min, max]
 * Semantics: q = clamp(roundHalfEven(x / scale) + zp, qmin, qmax), y = (q - zp) * scale.
 * Attr roundZeroPoint (all but QatMinMax and QatFakeQuantObserve): use clamp(roundHalfEven(zp), qmin, qmax) for zp, the zero
 * point as PyTorch's fake-quant ops take it (effectiveZeroPoint in src/quant/fakequant.ts).
 * axis = -1: per tensor (scale, zp of size 1); else per channel along `axis` (size x.shape[axis]).
 * Gradients: dx = dy inside [qmin, qmax] (straight-through), 0 outside; dScale is LSQ's
 * (round(x/s) - x/s inside, qmin - zp or qmax - zp outside) summed per channel, without
 * LSQ's gradient scale (multiply by 1/sqrt(numel * qmax) yourself); dZeroPoint = -scale * dy
 * outside the range, summed per channel. min/max are per channel (or of the whole tensor).
 *
 * Use hasFakeQuantKernel() to pick them, else a tfjs-op implementation.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, NamedAttrMap, TensorInfo } from '@tensorflow/tfjs-core';
import type { AddonBackend } from './native_addon.js';

function layout(shape: number[], axis: number): { nch: number; inner: number } {
  if (axis < 0 || shape.length === 0) return { nch: 1, inner: Math.max(1, shape.reduce((a, b) => a * b, 1)) };
  const ax = axis;
  if (ax >= shape.length) throw new Error(`qatkit fake-quant: axis ${axis} out of range for shape [${shape}]`);
  return { nch: shape[ax], inner: Math.max(1, shape.slice(ax + 1).reduce((a, b) => a * b, 1)) };
}

function params(be: AddonBackend, t: TensorInfo, nch: number, what: string): Float32Array {
  if (t.dtype !== 'float32') throw new Error(`qatkit fake-quant: ${what} must be float32`);
  const v = be.f32(t);
  if (v.length === nch) return v;
  if (v.length === 1) return new Float32Array(nch).fill(v[0]);
  throw new Error(`qatkit fake-quant: ${what} has ${v.length} values, expected ${nch}`);
}

function attrsOf(a: NamedAttrMap | undefined): { qmin: number; qmax: number; axis: number; roundZeroPoint: boolean } {
  const { qmin, qmax, axis, roundZeroPoint } = (a ?? {}) as { qmin: number; qmax: number; axis?: number; roundZeroPoint?: boolean };
  return { qmin, qmax, axis: axis ?? -1, roundZeroPoint: roundZeroPoint ?? false };
}

/** Round half to even (as std::nearbyint and tf.round). */
function roundHalfEven(v: number): number {
  const r = Math.round(v); // half up
  return r - v === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

function zeroPoints(be: AddonBackend, t: TensorInfo, nch: number, a: ReturnType<typeof attrsOf>): Float32Array {
  const z = params(be, t, nch, 'zeroPoint');
  return a.roundZeroPoint ? z.map((v) => Math.min(Math.max(roundHalfEven(v), a.qmin), a.qmax)) : z;
}

function fq(observe: boolean): KernelFunc {
  return ({ inputs, backend, attrs }) => {
    const be = backend as unknown as AddonBackend;
    const { x, scale, zeroPoint } = inputs as { x: TensorInfo; scale: TensorInfo; zeroPoint: TensorInfo };
    const a = attrsOf(attrs);
    const { qmin, qmax, axis } = a;
    const { nch, inner } = layout(x.shape, axis);
    const xv = be.f32(x);
    const y = be.alloc(xv.length);
    const mn = observe ? new Float32Array(nch) : null, mx = observe ? new Float32Array(nch) : null;
    be.addon.fakeQuant(xv, y, params(be, scale, nch, 'scale'), zeroPoints(be, zeroPoint, nch, a), nch, inner, qmin, qmax, mn, mx);
    const yi = be.out(x.shape.slice(), y);
    if (!observe) return yi;
    const ps = axis < 0 ? [] : [nch];
    return [yi, be.out(ps, mn!), be.out(ps, mx!)];
  };
}

const fqGrad: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as AddonBackend;
  const { dy, x, scale, zeroPoint } = inputs as { dy: TensorInfo; x: TensorInfo; scale: TensorInfo; zeroPoint: TensorInfo };
  const a = attrsOf(attrs);
  const { qmin, qmax, axis } = a;
  const { nch, inner } = layout(x.shape, axis);
  const xv = be.f32(x);
  const dx = be.alloc(xv.length), ds = new Float32Array(nch), dz = new Float32Array(nch);
  be.addon.fakeQuantGrad(be.f32(dy), xv, dx, params(be, scale, nch, 'scale'), zeroPoints(be, zeroPoint, nch, a),
    nch, inner, qmin, qmax, ds, dz);
  return [be.out(x.shape.slice(), dx), be.out(scale.shape.slice(), size1(ds, scale)), be.out(zeroPoint.shape.slice(), size1(dz, zeroPoint))];
};

const fqSteGrad: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as AddonBackend;
  const { dy, x, scale, zeroPoint } = inputs as { dy: TensorInfo; x: TensorInfo; scale: TensorInfo; zeroPoint: TensorInfo };
  const a = attrsOf(attrs);
  const { nch, inner } = layout(x.shape, a.axis);
  const xv = be.f32(x);
  const dx = be.alloc(xv.length);
  be.addon.fakeQuantSteGrad(be.f32(dy), xv, dx, params(be, scale, nch, 'scale'), zeroPoints(be, zeroPoint, nch, a), nch, inner,
    a.qmin, a.qmax, (attrs as { relu?: boolean }).relu ?? false);
  return be.out(x.shape.slice(), dx);
};

const reluFq: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as AddonBackend;
  const { x, scale, zeroPoint } = inputs as { x: TensorInfo; scale: TensorInfo; zeroPoint: TensorInfo };
  const a = attrsOf(attrs);
  const { nch, inner } = layout(x.shape, a.axis);
  const xv = be.f32(x);
  const y = be.alloc(xv.length);
  be.addon.reluFakeQuant(xv, y, params(be, scale, nch, 'scale'), zeroPoints(be, zeroPoint, nch, a), nch, inner, a.qmin, a.qmax);
  return be.out(x.shape.slice(), y);
};

// Gradients take the parameter's own shape (a per-tensor scale may be [] or [1]).
function size1(v: Float32Array, t: TensorInfo): Float32Array {
  const n = t.shape.reduce((a, b) => a * b, 1);
  return n === v.length ? v : Float32Array.from({ length: n }, (_, i) => v[i % v.length]);
}

const minMax: KernelFunc = ({ inputs, backend, attrs }) => {
  const be = backend as unknown as AddonBackend;
  const x = inputs.x as TensorInfo;
  const axis = (attrs as { axis?: number }).axis ?? -1;
  const { nch, inner } = layout(x.shape, axis);
  const mn = new Float32Array(nch), mx = new Float32Array(nch);
  be.addon.minMax(be.f32(x), nch, inner, mn, mx);
  const ps = axis < 0 ? [] : [nch];
  return [be.out(ps, mn), be.out(ps, mx)];
};

export function fakeQuantKernelConfigs(backendName: string): KernelConfig[] {
  return [
    { kernelName: 'QatFakeQuant', backendName, kernelFunc: fq(false) },
    { kernelName: 'QatFakeQuantObserve', backendName, kernelFunc: fq(true) },
    { kernelName: 'QatFakeQuantGrad', backendName, kernelFunc: fqGrad },
    { kernelName: 'QatFakeQuantSteGrad', backendName, kernelFunc: fqSteGrad },
    { kernelName: 'QatReluFakeQuant', backendName, kernelFunc: reluFq },
    { kernelName: 'QatMinMax', backendName, kernelFunc: minMax },
  ];
}

/** True when the active backend has the native fake-quant kernels. */
export function hasFakeQuantKernel(): boolean {
  return tf.getKernel('QatFakeQuant', tf.getBackend()) != null;
}

const f32 = (t: tf.Tensor) => (t.dtype === 'float32' ? t : tf.cast(t, 'float32'));
const norm = (axis: number, rank: number) => (axis < 0 && axis !== -1 ? axis + rank : axis);

/** y = fake-quantized x, or of relu(x) (no gradient recorded: see fakeQuantWithGrad). */
export function fakeQuantKernel(x: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor, qmin: number, qmax: number, axis = -1,
  roundZeroPoint = false, relu = false): tf.Tensor {
  return tf.tidy(() => tf.engine().runKernel(relu ? 'QatReluFakeQuant' : 'QatFakeQuant', { x, scale: f32(scale), zeroPoint: f32(zeroPoint) },
    { qmin, qmax, axis: norm(axis, x.rank), roundZeroPoint }) as tf.Tensor);
}

/** Fake-quantizes x and observes its min/max (per tensor or per channel) in the same pass. */
export function fakeQuantObserveKernel(x: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor, qmin: number, qmax: number,
  axis = -1): { y: tf.Tensor; min: tf.Tensor; max: tf.Tensor } {
  const [y, min, max] = tf.tidy(() => tf.engine().runKernel('QatFakeQuantObserve',
    { x, scale: f32(scale), zeroPoint: f32(zeroPoint) }, { qmin, qmax, axis: norm(axis, x.rank) }) as tf.Tensor[]);
  return { y, min, max };
}

/** Backward of fake quantization: STE for x, LSQ-style sums for scale and zero point. */
export function fakeQuantGradKernel(dy: tf.Tensor, x: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor, qmin: number,
  qmax: number, axis = -1, roundZeroPoint = false): { dx: tf.Tensor; dScale: tf.Tensor; dZeroPoint: tf.Tensor } {
  const [dx, dScale, dZeroPoint] = tf.tidy(() => tf.engine().runKernel('QatFakeQuantGrad',
    { dy, x, scale: f32(scale), zeroPoint: f32(zeroPoint) }, { qmin, qmax, axis: norm(axis, x.rank), roundZeroPoint }) as tf.Tensor[]);
  return { dx, dScale, dZeroPoint };
}

/** Straight-through backward of fake quantization: dx = dy where x quantizes inside [qmin, qmax], else 0 (relu: of
 *  the fake quantization of relu(x)). */
export function fakeQuantSteGradKernel(dy: tf.Tensor, x: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor, qmin: number,
  qmax: number, axis = -1, roundZeroPoint = false, relu = false): tf.Tensor {
  return tf.tidy(() => tf.engine().runKernel('QatFakeQuantSteGrad', { dy, x, scale: f32(scale), zeroPoint: f32(zeroPoint) },
    { qmin, qmax, axis: norm(axis, x.rank), roundZeroPoint, relu }) as tf.Tensor);
}

/** Min and max of x, per tensor (axis -1) or per channel along axis. */
export function minMaxKernel(x: tf.Tensor, axis = -1): { min: tf.Tensor; max: tf.Tensor } {
  const [min, max] = tf.engine().runKernel('QatMinMax', { x }, { axis: norm(axis, x.rank) }) as tf.Tensor[];
  return { min, max };
}

/** Differentiable fake quantization on the native kernels (gradients for x, scale and zeroPoint). */
export function fakeQuantWithGrad(x: tf.Tensor, scale: tf.Tensor, zeroPoint: tf.Tensor, qmin: number, qmax: number,
  axis = -1): tf.Tensor {
  const f = tf.customGrad((...args: (tf.Tensor | tf.GradSaveFunc)[]) => {
    const [xx, s, z] = args as tf.Tensor[];
    (args[3] as tf.GradSaveFunc)([xx, s, z]);
    return {
      value: fakeQuantKernel(xx, s, z, qmin, qmax, axis),
      gradFunc: (dy: tf.Tensor, saved: tf.Tensor[]) => {
        const g = fakeQuantGradKernel(dy, saved[0], saved[1], saved[2], qmin, qmax, axis);
        return [g.dx, g.dScale, g.dZeroPoint];
      },
    };
  });
  return f(x, scale, f32(zeroPoint));
}
