// Data-movement ops on any dtype (Reshape, Flatten, Squeeze, Unsqueeze, Transpose, Identity, Constant) and
// the clamps a quantized CNN keeps between integer ops (Relu, Clip). Reshapes share the input's buffer:
// the engine never writes into an input.
import { type Attr, type Node, type TensorData, GraphError, attrInt, attrInts, elementCount } from '../../graph/ir.js';
import type { IntKernel, KernelContext } from '../registry.js';
import { intValues, newTensor, normAxis, numArray, requireInput, scalar, strides } from '../tensor.js';

const view = (t: TensorData, dims: number[]): TensorData => ({ dtype: t.dtype, dims, data: t.data });

function reshape(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const x = requireInput(inputs, 0, node, 'data');
  const shape = ctx.opset >= 5 || inputs[1] ? intValues(requireInput(inputs, 1, node, 'shape'), node, 'shape') : attrInts(node, 'shape', []);
  const allowZero = attrInt(node, 'allowzero', 0) !== 0;
  const dims = shape.map((d, i) => (d === 0 && !allowZero ? x.dims[i] : d));
  if (dims.some((d) => d === undefined)) throw new GraphError(`shape [${shape.join(', ')}] copies a dim input [${x.dims.join(', ')}] lacks`, node);
  const known = dims.reduce((a, d) => (d === -1 ? a : a * d), 1);
  const total = elementCount(x.dims);
  const inferred = dims.filter((d) => d === -1).length;
  if (inferred > 1) throw new GraphError('shape has more than one -1', node);
  if (inferred === 1) {
    if (known === 0 || total % known !== 0) throw new GraphError(`cannot reshape [${x.dims.join(', ')}] to [${shape.join(', ')}]`, node);
    dims[dims.indexOf(-1)] = total / known;
  }
  if (elementCount(dims) !== total) throw new GraphError(`cannot reshape [${x.dims.join(', ')}] to [${shape.join(', ')}]`, node);
  return view(x, dims);
}

function flatten(inputs: ReadonlyArray<TensorData | undefined>, node: Node): TensorData {
  const x = requireInput(inputs, 0, node, 'input');
  const r = x.dims.length;
  let axis = attrInt(node, 'axis', 1);
  if (axis < 0) axis += r;
  if (axis < 0 || axis > r) throw new GraphError(`axis ${attrInt(node, 'axis', 1)} out of range for rank ${r}`, node);
  return view(x, [elementCount(x.dims.slice(0, axis)), elementCount(x.dims.slice(axis))]);
}

function axesOf(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): number[] | undefined {
  return inputs[1] ? intValues(inputs[1], ctx.node, 'axes') : attrInts(ctx.node, 'axes');
}

function squeeze(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const x = requireInput(inputs, 0, ctx.node, 'data');
  const r = x.dims.length;
  const given = axesOf(inputs, ctx);
  const axes = given ? given.map((a) => normAxis(a, r, ctx.node)) : x.dims.flatMap((d, i) => (d === 1 ? [i] : []));
  for (const a of axes) if (x.dims[a] !== 1) throw new GraphError(`cannot squeeze axis ${a} of size ${x.dims[a]}`, ctx.node);
  return view(x, x.dims.filter((_, i) => !axes.includes(i)));
}

function unsqueeze(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const x = requireInput(inputs, 0, ctx.node, 'data');
  const given = axesOf(inputs, ctx);
  if (!given) throw new GraphError('axes are required', ctx.node);
  const r = x.dims.length + given.length;
  const axes = new Set(given.map((a) => normAxis(a, r, ctx.node)));
  if (axes.size !== given.length) throw new GraphError(`repeated axes [${given.join(', ')}]`, ctx.node);
  const dims: number[] = [];
  let k = 0;
  for (let i = 0; i < r; i++) dims.push(axes.has(i) ? 1 : x.dims[k++]);
  return view(x, dims);
}

