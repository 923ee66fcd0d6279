// Gradient kernels that tfjs-backend-wasm 4.22 lacks, expressed through kernels it has.
// Missing in 4.22 (checked against getKernelsForBackend('cpu')): Conv2DBackpropFilter,
// DepthwiseConv2dNativeBackpropFilter, DepthwiseConv2dNativeBackpropInput, UnsortedSegmentSum
// (gather's gradient). MaxPoolGrad, AvgPoolGrad, Conv2DBackpropInput exist; batch-norm's
// gradient is built from plain ops.
import * as tf from '@tensorflow/tfjs-core';
import type { KernelConfig, KernelFunc, TensorInfo, NamedAttrMap } from '@tensorflow/tfjs-core';

type Pads = [number, number, number, number]; // top, bottom, left, right; negative = crop

/** wasm's Sum/Mean over at least this many elements run in two stages (see wrapStagedReduction). */
const STAGED_REDUCE_MIN = 4096;

/** Pad (or crop, for negative amounts) the two spatial dims of an NHWC tensor. */
function padCrop(x: tf.Tensor4D, [t, b, l, r]: Pads): tf.Tensor4D {
  const [, h, w] = x.shape;
  if (t < 0 || b < 0 || l < 0 || r < 0) {
    const ct = Math.max(0, -t), cb = Math.max(0, -b), cl = Math.max(0, -l), cr = Math.max(0, -r);
    x = tf.slice(x, [0, ct, cl, 0], [-1, h - ct - cb, w - cl - cr, -1]);
  }
  const pt = Math.max(0, t), pb = Math.max(0, b), pl = Math.max(0, l), pr = Math.max(0, r);
  if (pt + pb + pl + pr === 0) return x;
  return tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]]);
}

function pair(v: number | [number, number] | undefined): [number, number] {
  if (v == null) return [1, 1];
  return typeof v === 'number' ? [v, v] : [v[0], v[1]];
}

function assertStridesOrDilations(op: string, s: [number, number], d: [number, number]): void {
  if ((s[0] > 1 || s[1] > 1) && (d[0] > 1 || d[1] > 1)) {
    throw new Error(`qatkit wasm ${op}: strides ${s} together with dilations ${d} are not supported ` +
      '(tfjs forbids both > 1 in the forward op as well)');
  }
}

function toNHWC(x: tf.Tensor4D, fmt: string | undefined): tf.Tensor4D {
  return fmt === 'NCHW' ? tf.transpose(x, [0, 2, 3, 1]) : x;
}
function fromNHWC(x: tf.Tensor4D, fmt: string | undefined): tf.Tensor4D {
  return fmt === 'NCHW' ? tf.transpose(x, [0, 3, 1, 2]) : x;
}

// Kernel inputs arrive as TensorInfos; wrapping one in a Tensor bumps its refcount, so
// wrappers are only made inside a tidy, which releases them again.
function tensorOf(t: TensorInfo): tf.Tensor {
  return t instanceof tf.Tensor ? t : tf.engine().makeTensorFromTensorInfo(t);
}

/** dW[kh,kw,ci,co] = sum_{b,oh,ow} x[b, oh*s + kh*d - pad, ., ci] * dy[b,oh,ow,co]:
 *  a convolution whose "batch" is ci, "channels" is b and "filter" is dy; the original
 *  stride becomes the dilation and vice versa. */
export function conv2DBackpropFilterViaConv(
  x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: [number, number, number, number],
  strides: number | [number, number], pad: unknown, dilations: number | [number, number] | undefined,
  dimRoundingMode: unknown, dataFormat?: string,
): tf.Tensor4D {
  return tf.tidy(() => {
    const s = pair(strides), d = pair(dilations);
    assertStridesOrDilations('Conv2DBackpropFilter', s, d);
    const xh = toNHWC(x, dataFormat), dyh = toNHWC(dy, dataFormat);
    const info = tf.backend_util.computeConv2DInfo(xh.shape, filterShape, s, d, pad as 'same',
      dimRoundingMode as 'round', false, 'channelsLast');
    const [kh, kw] = filterShape;
    const { top, left } = info.padInfo;
    const needH = (kh - 1) * d[0] + (info.outHeight - 1) * s[0] + 1;
    const needW = (kw - 1) * d[1] + (info.outWidth - 1) * s[1] + 1;
    const xp = padCrop(xh, [top, needH - info.inHeight - top, left, needW - info.inWidth - left]);
    const xt = tf.transpose(xp, [3, 1, 2, 0]);          // [ci, needH, needW, b]
    const ft = tf.transpose(dyh, [1, 2, 0, 3]);         // [oh, ow, b, co]
    // XNNPACK sums the whole b*oh*ow reduction in one float32 chain (LeNet-5's conv1 at batch 64: 1.6e-4 from the
    // float64 sum). Splitting the batch into slices would fix that but runs this kernel 4x slower; the loss stays
    // within 1e-6 of native's over 10 steps without it (test/backend_parity.test.ts).
    const r = tf.conv2d(xt as tf.Tensor4D, ft as tf.Tensor4D, d, 'valid', 'NHWC', s); // [ci, kh, kw, co]
    return tf.transpose(r, [1, 2, 0, 3]) as tf.Tensor4D;
  });
}

