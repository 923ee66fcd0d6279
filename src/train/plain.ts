// Plain (tensor-library-free) tensor values, for checkpoints and optimizer state.
import * as tf from '@tensorflow/tfjs-core';

export interface PlainTensor {
  dtype: 'float32' | 'int32';
  shape: number[];
  data: Float32Array | Int32Array;
}

/** A copy of the tensor's values (synchronous read-back). */
export function toPlain(t: tf.Tensor): PlainTensor {
  if (t.dtype !== 'float32' && t.dtype !== 'int32') throw new TypeError(`toPlain: dtype ${t.dtype} is not supported (float32, int32)`);
  const data = t.dataSync() as Float32Array | Int32Array;
  return { dtype: t.dtype, shape: [...t.shape], data: t.dtype === 'float32' ? Float32Array.from(data) : Int32Array.from(data) };
}

export function fromPlain(p: PlainTensor): tf.Tensor {
  return tf.tensor(p.data, p.shape, p.dtype);
}

export const sameShape = (a: readonly number[], b: readonly number[]) => a.length === b.length && a.every((d, i) => d === b[i]);

export function isPlainTensor(v: unknown): v is PlainTensor {
  const p = v as PlainTensor;
  return !!p && typeof p === 'object' && (p.dtype === 'float32' || p.dtype === 'int32') && Array.isArray(p.shape) && ArrayBuffer.isView(p.data);
}