function transpose(inputs: ReadonlyArray<TensorData | undefined>, node: Node): TensorData {
  const x = requireInput(inputs, 0, node, 'data');
  const r = x.dims.length;
  const perm = attrInts(node, 'perm', [...Array(r).keys()].reverse());
  if (perm.length !== r || new Set(perm).size !== r || perm.some((p) => p < 0 || p >= r))
    throw new GraphError(`perm [${perm.join(', ')}] is not a permutation of ${r} axes`, node);
  const dims = perm.map((p) => x.dims[p]);
  const n = elementCount(dims);
  const out: TensorData = x.dtype === 'string' ? { dtype: 'string', dims, data: new Array<string>(n) } : newTensor(x.dtype, dims);
  const src = x.data;
  const dst = out.data;
  const inStr = strides(x.dims);
  const srcStr = perm.map((p) => inStr[p]); // step in x for a step along each output axis
  const pos = new Array<number>(r).fill(0);
  let off = 0;
  for (let i = 0; i < n; i++) {
    (dst as unknown[])[i] = (src as unknown[])[off];
    for (let d = r - 1; d >= 0; d--) {
      pos[d]++;
      off += srcStr[d];
      if (pos[d] < dims[d]) break;
      off -= srcStr[d] * dims[d];
      pos[d] = 0;
    }
  }
  return out;
}

function attrTensor(a: Attr, node: Node): TensorData {
  switch (a.type) {
    case 'tensor': return a.value;
    case 'float': return { dtype: 'float32', dims: [], data: Float32Array.of(a.value) };
    case 'floats': return { dtype: 'float32', dims: [a.value.length], data: Float32Array.from(a.value) };
    case 'int': return { dtype: 'int64', dims: [], data: BigInt64Array.of(BigInt(a.value)) };
    case 'ints': return { dtype: 'int64', dims: [a.value.length], data: BigInt64Array.from(a.value, BigInt) };
    case 'string': return { dtype: 'string', dims: [], data: [a.value] };
    case 'strings': return { dtype: 'string', dims: [a.value.length], data: [...a.value] };
    default: throw new GraphError(`unsupported Constant attribute type ${a.type}`, node);
  }
}

function constant(node: Node): TensorData {
  const names = Object.keys(node.attrs);
  if (names.length !== 1) throw new GraphError(`needs exactly one value attribute, got ${names.join(', ') || 'none'}`, node);
  if (names[0] === 'sparse_value') throw new GraphError('sparse_value is not supported', node);
  return attrTensor(node.attrs[names[0]], node);
}

function relu(inputs: ReadonlyArray<TensorData | undefined>, node: Node): TensorData {
  const x = requireInput(inputs, 0, node, 'X');
  const xs = numArray(x, node, 'X');
  const out = newTensor(x.dtype, x.dims);
  const y = out.data as typeof xs;
  for (let i = 0; i < xs.length; i++) y[i] = xs[i] > 0 ? xs[i] : 0;
  return out;
}

function clip(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData {
  const { node } = ctx;
  const x = requireInput(inputs, 0, node, 'input');
  const xs = numArray(x, node, 'input');
  let lo = -Infinity;
  let hi = Infinity;
  if (ctx.opset > 0 && ctx.opset < 11) {
    const a = node.attrs.min;
    const b = node.attrs.max;
    if (a && (a.type === 'float' || a.type === 'int')) lo = a.value;
    if (b && (b.type === 'float' || b.type === 'int')) hi = b.value;
  } else {
    if (inputs[1]) lo = scalar(inputs[1], node, 'min');
    if (inputs[2]) hi = scalar(inputs[2], node, 'max');
  }
  const out = newTensor(x.dtype, x.dims);
  const y = out.data as typeof xs;
  for (let i = 0; i < xs.length; i++) {
    const v = xs[i];
    y[i] = v < lo ? lo : v > hi ? hi : v;
  }
  return out;
}

export const shapeKernels: IntKernel[] = [
  { op: 'Reshape', run: (inputs, ctx) => [reshape(inputs, ctx)] },
  { op: 'Flatten', run: (inputs, ctx) => [flatten(inputs, ctx.node)] },
  { op: 'Squeeze', run: (inputs, ctx) => [squeeze(inputs, ctx)] },
  { op: 'Unsqueeze', run: (inputs, ctx) => [unsqueeze(inputs, ctx)] },
  { op: 'Transpose', run: (inputs, ctx) => [transpose(inputs, ctx.node)] },
  { op: 'Identity', run: (inputs, ctx) => [requireInput(inputs, 0, ctx.node, 'input')] },
  { op: 'Constant', run: (_inputs, ctx) => [constant(ctx.node)] },
  { op: 'Relu', run: (inputs, ctx) => [relu(inputs, ctx.node)] },
  { op: 'Clip', run: (inputs, ctx) => [clip(inputs, ctx)] },
];