/** Depthwise filter gradient: batch goes into the channel axis (b*C + c), dy becomes a
 *  per-channel filter, then the batch is summed out. */
export function depthwiseBackpropFilterViaConv(
  x: tf.Tensor4D, dy: tf.Tensor4D, filterShape: [number, number, number, number],
  strides: number | [number, number], pad: unknown, dilations: number | [number, number] | undefined,
  dimRoundingMode: unknown,
): tf.Tensor4D {
  return tf.tidy(() => {
    const s = pair(strides), d = pair(dilations);
    assertStridesOrDilations('DepthwiseConv2dNativeBackpropFilter', s, d);
    const info = tf.backend_util.computeConv2DInfo(x.shape, filterShape, s, d, pad as 'same',
      dimRoundingMode as 'round', true);
    const [kh, kw, c, m] = filterShape;
    const b = x.shape[0];
    const { top, left } = info.padInfo;
    const needH = (kh - 1) * d[0] + (info.outHeight - 1) * s[0] + 1;
    const needW = (kw - 1) * d[1] + (info.outWidth - 1) * s[1] + 1;
    const xp = padCrop(x, [top, needH - info.inHeight - top, left, needW - info.inWidth - left]);
    const xt = tf.reshape(tf.transpose(xp, [1, 2, 0, 3]), [1, needH, needW, b * c]) as tf.Tensor4D;
    const ft = tf.reshape(tf.transpose(dy, [1, 2, 0, 3]), [info.outHeight, info.outWidth, b * c, m]) as tf.Tensor4D;
    const r = tf.depthwiseConv2d(xt, ft, d, 'valid', 'NHWC', s);  // [1, kh, kw, b*c*m]
    return tf.sum(tf.reshape(r, [kh, kw, b, c, m]), 2) as tf.Tensor4D;
  });
}

/** Depthwise input gradient: dilate dy by the stride (zeros between rows/cols), pad it,
 *  correlate with the spatially flipped filter per channel, sum out the multiplier. */
export function depthwiseBackpropInputViaConv(
  inputShape: [number, number, number, number], dy: tf.Tensor4D, filter: tf.Tensor4D,
  strides: number | [number, number], pad: unknown, dilations: number | [number, number] | undefined,
  dimRoundingMode: unknown,
): tf.Tensor4D {
  return tf.tidy(() => {
    const s = pair(strides), d = pair(dilations);
    assertStridesOrDilations('DepthwiseConv2dNativeBackpropInput', s, d);
    const [kh, kw, c, m] = filter.shape;
    const info = tf.backend_util.computeConv2DInfo(inputShape, filter.shape, s, d, pad as 'same',
      dimRoundingMode as 'round', true);
    const [b, h, w] = inputShape;
    const oh = info.outHeight, ow = info.outWidth, cm = c * m;
    let dd: tf.Tensor4D = dy;
    if (s[0] > 1 || s[1] > 1) {
      const z = tf.pad(tf.reshape(dy, [b, oh, 1, ow, 1, cm]), [[0, 0], [0, 0], [0, s[0] - 1], [0, 0], [0, s[1] - 1], [0, 0]]);
      dd = tf.reshape(z, [b, oh * s[0], ow * s[1], cm]);
    }
    const pt = (kh - 1) * d[0] - info.padInfo.top, pl = (kw - 1) * d[1] - info.padInfo.left;
    const needH = h + (kh - 1) * d[0], needW = w + (kw - 1) * d[1];
    const dp = padCrop(dd, [pt, needH - dd.shape[1] - pt, pl, needW - dd.shape[2] - pl]);
    const fr = tf.reshape(tf.reverse(filter, [0, 1]), [kh, kw, cm, 1]) as tf.Tensor4D;
    const r = tf.depthwiseConv2d(dp, fr, 1, 'valid', 'NHWC', d); // [b, h, w, c*m]
    return (m === 1 ? r : tf.sum(tf.reshape(r, [b, h, w, c, m]), 4)) as tf.Tensor4D;
  });
}

