// The one integer GEMM every matmul and convolution goes through:
// C[i, j] (+)= sum_k A[i, k] * B[j, k], A and B both row-major with K contiguous ("NT" form),
// operands already shifted by their zero points (int16 holds any 8-bit difference), int32 accumulators
// that wrap like int32 (ONNX: "accumulation may overflow if and only if in 32 bits").
// Blocked 2 rows x 4 columns: 8 accumulators in registers, 6 loads per 8 multiply-adds.
// gemmBuffers below runs the same product with WebAssembly SIMD (wasm_gemm.ts), about 10x faster.
import { wasmGemm } from './wasm_gemm.js';

export function gemmNT(
  M: number, N: number, K: number,
  A: Int16Array, aOff: number,
  B: Int16Array, bOff: number,
  C: Int32Array, cOff: number, ldc: number,
  accumulate: boolean,
): void {
  let i = 0;
  for (; i + 2 <= M; i += 2) {
    const a0 = aOff + i * K;
    const a1 = a0 + K;
    const c0 = cOff + i * ldc;
    const c1 = c0 + ldc;
    let j = 0;
    for (; j + 4 <= N; j += 4) {
      const b0 = bOff + j * K;
      const b1 = b0 + K;
      const b2 = b1 + K;
      const b3 = b2 + K;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      for (let k = 0; k < K; k++) {
        const x0 = A[a0 + k];
        const x1 = A[a1 + k];
        const y0 = B[b0 + k];
        const y1 = B[b1 + k];
        const y2 = B[b2 + k];
        const y3 = B[b3 + k];
        s00 = (s00 + Math.imul(x0, y0)) | 0;
        s01 = (s01 + Math.imul(x0, y1)) | 0;
        s02 = (s02 + Math.imul(x0, y2)) | 0;
        s03 = (s03 + Math.imul(x0, y3)) | 0;
        s10 = (s10 + Math.imul(x1, y0)) | 0;
        s11 = (s11 + Math.imul(x1, y1)) | 0;
        s12 = (s12 + Math.imul(x1, y2)) | 0;
        s13 = (s13 + Math.imul(x1, y3)) | 0;
      }
      if (accumulate) {
        C[c0 + j] += s00; C[c0 + j + 1] += s01; C[c0 + j + 2] += s02; C[c0 + j + 3] += s03;
        C[c1 + j] += s10; C[c1 + j + 1] += s11; C[c1 + j + 2] += s12; C[c1 + j + 3] += s13;
      } else {
        C[c0 + j] = s00; C[c0 + j + 1] = s01; C[c0 + j + 2] = s02; C[c0 + j + 3] = s03;
        C[c1 + j] = s10; C[c1 + j + 1] = s11; C[c1 + j + 2] = s12; C[c1 + j + 3] = s13;
      }
    }
    for (; j < N; j++) {
      const b0 = bOff + j * K;
      let s0 = 0, s1 = 0;
      for (let k = 0; k < K; k++) {
        const y = B[b0 + k];
        s0 = (s0 + Math.imul(A[a0 + k], y)) | 0;
        s1 = (s1 + Math.imul(A[a1 + k], y)) | 0;
      }
      if (accumulate) { C[c0 + j] += s0; C[c1 + j] += s1; } else { C[c0 + j] = s0; C[c1 + j] = s1; }
    }
  }
  for (; i < M; i++) {
    const a0 = aOff + i * K;
    const c0 = cOff + i * ldc;
    for (let j = 0; j < N; j++) {
      const b0 = bOff + j * K;
      let s = 0;
      for (let k = 0; k < K; k++) s = (s + Math.imul(A[a0 + k], B[b0 + k])) | 0;
      if (accumulate) C[c0 + j] += s;
      else C[c0 + j] = s;
    }
  }
}

// ---- padded operand buffers: WebAssembly SIMD when available, else the JS gemm above --------------

/**
 * Operands of one C += A * B^T: A [Mp, Kp], B [Np, Kp] int16 and C [Mp, ldc] int32, with Kp a multiple of 8
 * (the K padding of A must hold zeros), Mp even and Np = ldc a multiple of 4. Rows past M and N are scratch.
 * The arrays live in the wasm module's memory and stay valid until the next gemmBuffers call.
 */
