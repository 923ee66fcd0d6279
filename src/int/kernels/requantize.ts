// ai.qatkit Requantize: int32 accumulators (from MatMulInteger / ConvInteger) to 8 bits, per tensor or per axis.
// y = saturate(round(x * scale) + zero_point), int8 when zero_point is omitted, with the session's arithmetic:
// 'float' as ONNX Runtime's MLAS requantization, 'fixedpoint' / 'fixedpoint-single' as gemmlowp / TFLite single rounding.
import { type TensorData, GraphError, QATKIT_DOMAIN, attrInt, elementCount } from '../../graph/ir.js';
import type { IntKernel, KernelContext } from '../registry.js';
import { checkDType, floatValues, intRange, newTensor, normAxis, numArray, requireInput } from '../tensor.js';
import { type IntArray, fixedMultipliers, memo, requantFixed, requantFloat } from './common.js';

function requantize(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const x = requireInput(inputs, 0, node, 'x');
  checkDType(x, ['int32'], node, 'x');
  const scaleT = requireInput(inputs, 1, node, 'scale');
  const zpT = inputs[2];
  const dtype = zpT ? zpT.dtype : 'int8';
  const { qmin, qmax } = intRange(dtype, node);
  const ns = elementCount(scaleT.dims);
  const zps = zpT ? numArray(zpT, node, 'zero_point') : undefined;
  if (zps && zps.length !== ns) throw new GraphError(`zero_point has ${zps.length} values, scale ${ns}`, node);
  let outer = 1;
  let D = 1;
  let inner = elementCount(x.dims);
  if (ns !== 1) {
    const axis = normAxis(attrInt(node, 'axis', 1), x.dims.length, node);
    D = x.dims[axis];
    if (ns !== D) throw new GraphError(`per-axis scale needs ${D} values (x dim ${axis}), got ${ns}`, node);
    outer = elementCount(x.dims.slice(0, axis));
    inner = elementCount(x.dims.slice(axis + 1));
  }
  const s = floatValues(scaleT, node, 'scale');
  const fixed = memo(ctx, 'fixed', [1], () => fixedMultipliers(ctx, s));
  const acc = x.data as Int32Array;
  const out = newTensor(dtype, x.dims);
  const y = out.data as IntArray;
  for (let o = 0; o < outer; o++)
    for (let c = 0; c < D; c++) {
      const off = (o * D + c) * inner;
      const zp = zps ? zps[c] : 0;
      if (fixed) requantFixed(acc, off, inner, fixed.multiplier[c], fixed.shift[c], zp, qmin, qmax, y, off, 0, fixed.single);
      else requantFloat(acc, off, inner, s[c], zp, qmin, qmax, y, off);
    }
  return out;
}

export const requantizeKernels: IntKernel[] = [
  { op: 'Requantize', domain: QATKIT_DOMAIN, run: (inputs, ctx) => [requantize(inputs, ctx)] },
];