const conv2DBackpropFilter: KernelFunc = ({ inputs, backend, attrs }) => {
  const a = attrs as NamedAttrMap & { strides: [number, number]; pad: unknown; dataFormat?: string;
    dimRoundingMode?: unknown; filterShape: [number, number, number, number] };
  void backend;
  return tf.tidy(() => conv2DBackpropFilterViaConv(tensorOf(inputs.x!) as tf.Tensor4D, tensorOf(inputs.dy!) as tf.Tensor4D,
    a.filterShape, a.strides, a.pad, 1, a.dimRoundingMode, a.dataFormat));
};

const depthwiseFilter: KernelFunc = ({ inputs, backend, attrs }) => {
  const a = attrs as NamedAttrMap & { strides: [number, number]; pad: unknown; dilations?: [number, number];
    dimRoundingMode?: unknown; filterShape: [number, number, number, number] };
  void backend;
  return tf.tidy(() => depthwiseBackpropFilterViaConv(tensorOf(inputs.x!) as tf.Tensor4D, tensorOf(inputs.dy!) as tf.Tensor4D,
    a.filterShape, a.strides, a.pad, a.dilations, a.dimRoundingMode));
};

const depthwiseInput: KernelFunc = ({ inputs, backend, attrs }) => {
  const a = attrs as NamedAttrMap & { strides: [number, number]; pad: unknown; dilations?: [number, number];
    dimRoundingMode?: unknown; inputShape: [number, number, number, number] };
  void backend;
  return tf.tidy(() => depthwiseBackpropInputViaConv(a.inputShape, tensorOf(inputs.dy!) as tf.Tensor4D,
    tensorOf(inputs.filter!) as tf.Tensor4D, a.strides, a.pad, a.dilations, a.dimRoundingMode));
};

/** Scatter-add rows of x into numSegments buckets; ids < 0 or >= numSegments are dropped (TF semantics). */
const unsortedSegmentSum: KernelFunc = ({ inputs, backend, attrs }) => {
  const { x, segmentIds } = inputs as { x: TensorInfo; segmentIds: TensorInfo };
  const numSegments = (attrs as { numSegments: number }).numSegments;
  const be = backend as tf.KernelBackend & { readSync(id: unknown): tf.backend_util.BackendValues };
  const xv = be.readSync(x.dataId) as Float32Array | Int32Array;
  const ids = be.readSync(segmentIds.dataId) as Int32Array;
  const n = tf.util.sizeFromShape(segmentIds.shape);
  const inner = n === 0 ? 0 : tf.util.sizeFromShape(x.shape) / n;
  const out = x.dtype === 'int32' ? new Int32Array(numSegments * inner) : new Float32Array(numSegments * inner);
  for (let i = 0; i < n; i++) {
    const sid = ids[i];
    if (sid < 0 || sid >= numSegments) continue;
    const o = sid * inner, xi = i * inner;
    for (let j = 0; j < inner; j++) out[o + j] += xv[xi + j];
  }
  const shape = [numSegments, ...x.shape.slice(segmentIds.shape.length)];
  return { dataId: be.write(out, shape, x.dtype), shape, dtype: x.dtype };
};

/** wasm's Conv2D/FusedConv2D (XNNPACK) return zeros when a stride exceeds a kernel dim >1
 *  (e.g. 3x1 kernel, strides [1,3]). Such a dim only reads the first k of every s rows, so
 *  we pad/crop x to out*s, keep those k rows per block and convolve with stride k instead. */
function strideExceedsKernel(s: [number, number], fh: number, fw: number): boolean {
  return fh * fw > 1 && (s[0] > fh || s[1] > fw);
}

function subsampleForStride(x: tf.Tensor4D, fh: number, fw: number, s: [number, number], pad: unknown,
  dimRoundingMode: unknown): { x: tf.Tensor4D; strides: [number, number] } {
  const info = tf.backend_util.computeConv2DInfo(x.shape, [fh, fw, x.shape[3], 1], s, 1, pad as 'same',
    dimRoundingMode as 'round', false, 'channelsLast');
  const oh = info.outHeight, ow = info.outWidth, { top, left } = info.padInfo;
  const fixH = s[0] > fh, fixW = s[1] > fw;
  const lh = fixH ? oh * s[0] : (oh - 1) * s[0] + fh, lw = fixW ? ow * s[1] : (ow - 1) * s[1] + fw;
  let t = padCrop(x, [top, lh - info.inHeight - top, left, lw - info.inWidth - left]);
  const b = x.shape[0], c = x.shape[3];
  if (fixH) t = tf.reshape(tf.slice(tf.reshape(t, [b, oh, s[0], lw, c]), 0, [b, oh, fh, lw, c]), [b, oh * fh, lw, c]);
  if (fixW) t = tf.reshape(tf.slice(tf.reshape(t, [b, t.shape[1], ow, s[1], c]), 0, [b, t.shape[1], ow, fw, c]), [b, t.shape[1], ow * fw, c]);
  return { x: t, strides: [fixH ? fh : s[0], fixW ? fw : s[1]] };
}

