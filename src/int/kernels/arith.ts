// Add with numpy broadcasting. The converter uses it for the int32 bias of a final layer that stays in int32
// (ConvInteger / MatMulInteger + Add + DequantizeLinear); any numeric dtype works, integers wrapping as in C.
import { type TensorData, GraphError } from '../../graph/ir.js';
import type { IntKernel, KernelContext } from '../registry.js';
import { broadcastIndex, broadcastShape, newTensor, requireInput } from '../tensor.js';

function add(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const a = requireInput(inputs, 0, node, 'A');
  const b = requireInput(inputs, 1, node, 'B');
  if (a.dtype !== b.dtype) throw new GraphError(`A has dtype ${a.dtype}, B ${b.dtype}`, node);
  if (Array.isArray(a.data) || Array.isArray(b.data) || a.dtype === 'float16' || a.dtype === 'bool')
    throw new GraphError(`dtype ${a.dtype} is not supported`, node);
  const dims = broadcastShape(a.dims, b.dims, node);
  const out = newTensor(a.dtype, dims);
  const ia = broadcastIndex(a.dims, dims);
  const ib = broadcastIndex(b.dims, dims);
  if (out.data instanceof BigInt64Array || out.data instanceof BigUint64Array) {
    const x = a.data as BigInt64Array, y = b.data as BigInt64Array, z = out.data;
    for (let i = 0; i < z.length; i++) z[i] = x[ia[i]] + y[ib[i]]; // typed-array stores wrap mod 2^64
  } else {
    const x = a.data as ArrayLike<number>, y = b.data as ArrayLike<number>, z = out.data as Float64Array;
    for (let i = 0; i < z.length; i++) z[i] = x[ia[i]] + y[ib[i]]; // stores round (float32) or wrap (integers)
  }
  return out;
}

export const arithKernels: IntKernel[] = [{ op: 'Add', run: (inputs, ctx) => [add(inputs, ctx)] }];
