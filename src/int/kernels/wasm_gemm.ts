// A WebAssembly SIMD int16 GEMM, assembled here from a few opcodes (no toolchain, no binary blob):
//   C[i, j] += sum_k A[i, k] * B[j, k]    (A: [Mp, Kp] int16, B: [Np, Kp] int16, C: [Mp, ldc] int32)
// in blocks of 2 rows x 4 columns with i32x4.dot_i16x8_s (8 multiply-adds per instruction, exact in int32).
// Sizes are padded by the caller: Mp even, Np a multiple of 4, Kp a multiple of 8 with zeros in A's padding.
// Standard wasm SIMD (Node >= 16, every current browser); where it is missing, callers use the JS gemm.

const I32 = 0x7f;
const V128 = 0x7b;

function uleb(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n) b |= 0x80;
    out.push(b);
  } while (n);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && !(b & 0x40)) || (n === -1 && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const vec = (bytes: number[]): number[] => [...uleb(bytes.length), ...bytes];
const section = (id: number, body: number[]): number[] => [id, ...vec(body)];

// instructions
const get = (l: number) => [0x20, ...uleb(l)];
const set = (l: number) => [0x21, ...uleb(l)];
const i32c = (v: number) => [0x41, ...sleb(v)];
const add = [0x6a];
const mul = [0x6c];
const shl = [0x74];
const geU = [0x4f];
const simd = (op: number, ...imm: number[]) => [0xfd, ...uleb(op), ...imm];
const load = simd(0x00, 0, 0); // v128.load, align hint 1, offset 0
const loadAt = (offset: number) => simd(0x00, 0, ...uleb(offset));
const store = simd(0x0b, 0, 0);
const storeAt = (offset: number) => simd(0x0b, 0, ...uleb(offset));
const load32Splat = simd(0x09, 0, 0);
const v128zero = simd(0x0c, ...new Array(16).fill(0));
const shuffle = (lanes: number[]) => simd(0x0d, ...lanes);
const i32x4add = simd(0xae);
const dot = simd(0xba); // i32x4.dot_i16x8_s
const block = [0x02, 0x40];
const loop = [0x03, 0x40];
const end = [0x0b];
const br = (d: number) => [0x0c, ...uleb(d)];
const brIf = (d: number) => [0x0d, ...uleb(d)];

// 32-bit lane shuffles for the 4-way horizontal sum
const INTERLEAVE_LO = [0, 1, 2, 3, 16, 17, 18, 19, 4, 5, 6, 7, 20, 21, 22, 23];
const INTERLEAVE_HI = [8, 9, 10, 11, 24, 25, 26, 27, 12, 13, 14, 15, 28, 29, 30, 31];
const LO64 = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];
const HI64 = [8, 9, 10, 11, 12, 13, 14, 15, 24, 25, 26, 27, 28, 29, 30, 31];

// locals: params, then i32 scratch, then v128 accumulators and temporaries
const [M, N, KB8, A, B, C, LDC] = [0, 1, 2, 3, 4, 5, 6];
const [I, J, KB, A0, A1, B0, B1, B2, B3, K, CP] = [7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17];
const ACC = [18, 19, 20, 21, 22, 23, 24, 25]; // acc[r * 4 + c]
const [VA0, VA1, VB] = [26, 27, 28];

/** [sum(x0), sum(x1), sum(x2), sum(x3)] of four i32x4 locals, left on the stack. */
function hsum4(x: number[]): number[] {
  const pair = (p: number, q: number) => [
    ...get(p), ...get(q), ...shuffle(INTERLEAVE_LO), ...get(p), ...get(q), ...shuffle(INTERLEAVE_HI), ...i32x4add,
  ];
  return [
    ...pair(x[0], x[1]), ...set(VA0), ...pair(x[2], x[3]), ...set(VA1),
    ...get(VA0), ...get(VA1), ...shuffle(LO64), ...get(VA0), ...get(VA1), ...shuffle(HI64), ...i32x4add,
  ];
}