export interface GemmBuffers {
  M: number; N: number; K: number;
  Kp: number; ldc: number;
  A: Int16Array; B: Int16Array; C: Int32Array;
  /** byte offset of C in the wasm memory, -1 on the JS path */
  cOff: number;
  /** byte offsets of the extra wasm regions asked for */
  extra: number[];
  /** C += A * B^T over the M x N block */
  run(): void;
}

/** K rounded up to the 8 int16 lanes of a wasm vector (at least one vector, so K = 0 still reads zeros). */
export const padK = (K: number): number => Math.max(8, (K + 7) & ~7);

/** Grow the wasm memory to hold regions of these byte sizes (each rounded to 16) and return their offsets. */
export function wasmRegions(sizes: number[]): { memory: ArrayBuffer; offsets: number[] } | undefined {
  const w = wasmGemm();
  if (!w) return undefined;
  const offsets: number[] = [];
  let end = 0;
  for (const s of sizes) {
    offsets.push(end);
    end += (s + 15) & ~15;
  }
  const have = w.memory.buffer.byteLength;
  if (end > have) w.memory.grow(Math.ceil((end - have) / 65536));
  return { memory: w.memory.buffer, offsets };
}

let jsBuffers: { A: Int16Array; B: Int16Array; C: Int32Array } | undefined;

/** Operand buffers for an M x N x K product, plus `extra` wasm regions (bytes) for the caller. */
export function gemmBuffers(M: number, N: number, K: number, extra: number[] = []): GemmBuffers {
  const Kp = padK(K);
  const Mp = (M + 1) & ~1;
  const Np = (N + 3) & ~3;
  const w = wasmGemm();
  const reg = wasmRegions([Mp * Kp * 2, Np * Kp * 2, Mp * Np * 4, ...extra]);
  if (w && reg) {
    const [aOff, bOff, cOff, ...rest] = reg.offsets;
    return {
      M, N, K, Kp, ldc: Np, cOff, extra: rest,
      A: new Int16Array(reg.memory, aOff, Mp * Kp),
      B: new Int16Array(reg.memory, bOff, Np * Kp),
      C: new Int32Array(reg.memory, cOff, Mp * Np),
      run: () => w.gemm(Mp, Np, Kp >> 3, aOff, bOff, cOff, Np),
    };
  }
  // JS: no row padding needed, but the same K padding and layout
  const a = M * Kp, b = N * Kp, c = M * N;
  if (!jsBuffers || jsBuffers.A.length < a || jsBuffers.B.length < b || jsBuffers.C.length < c)
    jsBuffers = { A: new Int16Array(Math.max(a, jsBuffers?.A.length ?? 0)), B: new Int16Array(Math.max(b, jsBuffers?.B.length ?? 0)), C: new Int32Array(Math.max(c, jsBuffers?.C.length ?? 0)) };
  const { A, B, C } = jsBuffers;
  return { M, N, K, Kp, ldc: N, A, B, C, cOff: -1, extra: [], run: () => gemmNT(M, N, Kp, A, 0, B, 0, C, 0, N, true) };
}

// ---- pluggable GEMM provider (the native addon's int8 GEMM on Node) ------------------------------------------------

/** B of an NT product packed by a provider (its own layout; the native one follows the CPU). */
export interface PackedB { N: number; K: number; data: ArrayBufferView }

/**
 * An integer GEMM the engine's conv / matmul kernels hand their products to when one is registered:
 * C[m, n] (C[n * ldc + m] when transC, else C[m * ldc + n]) = sum_k (A[m * lda + k] - aZp[m | 0]) * B[n, k],
 * overwriting C. A holds uint8 (int8 operands are offset by 128, with their zero point); aZp is one number or M values.
 * Results must equal the JS/wasm path exactly (int32 wrapping accumulation).
 */
