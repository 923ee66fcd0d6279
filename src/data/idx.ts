// IDX files (the MNIST family's format): 2 zero bytes, a dtype byte, a rank byte, rank big-endian uint32 dims,
// then the data, big-endian. Files may be gzipped; we tell by the gzip magic (1f 8b), not by the name.
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { QatError } from '../util/errors.js';

export type IdxDType = 'uint8' | 'int8' | 'int16' | 'int32' | 'float32' | 'float64';
export type IdxData = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxArray {
  dtype: IdxDType;
  dims: number[];
  data: IdxData;
}

const DTYPES: Record<number, { dtype: IdxDType; size: number }> = {
  0x08: { dtype: 'uint8', size: 1 },
  0x09: { dtype: 'int8', size: 1 },
  0x0b: { dtype: 'int16', size: 2 },
  0x0c: { dtype: 'int32', size: 4 },
  0x0d: { dtype: 'float32', size: 4 },
  0x0e: { dtype: 'float64', size: 8 },
};

export const isGzip = (b: Uint8Array) => b.length >= 2 && b[0] === 0x1f && b[1] === 0x8b;

/** The bytes, gunzipped when they are gzip. `source` names the file in errors. */
export function maybeGunzip(bytes: Uint8Array, source: string): Uint8Array {
  if (!isGzip(bytes)) return bytes;
  try {
    return gunzipSync(bytes);
  } catch (e) {
    throw new QatError(`${source}: corrupt gzip data (${(e as Error).message})`, 'download the file again', { cause: e });
  }
}

const hex = (b: number) => `0x${b.toString(16).padStart(2, '0')}`;

/** Parses IDX bytes (plain or gzipped). uint8 data is a view on the bytes, not a copy. */
export function parseIdx(raw: Uint8Array, source = '<buffer>'): IdxArray {
  const b = maybeGunzip(raw, source);
  if (b.length < 4) throw new QatError(`${source}: not an IDX file: ${b.length} bytes, shorter than the 4-byte magic`);
  if (b[0] !== 0 || b[1] !== 0)
    throw new QatError(`${source}: not an IDX file: bad magic ${[...b.subarray(0, 4)].map(hex).join(' ')} (expected 00 00 <dtype> <rank>)`);
  const t = DTYPES[b[2]!];
  if (!t) throw new QatError(`${source}: unknown IDX dtype byte ${hex(b[2]!)} (known: 08 ubyte, 09 byte, 0b short, 0c int, 0d float, 0e double)`);
  const rank = b[3]!;
  const headerLen = 4 + 4 * rank;
  if (b.length < headerLen) throw new QatError(`${source}: truncated IDX header: rank ${rank} needs ${headerLen} bytes, file has ${b.length}`);
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const dims: number[] = [];
  for (let i = 0; i < rank; i++) dims.push(view.getUint32(4 + 4 * i, false));
  const count = dims.reduce((a, d) => a * d, 1);
  const want = count * t.size;
  const have = b.length - headerLen;
  if (have < want)
    throw new QatError(`${source}: truncated: dims ${dims.join('x')} of ${t.dtype} need ${want} data bytes, file has ${have}`, 'download the file again');
  if (have > want) throw new QatError(`${source}: ${have - want} bytes after the data that dims ${dims.join('x')} of ${t.dtype} describe; not a valid IDX file`);
  return { dtype: t.dtype, dims, data: decode(view, headerLen, count, t.dtype) };
}

function decode(view: DataView, off: number, count: number, dtype: IdxDType): IdxData {
  switch (dtype) {
    case 'uint8':
      return new Uint8Array(view.buffer, view.byteOffset + off, count);
    case 'int8':
      return new Int8Array(view.buffer, view.byteOffset + off, count);
    case 'int16': {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(off + 2 * i, false);
      return out;
    }
    case 'int32': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(off + 4 * i, false);
      return out;
    }
    case 'float32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(off + 4 * i, false);
      return out;
    }
    case 'float64': {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(off + 8 * i, false);
      return out;
    }
  }
}

/** IDX bytes for an array (the inverse of parseIdx), e.g. to write a dataset subset or a test fixture. */
export function encodeIdx(a: IdxArray): Uint8Array {
  const code = Number(Object.entries(DTYPES).find(([, t]) => t.dtype === a.dtype)![0]);
  const size = DTYPES[code]!.size;
  const count = a.dims.reduce((x, d) => x * d, 1);
  if (a.data.length !== count) throw new RangeError(`encodeIdx: dims ${a.dims.join('x')} hold ${count} values, data has ${a.data.length}`);
  const out = new Uint8Array(4 + 4 * a.dims.length + count * size);
  const view = new DataView(out.buffer);
  out[2] = code;
  out[3] = a.dims.length;
  a.dims.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const off = 4 + 4 * a.dims.length;
  for (let i = 0; i < count; i++) {
    const v = a.data[i]!;
    const o = off + i * size;
    if (a.dtype === 'uint8') view.setUint8(o, v);
    else if (a.dtype === 'int8') view.setInt8(o, v);
    else if (a.dtype === 'int16') view.setInt16(o, v, false);
    else if (a.dtype === 'int32') view.setInt32(o, v, false);
    else if (a.dtype === 'float32') view.setFloat32(o, v, false);
    else view.setFloat64(o, v, false);
  }
  return out;
}

export function readIdx(path: string): IdxArray {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new QatError(`${path}: cannot read IDX file (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, undefined, { cause: e });
  }
  return parseIdx(bytes, path);
}

/** An images file and a labels file that belong together: [N, H, W] uint8 images and [N] uint8 labels. */
export function readIdxPair(imagesPath: string, labelsPath: string): { images: Uint8Array; labels: Uint8Array; n: number; h: number; w: number } {
  const im = readIdx(imagesPath);
  const lb = readIdx(labelsPath);
  if (im.dtype !== 'uint8' || im.dims.length !== 3)
    throw new QatError(`${imagesPath}: expected uint8 images of dims [N, H, W], got ${im.dtype} [${im.dims.join(', ')}]`);
  if (lb.dtype !== 'uint8' || lb.dims.length !== 1)
    throw new QatError(`${labelsPath}: expected uint8 labels of dims [N], got ${lb.dtype} [${lb.dims.join(', ')}]`);
  if (im.dims[0] !== lb.dims[0])
    throw new QatError(`dims mismatch: ${imagesPath} holds ${im.dims[0]} images but ${labelsPath} holds ${lb.dims[0]} labels`);
  return { images: im.data as Uint8Array, labels: lb.data as Uint8Array, n: im.dims[0]!, h: im.dims[1]!, w: im.dims[2]! };
}
