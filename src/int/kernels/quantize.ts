// QuantizeLinear, DequantizeLinear (opsets 10..23 integer forms: per tensor, per axis, blocked) and
// DynamicQuantizeLinear, with ONNX Runtime's float32 arithmetic so results match it bit for bit.
import { type DType, type Node, type TensorData, GraphError, attrInt, elementCount } from '../../graph/ir.js';
import type { IntKernel, KernelContext } from '../registry.js';
import {
  f32ToF16, floatValues, intRange, normAxis, numArray, outputTensor, requireInput, rint,
} from '../tensor.js';
import { type IntArray, outRange } from './common.js';
import { intGemmProvider } from './gemm.js';

/** TensorProto.DataType codes of the integer types QuantizeLinear's output_dtype may name. */
const ONNX_INT_TYPES: Record<number, DType> = { 2: 'uint8', 3: 'int8', 4: 'uint16', 5: 'int16', 21: 'uint4', 22: 'int4' };

/**
 * Where each element of x finds its scale and zero point: index = o*oS + floor(c/block)*cS + i*iS over
 * x viewed as [outer, D (the axis), inner]. Covers per-tensor, per-axis (1-D of D) and blocked
 * (same rank as x, axis dim ceil(D/block_size)).
 */
interface ParamLayout { outer: number; D: number; inner: number; oS: number; cS: number; iS: number; block: number }

function paramLayout(node: Node, x: TensorData, scale: TensorData, zp: TensorData | undefined): ParamLayout {
  const rank = x.dims.length;
  const n = elementCount(scale.dims);
  if (zp && (zp.dims.length !== scale.dims.length || zp.dims.some((d, i) => d !== scale.dims[i])))
    throw new GraphError(`zero point shape [${zp.dims.join(', ')}] differs from scale shape [${scale.dims.join(', ')}]`, node);
  const blockSize = attrInt(node, 'block_size', 0);
  if (blockSize <= 0 && (scale.dims.length === 0 || n === 1) && scale.dims.length <= 1)
    return { outer: 1, D: 1, inner: elementCount(x.dims), oS: 0, cS: 0, iS: 0, block: 1 };
  const axis = normAxis(attrInt(node, 'axis', 1), rank, node);
  const outer = elementCount(x.dims.slice(0, axis));
  const D = x.dims[axis];
  const inner = elementCount(x.dims.slice(axis + 1));
  if (blockSize <= 0) {
    if (scale.dims.length !== 1 || scale.dims[0] !== D)
      throw new GraphError(`per-axis scale must be 1-D of ${D} (x dim ${axis}), got shape [${scale.dims.join(', ')}]`, node);
    return { outer, D, inner, oS: 0, cS: 1, iS: 0, block: 1 };
  }
  const Db = Math.ceil(D / blockSize);
  const ok = scale.dims.length === rank && scale.dims.every((d, i) => d === (i === axis ? Db : x.dims[i]));
  if (!ok)
    throw new GraphError(`blocked scale must have x's shape with dim ${axis} = ceil(${D}/${blockSize}) = ${Db}, got [${scale.dims.join(', ')}]`, node);
  return { outer, D, inner, oS: Db * inner, cS: inner, iS: 1, block: blockSize };
}

function quantizeLinear(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const x = requireInput(inputs, 0, node, 'x');
  const scaleT = requireInput(inputs, 1, node, 'y_scale');
  const zpT = inputs[2];
  let dtype: DType = 'uint8';
  if (zpT) dtype = zpT.dtype;
  else {
    const od = attrInt(node, 'output_dtype', 0);
    if (od) {
      const d = ONNX_INT_TYPES[od];
      if (!d) throw new GraphError(`output_dtype ${od} is not an integer type this engine quantizes to`, node);
      dtype = d;
    }
  }
  const { qmin, qmax } = outRange(dtype, ctx);
  const xs = floatValues(x, node, 'x');
  const s = floatValues(scaleT, node, 'y_scale');
  const z = zpT ? numArray(zpT, node, 'y_zero_point') : undefined;
  const L = paramLayout(node, x, scaleT, zpT);
  const out = outputTensor(dtype, x.dims);
  const y = out.data as IntArray;
  const quantize = intGemmProvider()?.quantize;
  // per tensor, float32 operands (a float64 scale divides in double)
  const perTensor = L.D === 1 && L.oS === 0 && L.iS === 0;
  if (quantize && perTensor && xs instanceof Float32Array && s instanceof Float32Array && (y instanceof Int8Array || y instanceof Uint8Array)) {
    quantize(xs, s[0], z ? z[0] : 0, qmin, qmax, y);
    return out;
  }
  let e = 0;
  for (let o = 0; o < L.outer; o++)
    for (let c = 0; c < L.D; c++) {
      const base = o * L.oS + Math.floor(c / L.block) * L.cS;
      for (let i = 0; i < L.inner; i++, e++) {
        const p = base + i * L.iS;
        const zp = z ? z[p] : 0;
        // float32 division, clamp (NaN to the low end, as MLAS), round half to even, add the zero point
        let v = Math.fround(xs[e] / s[p]);
        const lo = qmin - zp;
        const hi = qmax - zp;
        if (!(v >= lo)) v = lo;
        else if (v > hi) v = hi;
        y[e] = rint(v) + zp;
      }
    }
  return out;
}

