// The engine's WebAssembly SIMD kernels, assembled here from a few opcodes (no toolchain, no binary blob):
// - gemm: C[i, j] += sum_k A[i, k] * B[j, k]  (A: [Mp, Kp] int16, B: [Np, Kp] int16, C: [Mp, ldc] int32)
//   in blocks of 2 rows x 4 columns with i32x4.dot_i16x8_s (8 multiply-adds per instruction, exact in int32).
//   Sizes are padded by the caller: Mp even, Np a multiple of 4, Kp a multiple of 8 with zeros in A's padding.
// - conv: a stride-1 convolution as shifted GEMMs over a padded input (no im2row).
// - requant: int32 accumulators to 8 bits, ONNX Runtime's float32 way or gemmlowp's fixed point (double or single rounding).
// Standard wasm SIMD (Node >= 16, every current browser); where it is missing, callers use JS loops, same results.

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
 *   C[oc, p] = sum_{kh, kw, cp} dot(w[oc][kh][kw][cp], x[cp][p + kh*rowStep/4 + kw*colStep/4])
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
    ...get(CPTR), ...get(AC[r * 2]), ...store,
    ...get(CPTR), ...get(AC[r * 2 + 1]), ...storeAt(16),
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

/**
 * requant(c, ldc, nOc, OH, OW, wp, table, out, zp, qmin, qmax, mode): int32 accumulator rows to 8-bit outputs.
 * Row o of C (stride ldc) holds output rows oh at c + (o*ldc + oh*wp)*4; out receives o*OH*OW + oh*OW + ow bytes
 * (up to 3 bytes of scratch past the end). table holds per row {f32 multiplier, i32 bias, i32 Q31 multiplier,
 * i32 shift}. mode 0: ONNX Runtime's float32 requantization (convert, multiply, clamp, round half to even, add zp);
 * mode 1: gemmlowp's fixed point (SaturatingRoundingDoublingHighMul, whose nudge makes it floor((a*b + 2^30) / 2^31)
 * for a positive multiplier, then RoundingDivideByPOT), 4 values at a time; mode 2: fixed point with one rounding,
 * (x*M + 2^(30+right)) >> (31+right) in int64 (TFLite's TFLITE_SINGLE_ROUNDING).
 */
