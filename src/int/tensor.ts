// Small tensor helpers for the integer engine: typed arrays by dtype, integer ranges, shapes, broadcasting.
import { type DType, type Node, type TensorData, type TypedArray, GraphError, elementCount } from '../graph/ir.js';

/** Integer dtypes a quantized tensor may have, with their saturation ranges. */
const INT_RANGES: Partial<Record<DType, [number, number]>> = {
  int8: [-128, 127],
  uint8: [0, 255],
  int16: [-32768, 32767],
  uint16: [0, 65535],
  int32: [-2147483648, 2147483647],
  uint32: [0, 4294967295],
  int4: [-8, 7],
  uint4: [0, 15],
};

export function intRange(dtype: DType, node?: Pick<Node, 'name' | 'op'>): { qmin: number; qmax: number } {
  const r = INT_RANGES[dtype];
  if (!r) throw new GraphError(`expected an integer dtype, got ${dtype}`, node);
  return { qmin: r[0], qmax: r[1] };
}

export function isIntDType(dtype: DType): boolean {
  return INT_RANGES[dtype] !== undefined;
}

export function newArray(dtype: DType, n: number): TypedArray {
  switch (dtype) {
    case 'float32': return new Float32Array(n);
    case 'float64': return new Float64Array(n);
    case 'float16': return new Uint16Array(n);
    case 'int8': case 'int4': return new Int8Array(n);
    case 'uint8': case 'uint4': case 'bool': return new Uint8Array(n);
    case 'int16': return new Int16Array(n);
    case 'uint16': return new Uint16Array(n);
    case 'int32': return new Int32Array(n);
    case 'uint32': return new Uint32Array(n);
    case 'int64': return new BigInt64Array(n);
    case 'uint64': return new BigUint64Array(n);
    default: throw new Error(`no typed array for dtype ${dtype}`);
  }
}

export function newTensor(dtype: DType, dims: number[]): TensorData {
  return { dtype, dims: [...dims], data: newArray(dtype, elementCount(dims)) };
}

/** Buffers of a running session's freed intermediates (engine.ts), by dtype and length, for outputTensor. */
export type ArrayPool = Map<string, TypedArray[]>;

let pool: ArrayPool | undefined;

/** Install (or with undefined, remove) the pool outputTensor draws from; returns the previous one. */
export function setArrayPool(p: ArrayPool | undefined): ArrayPool | undefined {
  const prev = pool;
  pool = p;
  return prev;
}

const poolKey = (dtype: DType, n: number): string => `${dtype}:${n}`;

/**
 * newTensor for kernels that write every element: takes a freed intermediate's buffer of the same dtype and length
 * when the running session has one (stale contents), which spares an allocation and its zeroing.
 */
export function outputTensor(dtype: DType, dims: number[]): TensorData {
  const n = elementCount(dims);
  return { dtype, dims: [...dims], data: pool?.get(poolKey(dtype, n))?.pop() ?? newArray(dtype, n) };
}

/** Hand a dead tensor's buffer to the pool (the caller guarantees that nothing else references it). */
export function recycle(p: ArrayPool, t: TensorData): void {
  if (Array.isArray(t.data)) return;
  const k = poolKey(t.dtype, t.data.length);
  const list = p.get(k);
  if (list) list.push(t.data);
  else p.set(k, [t.data]);
}

/** Numeric view of a tensor's data (int64 converted); throws for strings. */
export function numbers(t: TensorData, node?: Pick<Node, 'name' | 'op'>, what = 'input'): ArrayLike<number> {
  const d = t.data;
  if (Array.isArray(d)) throw new GraphError(`${what} is a string tensor, expected numbers`, node);
  if (d instanceof BigInt64Array || d instanceof BigUint64Array) return Array.from(d, Number);
  return d as Exclude<TypedArray, BigInt64Array | BigUint64Array>;
}

/** The number array of a non-int64 numeric tensor, without copying. */
export function numArray(t: TensorData, node: Pick<Node, 'name' | 'op'>, what: string): Exclude<TypedArray, BigInt64Array | BigUint64Array> {
  const d = t.data;
  if (Array.isArray(d) || d instanceof BigInt64Array || d instanceof BigUint64Array)
    throw new GraphError(`${what} has dtype ${t.dtype}, which this kernel does not take`, node);
  return d;
}

/** Values of an int64 (or other integer) tensor as plain numbers: shapes, axes, pads. */
export function intValues(t: TensorData, node: Pick<Node, 'name' | 'op'>, what: string): number[] {
  const d = t.data;
  if (Array.isArray(d)) throw new GraphError(`${what} must be an integer tensor, got strings`, node);
  return Array.from(d as ArrayLike<number | bigint>, Number);
}