export interface IntGemmProvider {
  readonly name: string;
  /** Pack rows n = 0..N-1 of a zero-point-shifted int16 [N, ldb] matrix (from off): B[n, k] = rows[off + n * ldb + k]. */
  packB(rows: Int16Array, off: number, ldb: number, N: number, K: number): PackedB;
  gemmU8(M: number, N: number, K: number, A: Uint8Array, lda: number, aZp: number | Int32Array, B: PackedB,
    C: Int32Array, ldc: number, transC: boolean): void;
  /**
   * Optional fused im2row + GEMM for a 2-D convolution of one image (one group): x holds Cg planes of IH x IW
   * (int8 values count as x + 128, xZp is in that domain); geo = [Cg, IH, IW, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW];
   * B packs the [OC, Cg*KH*KW] weights; writes C[oc * ldc + oh * OW + ow].
   */
  conv2dU8?(x: Uint8Array | Int8Array, xZp: number, geo: Int32Array, B: PackedB, C: Int32Array, ldc: number): void;
  /**
   * Optional fused kernels writing final outputs (the native ones need AVX-512 VNNI). Requantization is described by
   * a RequantSpec; each must equal the engine's JS / wasm result bit for bit.
   * packConv / qconv: a whole 2-D convolution of group geo[18] for every image, direct (no im2row), requantized into
   * y's channels of that group (mode 3: int32 y, accumulators plus bias). rows as for packB: [OCg, Cg*KH*KW] B' rows.
   * geo = [N, C, IH, IW, KH, KW, SH, SW, PH, PW, PH_end, PW_end, DH, DW, OH, OW, group, OC, g]; xZp in the uint8 domain.
   */
  packConv?(rows: Int16Array, off: number, ldb: number, OCg: number, Cg: number, KH: number, KW: number): PackedB;
  qconv?(x: Uint8Array | Int8Array, xZp: number, geo: Int32Array, W: PackedB, rq: RequantSpec, y: Int8Array | Uint8Array | Int32Array): void;
  /** C [M, N] (row stride ldc) to 8-bit y [M, N], per column (rq.table has N entries) or per tensor (1 entry). */
  requant?(C: Int32Array, M: number, N: number, ldc: number, rq: RequantSpec, y: Int8Array | Uint8Array): void;
  /** QuantizeLinear per tensor: y = clamp(rint(float32(x / scale)), qmin - zp, qmax - zp) + zp, NaN to qmin. */
  quantize?(x: Float32Array, scale: number, zp: number, qmin: number, qmax: number, y: Int8Array | Uint8Array): void;
  /** 2-D 8-bit MaxPool; geo = [planes, IH, IW, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW], all-padding windows give qmin. */
  maxPool?(x: Int8Array | Uint8Array, geo: Int32Array, y: Int8Array | Uint8Array): void;
  /** QLinearAdd of same-shape a and b (one dtype) with the parameters of contrib.ts addSpec. */
  qadd?<T extends Int8Array | Uint8Array>(a: T, b: T, spec: Float64Array, y: Int8Array | Uint8Array): void;
  /** out[p] = sum of the S values of plane p of x. */
  planeSums?(x: Int8Array | Uint8Array, S: number, out: Int32Array): void;
}

/**
 * Requantization for the provider's fused kernels. table: Int32Array [4 * n], structure of arrays: float32
 * multiplier bits, int32 bias, Q31 multiplier, shift. mode: 0 float (ONNX Runtime), 1 fixed point (gemmlowp), 2 fixed
 * point rounded once, 3 none (int32 out). zp, qmin, qmax: output zero point and saturation range.
 */
export interface RequantSpec { table: Int32Array; mode: number; zp: number; qmin: number; qmax: number }

let provider: IntGemmProvider | null = null;

/**
 * Register (or with null, remove) the GEMM provider. The core never loads one itself (it has no node imports):
 * on Node, importing src/int/native_gemm.ts registers the native addon's when it is built.
 */
export function setIntGemmProvider(p: IntGemmProvider | null): IntGemmProvider | null {
  const prev = provider;
  provider = p;
  return prev;
}

export function intGemmProvider(): IntGemmProvider | null {
  return provider;
}

/** 8-bit values as uint8: uint8 data as is, int8 offset by 128 (the zero point moves with it, see u8Shift). */
export function asU8(v: ArrayLike<number>, int8: boolean): Uint8Array {
  if (!int8 && v instanceof Uint8Array) return v;
  const out = new Uint8Array(v.length);
  const d = int8 ? 128 : 0;
  for (let i = 0; i < v.length; i++) out[i] = v[i] + d;
  return out;
}
