// Node-only file I/O for ONNX models and tensors; the codec itself (model.ts, tensor.ts) never touches node:fs.

import { readFile } from 'node:fs/promises';
import type { Graph, TensorData } from '../graph/ir.js';
import { writeFileAtomic } from '../util/fs.js';
import { readOnnx, writeOnnx, type WriteOnnxOptions } from './model.js';
import { readNamedTensorProto } from './tensor.js';

async function readBytes(path: string, what: string): Promise<Uint8Array> {
  try {
    const b = await readFile(path);
    return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    throw new Error(`${path}: cannot read ${what}: ${why}`, { cause: e });
  }
}

/** Read and parse an .onnx file; every error names the file. */
export async function loadOnnxFile(path: string): Promise<Graph> {
  const bytes = await readBytes(path, 'ONNX model');
  if (bytes.length === 0) throw new Error(`${path}: empty file, not an ONNX model`);
  return readOnnx(bytes, path);
}

/** Serialize and write atomically (temp file in the same folder, then rename); returns the bytes written. */
export async function saveOnnxFile(path: string, g: Graph, opts?: WriteOnnxOptions): Promise<number> {
  const bytes = writeOnnx(g, opts);
  await writeFileAtomic(path, bytes);
  return bytes.length;
}

/** Read one TensorProto file (an ONNX test_data_set input_0.pb, say). */
export async function loadTensorProtoFile(path: string): Promise<{ name: string; tensor: TensorData }> {
  return readNamedTensorProto(await readBytes(path, 'TensorProto'), path);
}