/** The single value of a scalar or one-element tensor (a per-tensor scale or zero point). */
export function scalar(t: TensorData, node: Pick<Node, 'name' | 'op'>, what: string): number {
  const d = numbers(t, node, what);
  if (d.length !== 1) throw new GraphError(`${what} must have one element, got shape [${t.dims.join(', ')}]`, node);
  return d[0];
}

export function requireInput(inputs: ReadonlyArray<TensorData | undefined>, i: number, node: Node, what: string): TensorData {
  const t = inputs[i];
  if (!t) throw new GraphError(`missing required input ${i} (${what})`, node);
  return t;
}

export function checkDType(t: TensorData, allowed: readonly DType[], node: Pick<Node, 'name' | 'op'>, what: string): void {
  if (!allowed.includes(t.dtype)) throw new GraphError(`${what} has dtype ${t.dtype}, expected ${allowed.join(' or ')}`, node);
}

export function normAxis(axis: number, rank: number, node: Pick<Node, 'name' | 'op'>): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new GraphError(`axis ${axis} is out of range for rank ${rank}`, node);
  return a;
}

export function strides(dims: readonly number[]): number[] {
  const s = new Array<number>(dims.length);
  let acc = 1;
  for (let i = dims.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= dims[i];
  }
  return s;
}

/** numpy broadcasting of two shapes. */
export function broadcastShape(a: readonly number[], b: readonly number[], node: Pick<Node, 'name' | 'op'>): number[] {
  const r = Math.max(a.length, b.length);
  const out = new Array<number>(r);
  for (let i = 0; i < r; i++) {
    const da = a[a.length - r + i] ?? 1;
    const db = b[b.length - r + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1)
      throw new GraphError(`shapes [${a.join(', ')}] and [${b.join(', ')}] do not broadcast`, node);
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Strides of `dims` when read at the broadcast shape `out` (0 along broadcast axes). */
export function broadcastStrides(dims: readonly number[], out: readonly number[]): number[] {
  const s = strides(dims);
  const r = out.length;
  const res = new Array<number>(r).fill(0);
  for (let i = 0; i < dims.length; i++) {
    const o = r - dims.length + i;
    res[o] = dims[i] === 1 ? 0 : s[i];
  }
  return res;
}

/** For each flat index of `out`, the flat index into a tensor of shape `dims` broadcast to it. */
export function broadcastIndex(dims: readonly number[], out: readonly number[]): Int32Array {
  const n = elementCount(out);
  const idx = new Int32Array(n);
  const bs = broadcastStrides(dims, out);
  const r = out.length;
  const pos = new Array<number>(r).fill(0);
  let off = 0;
  for (let i = 0; i < n; i++) {
    idx[i] = off;
    for (let d = r - 1; d >= 0; d--) {
      pos[d]++;
      off += bs[d];
      if (pos[d] < out[d]) break;
      off -= bs[d] * out[d];
      pos[d] = 0;
    }
  }
  return idx;
}

/** Round half to even of a double: exact for |v| < 2^51 (adding 1.5 * 2^52 leaves no fraction bits). */
export function rint(v: number): number {
  return v + 6755399441055744 - 6755399441055744;
}

// ---- float16 (IEEE binary16 stored as Uint16Array) --------------------------------------------

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** float32 -> binary16, round to nearest even. */
export function f32ToF16(v: number): number {
  f32[0] = v;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const e = (x >>> 23) & 0xff;
  let m = x & 0x7fffff;
  if (e === 255) return sign | 0x7c00 | (m ? 0x200 : 0);
  let ee = e - 127 + 15;
  if (ee >= 31) return sign | 0x7c00;
  if (ee <= 0) {
    if (ee < -10) return sign;
    m |= 0x800000;
    const sh = 14 - ee;
    const half = 1 << (sh - 1);
    let r = m >> sh;
    const rem = m & ((1 << sh) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = m >> 13;
  const rem = m & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      ee++;
      if (ee >= 31) return sign | 0x7c00;
    }
  }
  return sign | (ee << 10) | r;
}

/** A float tensor's values as float32 numbers (float16 decoded). */
export function floatValues(t: TensorData, node: Pick<Node, 'name' | 'op'>, what: string): Float32Array | Float64Array {
  if (t.dtype === 'float32' && t.data instanceof Float32Array) return t.data;
  if (t.dtype === 'float64' && t.data instanceof Float64Array) return t.data;
  if (t.dtype === 'float16' && t.data instanceof Uint16Array) return Float32Array.from(t.data, f16ToF32);
  throw new GraphError(`${what} has dtype ${t.dtype}, expected float32, float16 or float64`, node);
}