function gemmBody(): number[] {
  const mac = (acc: number, va: number) => [...get(acc), ...get(va), ...get(VB), ...dot, ...i32x4add, ...set(acc)];
  const bcol = (bp: number, c: number) => [
    ...get(bp), ...get(K), ...add, ...load, ...set(VB), ...mac(ACC[c], VA0), ...mac(ACC[4 + c], VA1),
  ];
  const kLoop = [
    ...block, ...loop,
    ...get(K), ...get(KB), ...geU, ...brIf(1),
    ...get(A0), ...get(K), ...add, ...load, ...set(VA0),
    ...get(A1), ...get(K), ...add, ...load, ...set(VA1),
    ...bcol(B0, 0), ...bcol(B1, 1), ...bcol(B2, 2), ...bcol(B3, 3),
    ...get(K), ...i32c(16), ...add, ...set(K),
    ...br(0), ...end, ...end,
  ];
  const storeRow = (r: number) => [
    ...get(CP), ...get(CP), ...load, ...hsum4(ACC.slice(r * 4, r * 4 + 4)), ...i32x4add, ...store,
  ];
  const jLoop = [
    ...block, ...loop,
    ...get(J), ...get(N), ...geU, ...brIf(1),
    ...get(B), ...get(J), ...get(KB), ...mul, ...add, ...set(B0),
    ...get(B0), ...get(KB), ...add, ...set(B1),
    ...get(B1), ...get(KB), ...add, ...set(B2),
    ...get(B2), ...get(KB), ...add, ...set(B3),
    ...ACC.flatMap((a) => [...v128zero, ...set(a)]),
    ...i32c(0), ...set(K),
    ...kLoop,
    ...get(C), ...get(I), ...get(LDC), ...mul, ...get(J), ...add, ...i32c(2), ...shl, ...add, ...set(CP),
    ...storeRow(0),
    ...get(CP), ...get(LDC), ...i32c(2), ...shl, ...add, ...set(CP),
    ...storeRow(1),
    ...get(J), ...i32c(4), ...add, ...set(J),
    ...br(0), ...end, ...end,
  ];
  const iLoop = [
    ...block, ...loop,
    ...get(I), ...get(M), ...geU, ...brIf(1),
    ...get(A), ...get(I), ...get(KB), ...mul, ...add, ...set(A0),
    ...get(A0), ...get(KB), ...add, ...set(A1),
    ...i32c(0), ...set(J),
    ...jLoop,
    ...get(I), ...i32c(2), ...add, ...set(I),
    ...br(0), ...end, ...end,
  ];
  const locals = [2, ...uleb(11), I32, ...uleb(11), V128]; // 11 i32 (7..17), 11 v128 (18..28)
  const code = [
    ...get(KB8), ...i32c(4), ...shl, ...set(KB),
    ...i32c(0), ...set(I),
    ...iLoop,
    ...end,
  ];
  return vec([...locals, ...code]);
}

/**
 * conv(OCp, Pp, CP, KH, KW, rowStep, colStep, plane, w, x, c, ldc): a stride-1 convolution as shifted GEMMs,
 * with no im2row. x holds the zero-point-shifted, zero-padded input with channels interleaved in pairs,
 * x[cp][q][e] = input channel 2cp+e at padded position q (int16 pairs, `plane` bytes per channel pair);
 * w holds w[oc][kh][kw][cp] as int16 pairs. For output position p (on the padded width grid),
 *   C[oc, p] += sum_{kh, kw, cp} dot(w[oc][kh][kw][cp], x[cp][p + kh*rowStep/4 + kw*colStep/4])
 * in blocks of 4 output channels x 8 positions. Steps are in bytes; OCp % 4 == 0, Pp % 8 == 0.
 */