function requantBody(): number[] {
  const [Cc, LDC2, NOC, OH, OW, WP, TAB, OUT, ZP, QMIN, QMAX, MODE] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11];
  const [O, OHI, OWI, S, D, TP, LEFT, RIGHT, SHIFT, MASK, SH64] = [12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22];
  const [VBIAS, VMULT, VM, VLO, VHI, VZP, VQMIN, VQMAX, X, P0, P1, VMASK, VHALF, VROUND, VMAGIC, VMAGICBITS] =
    [23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38];
  const i32load = (off: number) => [0x28, 2, ...uleb(off)];
  const f32load = (off: number) => [0x2a, 2, ...uleb(off)];
  const i32store = [0x36, 0, 0];
  const sub = [0x6b];
  const gtS = [0x4a];
  const shrS = [0x75];
  const select = [0x1b];
  const eqz = [0x45];
  const i64c = (v: number) => [0x42, ...sleb(v)];
  const i32eq = [0x46];
  const i64extendU = [0xad];
  const i64shl = [0x86];
  const f32FromI32 = [0xb2];
  const i32splat = simd(0x11);
  const i64splat = simd(0x12);
  const f32splat = simd(0x13);
  const i32x4shl = simd(0xab);
  const i32x4shrS = simd(0xac);
  const i32x4sub = simd(0xb1);
  const i32x4minS = simd(0xb6);
  const i32x4maxS = simd(0xb8);
  const i32x4ltS = simd(0x39);
  const i32x4gtS = simd(0x3b);
  const vand = simd(0x4e);
  const i64x2add = simd(0xce);
  const i64x2shrS = simd(0xcc);
  const extmulLo = simd(0xdc);
  const extmulHi = simd(0xdd);
  const f32x4fromI32 = simd(0xfa);
  const f32x4mul = simd(0xe6);
  const f32x4add = simd(0xe4);
  const f32x4pmin = simd(0xea);
  const f32x4pmax = simd(0xeb);
  const f32c = (v: number) => [0x43, ...new Uint8Array(Float32Array.of(v).buffer)];
  const extract0 = simd(0x1b, 0);
  const ifElse = (a: number[], b: number[]) => [0x04, 0x40, ...a, 0x05, ...b, 0x0b];
  const LOW32 = [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27];
  const LOWBYTES = [0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12, 0, 4, 8, 12];
  const prod = (ext: number[]) => [...get(X), ...get(VM), ...ext, ...get(VROUND), ...i64x2add, ...get(SH64), ...i64x2shrS];
  const fixedPath = [
    ...get(X), ...get(LEFT), ...i32x4shl, ...set(X),
    ...prod(extmulLo), ...set(P0), ...prod(extmulHi), ...set(P1),
    ...get(P0), ...get(P1), ...shuffle(LOW32), ...set(X),
    // RoundingDivideByPOT: (x >> right) + (remainder > threshold), threshold = mask/2 + (x < 0)
    ...get(X), ...get(RIGHT), ...i32x4shrS,
    ...get(X), ...get(VMASK), ...vand,
    ...get(VHALF), ...get(X), ...v128zero, ...i32x4ltS, ...i32x4sub,
    ...i32x4gtS, ...i32x4sub,
    ...get(VZP), ...i32x4add, ...get(VQMIN), ...i32x4maxS, ...get(VQMAX), ...i32x4minS, ...set(X),
  ];
  // clamp (pmax/pmin are plain maxps/minps: no NaN can occur here), round half to even by a float add of 1.5 * 2^23
  // (the integer lands in the low mantissa bits), then add the zero point as an integer: adding it inside the float
  // add would round ties of v + zp instead of v, one off from MLAS at exact ties when zp is odd
  const floatPath = [
    ...get(X), ...f32x4fromI32, ...get(VMULT), ...f32x4mul, ...get(VLO), ...f32x4pmax, ...get(VHI), ...f32x4pmin,
    ...get(VMAGIC), ...f32x4add, ...get(VMAGICBITS), ...i32x4sub, ...get(VZP), ...i32x4add, ...set(X),
  ];
  const owLoop = [
    ...block, ...loop,
    ...get(OWI), ...get(OW), ...geU, ...brIf(1),
    ...get(S), ...load, ...get(VBIAS), ...i32x4add, ...set(X),
    ...get(MODE), ...eqz, ...ifElse(floatPath, fixedPath),
    ...get(D), ...get(X), ...get(X), ...shuffle(LOWBYTES), ...extract0, ...i32store,
    ...get(S), ...i32c(16), ...add, ...set(S),
    ...get(D), ...i32c(4), ...add, ...set(D),
    ...get(OWI), ...i32c(4), ...add, ...set(OWI),
    ...br(0), ...end, ...end,
  ];
  const ohLoop = [
    ...block, ...loop,
    ...get(OHI), ...get(OH), ...geU, ...brIf(1),
    // s = c + (o*ldc + oh*wp)*4, d = out + (o*OH + oh)*OW
    ...get(Cc), ...get(O), ...get(LDC2), ...mul, ...get(OHI), ...get(WP), ...mul, ...add, ...i32c(2), ...shl, ...add, ...set(S),
    ...get(OUT), ...get(O), ...get(OH), ...mul, ...get(OHI), ...add, ...get(OW), ...mul, ...add, ...set(D),
    ...i32c(0), ...set(OWI),
    ...owLoop,
    ...get(OHI), ...i32c(1), ...add, ...set(OHI),
    ...br(0), ...end, ...end,
  ];
  const oLoop = [
    ...block, ...loop,
    ...get(O), ...get(NOC), ...geU, ...brIf(1),
    ...get(TAB), ...get(O), ...i32c(4), ...shl, ...add, ...set(TP),
    ...get(TP), ...f32load(0), ...f32splat, ...set(VMULT),
    ...get(TP), ...i32load(4), ...i32splat, ...set(VBIAS),
    ...get(TP), ...i32load(8), ...i32splat, ...set(VM),
    ...get(TP), ...i32load(12), ...set(SHIFT),
    // left = max(shift, 0), right = max(-shift, 0)
    ...get(SHIFT), ...i32c(0), ...get(SHIFT), ...i32c(0), ...gtS, ...select, ...set(LEFT),
    ...i32c(0), ...i32c(0), ...get(SHIFT), ...sub, ...get(SHIFT), ...i32c(0), ...gtS, ...select, ...set(RIGHT),
    // mode 2 (single rounding): the product is rounded once, by 2^(31 + right), and RoundingDivideByPOT shifts by 0;
    // mode 1: (x*M + 2^30) >> 31, then RoundingDivideByPOT by right
    ...i32c(31), ...get(RIGHT), ...i32c(0), ...get(MODE), ...i32c(2), ...i32eq, ...select, ...add, ...set(SH64),
    ...i64c(1), ...get(SH64), ...i32c(1), ...sub, ...i64extendU, ...i64shl, ...i64splat, ...set(VROUND),
    ...i32c(0), ...get(RIGHT), ...get(MODE), ...i32c(2), ...i32eq, ...select, ...set(RIGHT),
    ...i32c(1), ...get(RIGHT), ...shl, ...i32c(1), ...sub, ...set(MASK),
    ...get(MASK), ...i32splat, ...set(VMASK),
    ...get(MASK), ...i32c(1), ...shrS, ...i32splat, ...set(VHALF),
    ...i32c(0), ...set(OHI),
    ...ohLoop,
    ...get(O), ...i32c(1), ...add, ...set(O),
    ...br(0), ...end, ...end,
  ];
  const locals = [2, ...uleb(11), I32, ...uleb(16), V128]; // 11 i32 (12..22), 16 v128 (23..38)
  const code = [
    ...f32c(12582912), ...f32splat, ...set(VMAGIC), // 1.5 * 2^23
    ...i32c(0x4b400000), ...i32splat, ...set(VMAGICBITS),
    ...get(QMIN), ...get(ZP), ...sub, ...f32FromI32, ...f32splat, ...set(VLO),
    ...get(QMAX), ...get(ZP), ...sub, ...f32FromI32, ...f32splat, ...set(VHI),
    ...get(ZP), ...i32splat, ...set(VZP),
    ...get(QMIN), ...i32splat, ...set(VQMIN),
    ...get(QMAX), ...i32splat, ...set(VQMAX),
    ...i32c(0), ...set(O),
    ...oLoop,
    ...end,
  ];
  return vec([...locals, ...code]);
}

