// Checkpoint files: one file, written atomically, holding a plain-data tree whose typed arrays are stored as binary.
// Layout: "QATCKPT1" | uint32 LE header length | header JSON (utf8) | zero padding to 8 bytes | blobs, each 8-aligned.
// The header is the tree with every typed array replaced by {"$typed": dtype, "offset", "length"} (offset from the
// start of the blob area, length in elements) and every non-finite number by {"$num": "NaN" | "Infinity" | "-Infinity"}.
// Blobs are little-endian (what every platform Node runs on uses).
import { readFileSync } from 'node:fs';
import { endianness } from 'node:os';
import { QatError } from '../util/errors.js';
import { writeFileAtomic } from '../util/fs.js';

const MAGIC = 'QATCKPT1';

const TYPED = {
  float32: Float32Array,
  float64: Float64Array,
  int32: Int32Array,
  uint32: Uint32Array,
  int16: Int16Array,
  uint16: Uint16Array,
  int8: Int8Array,
  uint8: Uint8Array,
} as const;
type TypedName = keyof typeof TYPED;
type Typed = InstanceType<(typeof TYPED)[TypedName]>;

function typedName(v: ArrayBufferView): TypedName | undefined {
  for (const [name, ctor] of Object.entries(TYPED)) if (v instanceof ctor) return name as TypedName;
  return undefined;
}

const align8 = (n: number) => (n + 7) & ~7;

/** The file's bytes as chunks (no copy of the arrays). */
export function encodeCheckpoint(tree: unknown): Uint8Array[] {
  if (endianness() !== 'LE') throw new Error('checkpoints are written little-endian; this platform is big-endian');
  const blobs: Uint8Array[] = [];
  let blobBytes = 0;
  const enc = (v: unknown, where: string): unknown => {
    if (v === null || typeof v === 'string' || typeof v === 'boolean') return v;
    if (typeof v === 'number') return Number.isFinite(v) ? v : { $num: String(v) };
    if (v === undefined) return undefined;
    if (ArrayBuffer.isView(v)) {
      const dtype = typedName(v);
      if (!dtype) throw new TypeError(`checkpoint: ${where} is a ${v.constructor.name}, which checkpoints do not store`);
      const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
      const offset = blobBytes;
      blobs.push(bytes);
      const pad = align8(bytes.byteLength) - bytes.byteLength;
      if (pad) blobs.push(new Uint8Array(pad));
      blobBytes += bytes.byteLength + pad;
      return { $typed: dtype, offset, length: (v as Typed).length };
    }
    if (Array.isArray(v)) return v.map((x, i) => enc(x, `${where}[${i}]`) ?? null);
    if (typeof v === 'object') {
      const proto = Object.getPrototypeOf(v);
      if (proto !== Object.prototype && proto !== null)
        throw new TypeError(`checkpoint: ${where} is a ${proto?.constructor?.name ?? 'class instance'}; checkpoints hold plain data (objects, arrays, numbers, strings, typed arrays)`);
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) {
        if (k === '$typed' || k === '$num') throw new TypeError(`checkpoint: ${where} has the reserved key '${k}'`);
        out[k] = enc(x, `${where}.${k}`);
      }
      return out;
    }
    throw new TypeError(`checkpoint: ${where} is a ${typeof v}, which checkpoints do not store`);
  };
  const header = Buffer.from(JSON.stringify(enc(tree, 'state')), 'utf8');
  const prefix = Buffer.alloc(align8(12 + header.byteLength));
  prefix.write(MAGIC, 0, 'latin1');
  prefix.writeUInt32LE(header.byteLength, 8);
  header.copy(prefix, 12);
  return [prefix, ...blobs];
}

export function decodeCheckpoint(bytes: Uint8Array, source = '<buffer>'): unknown {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (buf.length < 12 || buf.toString('latin1', 0, 8) !== MAGIC) throw new QatError(`${source}: not a qatkit checkpoint (bad magic)`);
  const headerLen = buf.readUInt32LE(8);
  const blobStart = align8(12 + headerLen);
  if (blobStart > buf.length) throw new QatError(`${source}: truncated checkpoint (header says ${headerLen} bytes, file has ${buf.length})`);
  let header: unknown;
  try {
    header = JSON.parse(buf.toString('utf8', 12, 12 + headerLen));
  } catch (e) {
    throw new QatError(`${source}: corrupt checkpoint header (${(e as Error).message})`);
  }
  const dec = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(dec);
    if (v && typeof v === 'object') {
      const o = v as Record<string, unknown>;
      if (typeof o.$num === 'string') return Number(o.$num);
      if (typeof o.$typed === 'string') {
        const ctor = TYPED[o.$typed as TypedName];
        const offset = o.offset as number;
        const length = o.length as number;
        if (!ctor) throw new QatError(`${source}: unknown array type '${o.$typed}' in checkpoint`);
        const start = blobStart + offset;
        const end = start + length * ctor.BYTES_PER_ELEMENT;
        if (end > buf.length) throw new QatError(`${source}: truncated checkpoint (an array ends at byte ${end}, file has ${buf.length})`);
        // copy: aligned and independent of the file buffer
        return new ctor(new Uint8Array(buf.subarray(start, end)).buffer);
      }
      return Object.fromEntries(Object.entries(o).map(([k, x]) => [k, dec(x)]));
    }
    return v;
  };
  return dec(header);
}

export async function writeCheckpointFile(path: string, tree: unknown): Promise<void> {
  await writeFileAtomic(path, encodeCheckpoint(tree));
}

export function readCheckpointFile(path: string): unknown {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new QatError(`${path}: cannot read checkpoint (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`, undefined, { cause: e });
  }
  return decodeCheckpoint(bytes, path);
}