function wrapStridedConv(kernelName: string): KernelConfig | null {
  const orig = tf.getKernel(kernelName, 'wasm');
  if (orig == null) return null;
  const kernelFunc: KernelFunc = (args) => {
    const a = args.attrs as { strides: number | [number, number]; pad: unknown; dataFormat?: string; dimRoundingMode?: unknown };
    const s = pair(a.strides);
    const fshape = args.inputs.filter!.shape;
    if ((a.dataFormat ?? 'NHWC') !== 'NHWC' || !strideExceedsKernel(s, fshape[0], fshape[1])) return orig.kernelFunc(args);
    const t = tf.tidy(() => subsampleForStride(tensorOf(args.inputs.x!) as tf.Tensor4D, fshape[0], fshape[1], s, a.pad, a.dimRoundingMode));
    try {
      return orig.kernelFunc({ ...args, inputs: { ...args.inputs, x: t.x }, attrs: { ...args.attrs, strides: t.strides, pad: 'valid' } });
    } finally {
      t.x.dispose();
    }
  };
  return { ...orig, kernelFunc }; // keep setupFunc: it binds the wasm function
}

/** wasm's Sum and Mean add every reduced element into one float32 accumulator in sequence: over a batch-norm's
 *  N*H*W (36,864 values for LeNet-5's first layer at batch 64) the rounding error reaches ~1e-5 relative, and
 *  training on wasm drifts from the float64-accumulating cpu backend (and from ours) by 1e-4 within a few steps.
 *  Reducing over several axes, we first reduce the outermost reduced axis alone, then the others on the (much
 *  smaller) result: the same math (equal group sizes, also for Mean), a float32 chain of N and then one of H*W
 *  instead of N*H*W, and no more data movement than before (wasm transposes the reduced axes innermost either way). */
function wrapStagedReduction(kernelName: 'Sum' | 'Mean'): KernelConfig | null {
  const orig = tf.getKernel(kernelName, 'wasm');
  if (orig == null) return null;
  const kernelFunc: KernelFunc = (args) => {
    const x = args.inputs.x as TensorInfo;
    const { axis, keepDims } = args.attrs as { axis: number | number[]; keepDims: boolean };
    const axes = tf.util.parseAxisParam(axis, x.shape).slice().sort((a, b) => a - b);
    const size = axes.reduce((n, a) => n * x.shape[a], 1);
    if (axes.length < 2 || size < STAGED_REDUCE_MIN || x.dtype !== 'float32') return orig.kernelFunc(args);
    const outer = orig.kernelFunc({ ...args, attrs: { axis: [axes[0]], keepDims: true } }) as TensorInfo;
    const out = orig.kernelFunc({ ...args, inputs: { x: outer }, attrs: { axis: axes.slice(1), keepDims: true } }) as TensorInfo;
    (args.backend as tf.KernelBackend).disposeData(outer.dataId);
    // the backend's storage is flat: dropping the kept size-1 axes is a change of shape only
    if (!keepDims) out.shape = x.shape.filter((_, i) => !axes.includes(i));
    return out;
  };
  return { ...orig, kernelFunc };
}

export const wasmGradKernels: KernelConfig[] = [
  { kernelName: 'Conv2DBackpropFilter', backendName: 'wasm', kernelFunc: conv2DBackpropFilter },
  { kernelName: 'DepthwiseConv2dNativeBackpropFilter', backendName: 'wasm', kernelFunc: depthwiseFilter },
  { kernelName: 'DepthwiseConv2dNativeBackpropInput', backendName: 'wasm', kernelFunc: depthwiseInput },
  { kernelName: 'UnsortedSegmentSum', backendName: 'wasm', kernelFunc: unsortedSegmentSum },
];

let wrapped = false;

/** Registers the kernels above for 'wasm' unless wasm (a later tfjs) already has them,
 *  and wraps wasm's Conv2D/FusedConv2D to work around the stride > kernel bug. */
export function registerWasmGradKernels(): string[] {
  const added: string[] = [];
  if (!wrapped) {
    wrapped = true;
    for (const [name, wrap] of [['Conv2D', wrapStridedConv], ['FusedConv2D', wrapStridedConv], ['Sum', wrapStagedReduction],
      ['Mean', wrapStagedReduction]] as const) {
      const w = wrap(name as never);
      if (w) {
        tf.unregisterKernel(name, 'wasm');
        tf.registerKernel(w);
        added.push(name);
      }
    }
  }
  for (const k of wasmGradKernels) {
    if (tf.getKernel(k.kernelName, 'wasm') == null) {
      tf.registerKernel(k);
      added.push(k.kernelName);
    }
  }
  return added;
}