function dequantizeLinear(inputs: ReadonlyArray<TensorData | undefined>, node: Node): TensorData {
  const x = requireInput(inputs, 0, node, 'x');
  const scaleT = requireInput(inputs, 1, node, 'x_scale');
  const zpT = inputs[2];
  intRange(x.dtype, node);
  if (zpT && zpT.dtype !== x.dtype) throw new GraphError(`x_zero_point dtype ${zpT.dtype} differs from x dtype ${x.dtype}`, node);
  const xs = numArray(x, node, 'x');
  const s = floatValues(scaleT, node, 'x_scale');
  const z = zpT ? numArray(zpT, node, 'x_zero_point') : undefined;
  if (x.dtype === 'int32' && z && z.some((v) => v !== 0)) throw new GraphError('int32 input takes no (or a zero) zero point', node);
  const L = paramLayout(node, x, scaleT, zpT);
  const n = elementCount(x.dims);
  const y = new Float32Array(n);
  let e = 0;
  for (let o = 0; o < L.outer; o++)
    for (let c = 0; c < L.D; c++) {
      const base = o * L.oS + Math.floor(c / L.block) * L.cS;
      for (let i = 0; i < L.inner; i++, e++) {
        const p = base + i * L.iS;
        y[e] = Math.fround(Math.fround(xs[e] - (z ? z[p] : 0)) * s[p]);
      }
    }
  if (scaleT.dtype === 'float16') return { dtype: 'float16', dims: [...x.dims], data: Uint16Array.from(y, f32ToF16) };
  return { dtype: 'float32', dims: [...x.dims], data: y };
}

/** ONNX Runtime's GetQuantizationParameter + MlasQuantizeLinear for uint8. */
function dynamicQuantizeLinear(inputs: ReadonlyArray<TensorData | undefined>, node: Node): TensorData[] {
  const x = requireInput(inputs, 0, node, 'x');
  const xs = floatValues(x, node, 'x');
  let mn = 0;
  let mx = 0; // the range always includes zero
  for (let i = 0; i < xs.length; i++) {
    const v = xs[i];
    if (v < mn) mn = v;
    if (v > mx) mx = v;
  }
  const scale = mx === mn ? 1 : Math.fround(Math.fround(mx - mn) / 255);
  const initialZp = Math.fround(0 - Math.fround(mn / scale));
  const zp = rint(Math.max(0, Math.min(255, initialZp)));
  const y = new Uint8Array(xs.length);
  const lo = 0 - zp;
  const hi = 255 - zp;
  for (let i = 0; i < xs.length; i++) {
    let v = Math.fround(xs[i] / scale);
    if (!(v >= lo)) v = lo;
    else if (v > hi) v = hi;
    y[i] = rint(v) + zp;
  }
  return [
    { dtype: 'uint8', dims: [...x.dims], data: y },
    { dtype: 'float32', dims: [], data: Float32Array.of(scale) },
    { dtype: 'uint8', dims: [], data: Uint8Array.of(zp) },
  ];
}

export const quantizeKernels: IntKernel[] = [
  { op: 'QuantizeLinear', clampable: true, run: (inputs, ctx) => [quantizeLinear(inputs, ctx)] },
  { op: 'DequantizeLinear', run: (inputs, ctx) => [dequantizeLinear(inputs, ctx.node)] },
  { op: 'DynamicQuantizeLinear', run: (inputs, ctx) => dynamicQuantizeLinear(inputs, ctx.node) },
];