function convBody(): number[] {
  const [OCP, PP, CPN, KHN, KWN, ROWSTEP, COLSTEP, PLANE, Wp, Xp, Cp, LDCc] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const [OC, P, W0, W1, W2, W3, WO, KH, KW, XB, CI, CPTR, ROWB] = [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24];
  const AC = [25, 26, 27, 28, 29, 30, 31, 32]; // AC[r * 2 + h]
  const AV = [33, 34, 35, 36];
  const [VB0, VB1] = [37, 38];
  const W = [W0, W1, W2, W3];
  const macs = [0, 1, 2, 3].flatMap((r) => [
    ...get(AC[r * 2]), ...get(AV[r]), ...get(VB0), ...dot, ...i32x4add, ...set(AC[r * 2]),
    ...get(AC[r * 2 + 1]), ...get(AV[r]), ...get(VB1), ...dot, ...i32x4add, ...set(AC[r * 2 + 1]),
  ]);
  const ciLoop = [
    ...block, ...loop,
    ...get(CI), ...get(CPN), ...geU, ...brIf(1),
    ...[0, 1, 2, 3].flatMap((r) => [...get(W[r]), ...get(WO), ...add, ...load32Splat, ...set(AV[r])]),
    ...get(XB), ...load, ...set(VB0),
    ...get(XB), ...loadAt(16), ...set(VB1),
    ...macs,
    ...get(WO), ...i32c(4), ...add, ...set(WO),
    ...get(XB), ...get(PLANE), ...add, ...set(XB),
    ...get(CI), ...i32c(1), ...add, ...set(CI),
    ...br(0), ...end, ...end,
  ];
  const kwLoop = [
    ...block, ...loop,
    ...get(KW), ...get(KWN), ...geU, ...brIf(1),
    // xb = x + p*4 + kh*rowStep + kw*colStep
    ...get(Xp), ...get(P), ...i32c(2), ...shl, ...add,
    ...get(KH), ...get(ROWSTEP), ...mul, ...add,
    ...get(KW), ...get(COLSTEP), ...mul, ...add, ...set(XB),
    ...i32c(0), ...set(CI),
    ...ciLoop,
    ...get(KW), ...i32c(1), ...add, ...set(KW),
    ...br(0), ...end, ...end,
  ];
  const khLoop = [
    ...block, ...loop,
    ...get(KH), ...get(KHN), ...geU, ...brIf(1),
    ...i32c(0), ...set(KW),
    ...kwLoop,
    ...get(KH), ...i32c(1), ...add, ...set(KH),
    ...br(0), ...end, ...end,
  ];
  const storeRow = (r: number) => [
    ...get(CPTR), ...get(CPTR), ...load, ...get(AC[r * 2]), ...i32x4add, ...store,
    ...get(CPTR), ...get(CPTR), ...loadAt(16), ...get(AC[r * 2 + 1]), ...i32x4add, ...storeAt(16),
    ...get(CPTR), ...get(LDCc), ...i32c(2), ...shl, ...add, ...set(CPTR),
  ];
  const pLoop = [
    ...block, ...loop,
    ...get(P), ...get(PP), ...geU, ...brIf(1),
    ...AC.flatMap((a) => [...v128zero, ...set(a)]),
    ...i32c(0), ...set(WO),
    ...i32c(0), ...set(KH),
    ...khLoop,
    ...get(Cp), ...get(OC), ...get(LDCc), ...mul, ...get(P), ...add, ...i32c(2), ...shl, ...add, ...set(CPTR),
    ...storeRow(0), ...storeRow(1), ...storeRow(2), ...storeRow(3),
    ...get(P), ...i32c(8), ...add, ...set(P),
    ...br(0), ...end, ...end,
  ];
  const ocLoop = [
    ...block, ...loop,
    ...get(OC), ...get(OCP), ...geU, ...brIf(1),
    ...get(Wp), ...get(OC), ...get(ROWB), ...mul, ...add, ...set(W0),
    ...get(W0), ...get(ROWB), ...add, ...set(W1),
    ...get(W1), ...get(ROWB), ...add, ...set(W2),
    ...get(W2), ...get(ROWB), ...add, ...set(W3),
    ...i32c(0), ...set(P),
    ...pLoop,
    ...get(OC), ...i32c(4), ...add, ...set(OC),
    ...br(0), ...end, ...end,
  ];
  const locals = [2, ...uleb(13), I32, ...uleb(14), V128]; // 13 i32 (12..24), 14 v128 (25..38)
  const code = [
    // bytes per weight row: KH * KW * CP pairs of int16
    ...get(KHN), ...get(KWN), ...mul, ...get(CPN), ...mul, ...i32c(2), ...shl, ...set(ROWB),
    ...i32c(0), ...set(OC),
    ...ocLoop,
    ...end,
  ];
  return vec([...locals, ...code]);
}

/** The module: memory 'm' (exported, grown by the caller), gemm(M, N, K/8, a, b, c, ldc) and conv(...). */
export function gemmModuleBytes(): Uint8Array<ArrayBuffer> {
  const types = section(1, [2, 0x60, 7, ...new Array(7).fill(I32), 0, 0x60, 12, ...new Array(12).fill(I32), 0]);
  const funcs = section(3, [2, 0, 1]);
  const memory = section(5, [1, 0x00, 1]); // min 1 page, no max
  const name = (s: string) => vec([...s].map((c) => c.charCodeAt(0)));
  const exports = section(7, [3, ...name('m'), 0x02, 0, ...name('gemm'), 0x00, 0, ...name('conv'), 0x00, 1]);
  const code = section(10, [2, ...gemmBody(), ...convBody()]);
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...funcs, ...memory, ...exports, ...code]);
}

export interface WasmGemm {
  memory: WebAssembly.Memory;
  gemm: (M: number, N: number, K8: number, a: number, b: number, c: number, ldc: number) => void;
  conv: (
    OCp: number, Pp: number, CP: number, KH: number, KW: number, rowStep: number, colStep: number, plane: number,
    w: number, x: number, c: number, ldc: number,
  ) => void;
}

let instance: WasmGemm | null | undefined;

/** The instantiated module, or null where WebAssembly SIMD is unavailable (QATKIT_NO_WASM=1 also turns it off). */
export function wasmGemm(): WasmGemm | null {
  if (instance !== undefined) return instance;
  instance = null;
  try {
    const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
    if (env?.QATKIT_NO_WASM === '1' || typeof WebAssembly === 'undefined') return instance;
    const bytes = gemmModuleBytes();
    if (!WebAssembly.validate(bytes)) return instance;
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes));
    const ex = inst.exports as unknown as { m: WebAssembly.Memory; gemm: WasmGemm['gemm']; conv: WasmGemm['conv'] };
    instance = { memory: ex.m, gemm: ex.gemm, conv: ex.conv };
  } catch {
    instance = null;
  }
  return instance;
}