/** The module: memory 'm' (exported, grown by the caller), gemm(M, N, K/8, a, b, c, ldc), conv(...), requant(...). */
export function gemmModuleBytes(): Uint8Array<ArrayBuffer> {
  const types = section(1, [2, 0x60, 7, ...new Array(7).fill(I32), 0, 0x60, 12, ...new Array(12).fill(I32), 0]);
  const funcs = section(3, [3, 0, 1, 1]);
  const memory = section(5, [1, 0x00, 1]); // min 1 page, no max
  const name = (s: string) => vec([...s].map((c) => c.charCodeAt(0)));
  const exports = section(7, [4, ...name('m'), 0x02, 0, ...name('gemm'), 0x00, 0, ...name('conv'), 0x00, 1, ...name('requant'), 0x00, 2]);
  const code = section(10, [3, ...gemmBody(), ...convBody(), ...requantBody()]);
  return new Uint8Array([0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, ...types, ...funcs, ...memory, ...exports, ...code]);
}

export interface WasmGemm {
  memory: WebAssembly.Memory;
  gemm: (M: number, N: number, K8: number, a: number, b: number, c: number, ldc: number) => void;
  conv: (
    OCp: number, Pp: number, CP: number, KH: number, KW: number, rowStep: number, colStep: number, plane: number,
    w: number, x: number, c: number, ldc: number,
  ) => void;
  requant: (
    c: number, ldc: number, nOc: number, OH: number, OW: number, wp: number, table: number, out: number,
    zp: number, qmin: number, qmax: number, mode: number,
  ) => void;
}

let instance: WasmGemm | null | undefined;
let enabled = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env?.QATKIT_NO_WASM !== '1';

/**
 * Turn the WebAssembly kernels off (or back on): the engine then runs its plain JS loops, same results.
 * QATKIT_NO_WASM=1 in the environment starts with them off. Returns the previous setting.
 */
export function setIntWasm(on: boolean): boolean {
  const was = enabled;
  enabled = on;
  return was;
}

/**
 * The instantiated module, or null where WebAssembly SIMD is unavailable or turned off. Compiled synchronously:
 * the module is about 2 KB, under the 4 KB browsers allow for synchronous compiles on the main thread.
 */
export function wasmGemm(): WasmGemm | null {
  if (!enabled) return null;
  if (instance !== undefined) return instance;
  instance = null;
  try {
    if (typeof WebAssembly === 'undefined') return instance;
    const bytes = gemmModuleBytes();
    if (!WebAssembly.validate(bytes)) return instance;
    const inst = new WebAssembly.Instance(new WebAssembly.Module(bytes));
    const ex = inst.exports as unknown as { m: WebAssembly.Memory } & Omit<WasmGemm, 'memory'>;
    instance = { memory: ex.m, gemm: ex.gemm, conv: ex.conv, requant: ex.requant };
  } catch {
    instance = null;
  }
  return instance;
}
