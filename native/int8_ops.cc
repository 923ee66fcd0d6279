// The integer engine's fused native kernels (src/int, through its provider registry), AVX-512 VNNI:
//   qconv: a whole QLinearConv / ConvInteger (2-D; 1-D as 1 x W; one group per call, every image) as a direct
//     convolution with the requantization in the epilogue, 8-bit (or int32) outputs written in place;
//   requant: int32 rows to 8 bits (QGemm, QLinearGlobalAveragePool);
//   quantize (QuantizeLinear per tensor), qadd (QLinearAdd of same-shape inputs), and, with portable fallbacks,
//   maxpool (2-D, 8-bit) and planeSums (QLinearGlobalAveragePool's sums).
// Every result equals the engine's JS / wasm path bit for bit (src/int/native_gemm.test.ts).
//
// Direct convolution. Each image's input is repacked once into "channel quads": dword [cq][row][col] holds the 4
// channels 4cq..4cq+3 (uint8; int8 + 128), padded with the zero point and split into SH x SW stride phases, so that
// output q = oh * Wq + ow (computed on the phase plane's width Wq, columns ow >= OW dropped) reads tap (kh, kw) at
// dword q + (kh*DH / SH) * Wq + kw*DW / SW of phase plane (kh*DH % SH, kw*DW % SW): 16 consecutive outputs are one
// 64-byte load, no im2row. vpdpbusd multiplies those raw uint8 by 4 int8 weights of one output channel (broadcast)
// into 16 int32 sums, exact. Weights are B' = w - w_zp shifted into int8 per channel (s8 = B' + zb, as int8_gemm.cc
// packs them) so the true sum is  sum a*s8 - zb * sum a - za * sum s8 + K * za * zb  (mod 2^32, like the engine's
// int32 accumulation); sum a comes from a ones row in the same loop, only when some zb != 0.
#include <node_api.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "threadpool.h"

extern "C" int qk_int8_level();  // int8_gemm.cc

namespace {

#define QK_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni")))

bool have_vnni() { return qk_int8_level() == 2; }

inline uint32_t u(int64_t v) { return uint32_t(v); }

// Scratch reused across calls (per thread: the addon may be called from worker threads).
template <class T>
T* scratch(std::vector<T>& v, size_t n) {
  if (v.size() < n) v.resize(n);
  return v.data();
}

// ---- packed conv weights ------------------------------------------------------------------------------------------
// int32 header[16] {kind 2, OC, Cg, KH, KW, CQ, NOB, anyZb}, then int32 zb[NOB*8], sb[NOB*8], then int8 panels
// [ob][j = (kh*KW + kw)*CQ + cq][o < 8][4 channels]. Channels past Cg and output channels past OC hold B' = 0.
constexpr int OCB = 8, HDRW = 16;

struct ConvW {
  int OC, Cg, KH, KW, CQ, NOB, anyZb;
  const int32_t* zb;
  const int32_t* sb;
  const int8_t* P;
  ConvW() = default;
  explicit ConvW(const uint8_t* blob) {
    const int32_t* h = reinterpret_cast<const int32_t*>(blob);
    OC = h[1], Cg = h[2], KH = h[3], KW = h[4], CQ = h[5], NOB = h[6], anyZb = h[7];
    zb = h + HDRW;
    sb = zb + NOB * OCB;
    P = reinterpret_cast<const int8_t*>(sb + NOB * OCB);
  }
  int J() const { return KH * KW * CQ; }
};

int64_t conv_packed_size(int OC, int Cg, int KH, int KW) {
  const int64_t NOB = (OC + OCB - 1) / OCB, CQ = (Cg + 3) / 4;
  return 4 * (HDRW + 2 * NOB * OCB) + NOB * KH * KW * CQ * OCB * 4;
}

// B: [OC][Cg*KH*KW] int16 B' (row stride ldb). Returns -1 when a channel's B' spans more than 256 values.
int conv_pack(const int16_t* B, int64_t ldb, int OC, int Cg, int KH, int KW, uint8_t* blob) {
  std::memset(blob, 0, conv_packed_size(OC, Cg, KH, KW));
  const int CQ = (Cg + 3) / 4, NOB = (OC + OCB - 1) / OCB, T = KH * KW, K = Cg * T;
  int32_t* h = reinterpret_cast<int32_t*>(blob);
  h[0] = 2, h[1] = OC, h[2] = Cg, h[3] = KH, h[4] = KW, h[5] = CQ, h[6] = NOB;
  int32_t* zb = h + HDRW;
  int32_t* sb = zb + NOB * OCB;
  int8_t* P = reinterpret_cast<int8_t*>(sb + NOB * OCB);
  for (int oc = 0; oc < OC; oc++) {
    const int16_t* b = B + int64_t(oc) * ldb;
    int lo = 0, hi = 0;
    for (int k = 0; k < K; k++) lo = k == 0 || b[k] < lo ? b[k] : lo, hi = k == 0 || b[k] > hi ? b[k] : hi;
    // padded channels are B' = 0 too
    if (Cg % 4) lo = lo > 0 ? 0 : lo, hi = hi < 0 ? 0 : hi;
    if (hi - lo > 255) return -1;
    const int off = lo >= -128 && hi <= 127 ? 0 : -128 - lo;
    zb[oc] = off;
    if (off) h[7] = 1;
    int32_t s = 0;
    const int ob = oc / OCB, o = oc % OCB;
    for (int t = 0; t < T; t++)
      for (int c = 0; c < CQ * 4; c++) {
        const int v = (c < Cg ? b[c * T + t] : 0) + off;
        s += v;
        P[((int64_t(ob) * T + t) * CQ + c / 4) * OCB * 4 + o * 4 + c % 4] = int8_t(v);
      }
    sb[oc] = s;
  }
  return 0;
}

// ---- requantization (one function for every kernel) ------------------------------------------------------------
// Per-lane parameters: float32 multiplier, int32 bias, Q31 multiplier M0 and shift. Modes as the wasm drain:
// 0 ONNX Runtime's float32 (convert, multiply, clamp, round half to even, add zp), 1 gemmlowp's fixed point
// (rounded twice), 2 fixed point rounded once, 3 none (int32 out: acc + bias).
struct RQ {
#if defined(__x86_64__)
  __m512 mult;
  __m512i bias, m0, left, sh_even, sh_odd, rnd_even, rnd_odd, right;
#endif
};

struct RQConst {
#if defined(__x86_64__)
  __m512i zp, qmin, qmax;
  __m512 lo, hi;
#endif
  int mode;
};

#if defined(__x86_64__)
QK_AVX512 inline RQConst rq_const(int mode, int32_t zp, int32_t qmin, int32_t qmax) {
  RQConst c;
  c.mode = mode;
  c.zp = _mm512_set1_epi32(zp), c.qmin = _mm512_set1_epi32(qmin), c.qmax = _mm512_set1_epi32(qmax);
  c.lo = _mm512_set1_ps(float(qmin - zp)), c.hi = _mm512_set1_ps(float(qmax - zp));
  return c;
}

// Lane parameters from vectors of float multiplier bits, bias, M0 and shift.
QK_AVX512 inline RQ rq_lanes(int mode, __m512i multBits, __m512i bias, __m512i m0, __m512i shift) {
  RQ r;
  const __m512i zero = _mm512_setzero_si512();
  r.mult = _mm512_castsi512_ps(multBits);
  r.bias = bias;
  r.m0 = m0;
  r.left = _mm512_max_epi32(shift, zero);
  const __m512i right = _mm512_max_epi32(_mm512_sub_epi32(zero, shift), zero);
  // mode 2: one rounding by 2^(31 + right); mode 1: by 2^31, then RoundingDivideByPOT by right
  const __m512i sh = mode == 2 ? _mm512_add_epi32(right, _mm512_set1_epi32(31)) : _mm512_set1_epi32(31);
  r.right = mode == 2 ? zero : right;
  const __m512i lo32 = _mm512_set1_epi64(0xffffffff);
  r.sh_even = _mm512_and_si512(sh, lo32);
  r.sh_odd = _mm512_srli_epi64(sh, 32);
  const __m512i one = _mm512_set1_epi64(1);
  r.rnd_even = _mm512_sllv_epi64(one, _mm512_sub_epi64(r.sh_even, one));
  r.rnd_odd = _mm512_sllv_epi64(one, _mm512_sub_epi64(r.sh_odd, one));
  return r;
}

// x * M0 * 2^shift in fixed point: mode 1 rounded twice (gemmlowp), mode 2 once.
QK_AVX512 inline __m512i fixed_mul(__m512i x, const RQ& p, int mode) {
  x = _mm512_sllv_epi32(x, p.left);
  const __m512i ev = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(x, p.m0), p.rnd_even), p.sh_even);
  const __m512i od = _mm512_srav_epi64(_mm512_add_epi64(_mm512_mul_epi32(_mm512_srli_epi64(x, 32), _mm512_srli_epi64(p.m0, 32)), p.rnd_odd), p.sh_odd);
  x = _mm512_mask_blend_epi32(0xAAAA, ev, _mm512_slli_epi64(od, 32));
  if (mode == 1) {
    // RoundingDivideByPOT: (x >> right) + (remainder > mask/2 + (x < 0))
    const __m512i one = _mm512_set1_epi32(1);
    const __m512i mask = _mm512_sub_epi32(_mm512_sllv_epi32(one, p.right), one);
    const __m512i rem = _mm512_and_si512(x, mask);
    __m512i thr = _mm512_srai_epi32(mask, 1);
    thr = _mm512_mask_add_epi32(thr, _mm512_cmplt_epi32_mask(x, _mm512_setzero_si512()), thr, one);
    x = _mm512_mask_add_epi32(_mm512_srav_epi32(x, p.right), _mm512_cmpgt_epi32_mask(rem, thr), _mm512_srav_epi32(x, p.right), one);
  }
  return x;
}

// 16 accumulators to their outputs (saturated, zero point added; int32 for mode 3).
QK_AVX512 inline __m512i rq_apply(__m512i x, const RQ& p, const RQConst& c) {
  x = _mm512_add_epi32(x, p.bias);
  if (c.mode == 3) return x;
  if (c.mode == 0) {
    __m512 f = _mm512_mul_ps(_mm512_cvtepi32_ps(x), p.mult);
    f = _mm512_min_ps(_mm512_max_ps(f, c.lo), c.hi);
    return _mm512_add_epi32(_mm512_cvtps_epi32(f), c.zp);
  }
  x = fixed_mul(x, p, c.mode);
  return _mm512_min_epi32(_mm512_max_epi32(_mm512_add_epi32(x, c.zp), c.qmin), c.qmax);
}

// Store lanes of `mask` contiguously at dst (bytes, or int32 when wide).
QK_AVX512 inline void store_lanes(__m512i v, __mmask16 mask, void* dst, bool wide) {
  if (mask != 0xffff) v = _mm512_maskz_compress_epi32(mask, v);
  const int n = __builtin_popcount(mask);
  const __mmask16 m = __mmask16((1u << n) - 1);
  if (wide) _mm512_mask_storeu_epi32(dst, m, v);
  else _mm_mask_storeu_epi8(dst, m, _mm512_cvtepi32_epi8(v));
}
#endif

// ---- direct convolution -------------------------------------------------------------------------------------------
struct ConvGeo {
  int N, C, IH, IW, KH, KW, SH, SW, PH, PW, PHe, PWe, DH, DW, OH, OW, group, OCt, g;
  // derived
  int Cg, Wq, Hq, Qv, planes;
  int64_t Lp;
};

ConvGeo conv_geo(const int32_t* v, const ConvW& w) {
  ConvGeo G;
  G.N = v[0], G.C = v[1], G.IH = v[2], G.IW = v[3], G.KH = v[4], G.KW = v[5], G.SH = v[6], G.SW = v[7], G.PH = v[8],
  G.PW = v[9], G.PHe = v[10], G.PWe = v[11], G.DH = v[12], G.DW = v[13], G.OH = v[14], G.OW = v[15], G.group = v[16],
  G.OCt = v[17], G.g = v[18];
  G.Cg = G.C / G.group;
  if (G.Cg != w.Cg || G.KH != w.KH || G.KW != w.KW || G.OCt != w.OC * G.group) throw std::runtime_error("qconv: weights packed for another shape");
  G.Hq = (G.IH + G.PH + G.PHe + G.SH - 1) / G.SH;
  G.Wq = (G.IW + G.PW + G.PWe + G.SW - 1) / G.SW;
  G.Qv = (G.OH * G.Wq + 15) / 16;
  const int64_t reach = int64_t((G.KH - 1) * G.DH / G.SH) * G.Wq + (G.KW - 1) * G.DW / G.SW;
  G.Lp = std::max<int64_t>(int64_t(G.Hq) * G.Wq, G.Qv * 16 + reach);
  G.planes = G.SH * G.SW * w.CQ;
  return G;
}

#if defined(__x86_64__)
// Repack image n (group g) into quads: planes [(ph * SW + pw) * CQ + cq][Lp] dwords.
QK_AVX512 void conv_pack_input(const ConvGeo& G, const ConvW& w, const uint8_t* x, bool xs, uint8_t za, uint32_t* X, int n) {
  const int64_t plane = int64_t(G.IH) * G.IW;
  const uint8_t* img = x + (int64_t(n) * G.C + int64_t(G.g) * G.Cg) * plane;
  const uint8_t flip = xs ? 0x80 : 0;
  const uint32_t padw = 0x01010101u * za;
  // only the phases some tap reads
  bool usedH[64] = {false}, usedW[64] = {false};
  for (int kh = 0; kh < G.KH; kh++) usedH[(kh * G.DH) % G.SH] = true;
  for (int kw = 0; kw < G.KW; kw++) usedW[(kw * G.DW) % G.SW] = true;
  for (int ph = 0; ph < G.SH; ph++)
    for (int pw = 0; pw < G.SW; pw++) {
      if (!usedH[ph] || !usedW[pw]) continue;
      uint32_t* p = X + int64_t((ph * G.SW + pw) * w.CQ) * G.Lp;
      std::fill(p, p + w.CQ * G.Lp, padw);
    }
  const __m512i vflip = _mm512_set1_epi8(char(flip));
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  // strided: each input row is interleaved into tmp first, then dealt out to the column phases
  static thread_local std::vector<uint32_t> tmpV;
  uint32_t* tmp = scratch(tmpV, G.SW > 1 ? G.IW : 0);
  for (int cq = 0; cq < w.CQ; cq++) {
    const uint8_t* src[4];
    for (int j = 0; j < 4; j++) src[j] = 4 * cq + j < G.Cg ? img + (4 * cq + j) * plane : nullptr;
    for (int ih = 0; ih < G.IH; ih++) {
      const int ihp = ih + G.PH, ph = ihp % G.SH, row = ihp / G.SH;
      if (!usedH[ph]) continue;
      uint32_t* rowPlane = X + int64_t(ph * G.SW * w.CQ + cq) * G.Lp + int64_t(row) * G.Wq;  // phase (ph, 0)
      uint32_t* d = G.SW == 1 ? rowPlane + G.PW : tmp;
      for (int iw = 0; iw < G.IW; iw += 16) {
        const int cnt = G.IW - iw < 16 ? G.IW - iw : 16;
        const __mmask16 m = __mmask16((1u << cnt) - 1);
        __m512i acc = _mm512_setzero_si512();
        for (int j = 0; j < 4; j++) {
          const __m512i b = src[j] ? _mm512_cvtepu8_epi32(_mm_xor_si128(_mm_maskz_loadu_epi8(m, src[j] + int64_t(ih) * G.IW + iw),
                                                                        _mm512_castsi512_si128(vflip)))
                                   : _mm512_set1_epi32(za);
          acc = _mm512_or_si512(acc, _mm512_slli_epi32(b, 8 * j));
        }
        _mm512_mask_storeu_epi32(d + iw, m, acc);
      }
      if (G.SW == 1) continue;
      for (int pw = 0; pw < G.SW; pw++) {
        if (!usedW[pw]) continue;
        const int iw0 = ((pw - G.PW) % G.SW + G.SW) % G.SW;  // first input column of this phase
        if (iw0 >= G.IW) continue;
        const int n = (G.IW - iw0 + G.SW - 1) / G.SW;
        uint32_t* dst = rowPlane + int64_t(pw) * w.CQ * G.Lp + (iw0 + G.PW) / G.SW;
        const uint32_t* t = tmp + iw0;
        const int avail = G.IW - iw0;
        if (G.SW == 2) {
          for (int i = 0; i < n; i += 16) {
            const int r = avail - 2 * i;
            const __mmask16 m0 = __mmask16(r >= 16 ? 0xffff : (1u << r) - 1);
            const __mmask16 m1 = __mmask16(r >= 32 ? 0xffff : r <= 16 ? 0 : (1u << (r - 16)) - 1);
            const __m512i v = _mm512_permutex2var_epi32(_mm512_maskz_loadu_epi32(m0, t + 2 * i), even, _mm512_maskz_loadu_epi32(m1, t + 2 * i + 16));
            _mm512_mask_storeu_epi32(dst + i, __mmask16(n - i >= 16 ? 0xffff : (1u << (n - i)) - 1), v);
          }
        } else {
          for (int i = 0; i < n; i++) dst[i] = t[int64_t(i) * G.SW];
        }
      }
    }
  }
}

// acc[o][v] over all taps for 16 * NV outputs from dword q of the quads (xq = X + q), one block of 8 channels;
// with ZB also the ones row (sum of the inputs). Named accumulators: GCC keeps them in registers (an array of
// vectors was shuffled through the stack on every step).
template <int NV, bool ZB>
QK_AVX512 inline void conv_tile(const uint32_t* xq, const int64_t* offs, int J, const int8_t* wp, __m512i (&acc)[OCB][NV],
                                __m512i (&sa)[NV]) {
  const __m512i zero = _mm512_setzero_si512(), ones = _mm512_set1_epi8(1);
  __m512i a00 = zero, a10 = zero, a20 = zero, a30 = zero, a40 = zero, a50 = zero, a60 = zero, a70 = zero;
  __m512i a01 = zero, a11 = zero, a21 = zero, a31 = zero, a41 = zero, a51 = zero, a61 = zero, a71 = zero;
  __m512i s0 = zero, s1 = zero;
  for (int j = 0; j < J; j++) {
    const uint32_t* p = xq + offs[j];
    const __m512i x0 = _mm512_loadu_si512(p);
    const __m512i x1 = NV > 1 ? _mm512_loadu_si512(p + 16) : zero;
    const int8_t* wj = wp + int64_t(j) * OCB * 4;
#define QK_STEP(o)                                                             \
  {                                                                            \
    int32_t wv;                                                                \
    std::memcpy(&wv, wj + 4 * o, 4);                                           \
    const __m512i wb = _mm512_set1_epi32(wv);                                  \
    a##o##0 = _mm512_dpbusd_epi32(a##o##0, x0, wb);                            \
    if (NV > 1) a##o##1 = _mm512_dpbusd_epi32(a##o##1, x1, wb);                \
  }
    QK_STEP(0) QK_STEP(1) QK_STEP(2) QK_STEP(3) QK_STEP(4) QK_STEP(5) QK_STEP(6) QK_STEP(7)
#undef QK_STEP
    if (ZB) {
      s0 = _mm512_dpbusd_epi32(s0, x0, ones);
      if (NV > 1) s1 = _mm512_dpbusd_epi32(s1, x1, ones);
    }
  }
  const __m512i r0[OCB] = {a00, a10, a20, a30, a40, a50, a60, a70};
  const __m512i r1[OCB] = {a01, a11, a21, a31, a41, a51, a61, a71};
  for (int o = 0; o < OCB; o++) {
    acc[o][0] = r0[o];
    if (NV > 1) acc[o][NV - 1] = r1[o];
  }
  sa[0] = s0;
  if (NV > 1) sa[NV - 1] = s1;
}

struct ConvRun {
  ConvGeo G;
  ConvW w;
  const uint8_t* x;
  bool xs;
  uint8_t za;
  const int32_t* tab;  // SoA [4][OCt]: float multiplier bits, bias, M0, shift
  RQConst rc;
  void* y;
  bool wide;
  const int64_t* offs;   // tap offsets (dwords), in the weights' j order
  const int32_t* colc;   // per output channel: bias - za * sb + K * za * zb
  const uint16_t* vmask;  // kept lanes of each output vector
  const int32_t* vdst;   // output index (within the plane) of each vector's first kept lane
};


template <int NV, bool ZB>
QK_AVX512 void conv_block(const ConvRun& R, const uint32_t* X, int n, int ob, int v0) {
  const ConvGeo& G = R.G;
  __m512i acc[OCB][NV], sa[NV];
  conv_tile<NV, ZB>(X + int64_t(v0) * 16, R.offs, R.w.J(), R.w.P + int64_t(ob) * R.w.J() * OCB * 4, acc, sa);
  const int OCg = R.w.OC;
  const int64_t P = int64_t(G.OH) * G.OW;
  const int esz = R.wide ? 4 : 1;
  for (int o = 0; o < OCB; o++) {
    const int oc = ob * OCB + o;
    if (oc >= OCg) break;
    const int ch = G.g * OCg + oc;
    const RQ p = rq_lanes(R.rc.mode, _mm512_set1_epi32(R.tab[ch]), _mm512_set1_epi32(R.colc[oc]),
                          _mm512_set1_epi32(R.tab[2 * G.OCt + ch]), _mm512_set1_epi32(R.tab[3 * G.OCt + ch]));
    const __m512i nzb = _mm512_set1_epi32(-R.w.zb[oc]);
    uint8_t* base = static_cast<uint8_t*>(R.y) + ((int64_t(n) * G.OCt + ch) * P) * esz;
    for (int v = 0; v < NV; v++) {
      const int vi = v0 + v;
      if (!R.vmask[vi]) continue;
      __m512i a = acc[o][v];
      if (ZB) a = _mm512_add_epi32(a, _mm512_mullo_epi32(nzb, sa[v]));
      store_lanes(rq_apply(a, p, R.rc), R.vmask[vi], base + int64_t(R.vdst[vi]) * esz, R.wide);
    }
  }
}

template <bool ZB>
QK_AVX512 void conv_vectors(const ConvRun& R, const uint32_t* X, int n, int v0, int v1) {
  for (int ob = 0; ob < R.w.NOB; ob++) {
    int v = v0;
    for (; v + 2 <= v1; v += 2) conv_block<2, ZB>(R, X, n, ob, v);
    if (v < v1) conv_block<1, ZB>(R, X, n, ob, v);
  }
}

QK_AVX512 void conv_run(ConvRun& R) {
  const ConvGeo& G = R.G;
  const ConvW& w = R.w;
  static thread_local std::vector<int64_t> offsV;
  static thread_local std::vector<int32_t> colcV, vdstV;
  static thread_local std::vector<uint16_t> vmaskV;
  int64_t* offs = scratch(offsV, w.J());
  int32_t* colc = scratch(colcV, w.OC);
  uint16_t* vmask = scratch(vmaskV, G.Qv);
  int32_t* vdst = scratch(vdstV, G.Qv);
  R.offs = offs, R.colc = colc, R.vmask = vmask, R.vdst = vdst;
  for (int kh = 0; kh < G.KH; kh++)
    for (int kw = 0; kw < G.KW; kw++)
      for (int cq = 0; cq < w.CQ; cq++) {
        const int ph = kh * G.DH % G.SH, pw = kw * G.DW % G.SW;
        offs[(kh * G.KW + kw) * w.CQ + cq] =
            int64_t((ph * G.SW + pw) * w.CQ + cq) * G.Lp + int64_t(kh * G.DH / G.SH) * G.Wq + kw * G.DW / G.SW;
      }
  const int32_t K = G.KH * G.KW * w.CQ * 4;
  const int32_t za = R.za;
  for (int oc = 0; oc < w.OC; oc++)
    colc[oc] = int32_t(u(R.tab[G.OCt + G.g * w.OC + oc]) - u(za) * u(w.sb[oc]) + u(K) * u(za) * u(w.zb[oc]));
  // kept lanes row by row: q in [oh * Wq, oh * Wq + OW) (a division per lane cost a quarter of a batch-1 convolution)
  std::fill(vmask, vmask + G.Qv, uint16_t(0));
  for (int oh = 0; oh < G.OH; oh++) {
    const int a = oh * G.Wq, b = a + G.OW;
    for (int vi = a / 16; vi * 16 < b; vi++) {
      const int lo = std::max(a, vi * 16) - vi * 16, hi = std::min(b, vi * 16 + 16) - vi * 16;
      if (!vmask[vi]) vdst[vi] = oh * G.OW + (vi * 16 + lo - a);
      vmask[vi] = uint16_t(vmask[vi] | (((1u << hi) - 1) & ~((1u << lo) - 1)));
    }
  }
  const int64_t xsz = int64_t(G.planes) * G.Lp;
  auto vectors = [&](const uint32_t* X, int n, int v0, int v1) {
    if (w.anyZb) conv_vectors<true>(R, X, n, v0, v1);
    else conv_vectors<false>(R, X, n, v0, v1);
  };
  qk::ThreadPool& pool = qk::ThreadPool::get();
  if (pool.size() == 1 || G.N >= 2 * pool.size()) {
    qk::parallel_range(G.N, 1, [&](int64_t n0, int64_t n1) {
      static thread_local std::vector<uint32_t> XV;
      uint32_t* X = scratch(XV, xsz);
      for (int64_t n = n0; n < n1; n++) {
        conv_pack_input(G, w, R.x, R.xs, R.za, X, int(n));
        vectors(X, int(n), 0, G.Qv);
      }
    });
  } else {
    static thread_local std::vector<uint32_t> XV;
    uint32_t* X = scratch(XV, xsz);
    for (int n = 0; n < G.N; n++) {
      conv_pack_input(G, w, R.x, R.xs, R.za, X, n);
      qk::parallel_range(G.Qv, 4, [&](int64_t v0, int64_t v1) { vectors(X, n, int(v0), int(v1)); });
    }
  }
}

// ---- row requantization, quantize, maxpool, table add, plane sums ----------------------------------------------
// C [M, N] (ldc) to Y [M, N] bytes; tab SoA [4][nt], nt = N (per column) or 1 (per tensor).
QK_AVX512 void requant_rows(const int32_t* C, int M, int N, int ldc, const int32_t* tab, int nt, const RQConst& rc, uint8_t* Y) {
  for (int n0 = 0; n0 < N; n0 += 16) {
    const int cnt = N - n0 < 16 ? N - n0 : 16;
    const __mmask16 m = __mmask16((1u << cnt) - 1);
    __m512i f[4];
    for (int k = 0; k < 4; k++) f[k] = nt == 1 ? _mm512_set1_epi32(tab[k]) : _mm512_maskz_loadu_epi32(m, tab + k * nt + n0);
    const RQ p = rq_lanes(rc.mode, f[0], f[1], f[2], f[3]);
    for (int r = 0; r < M; r++) {
      const __m512i v = rq_apply(_mm512_maskz_loadu_epi32(m, C + int64_t(r) * ldc + n0), p, rc);
      _mm_mask_storeu_epi8(Y + int64_t(r) * N + n0, m, _mm512_cvtepi32_epi8(v));
    }
  }
}

QK_AVX512 void quantize_f32(const float* x, int64_t n, float scale, const RQConst& rc, uint8_t* y) {
  const __m512 s = _mm512_set1_ps(scale);
  for (int64_t i = 0; i < n; i += 16) {
    const int cnt = n - i < 16 ? int(n - i) : 16;
    const __mmask16 m = __mmask16((1u << cnt) - 1);
    // max(v, lo) returns lo for a NaN v (its second operand), as the engine's clamp does
    __m512 v = _mm512_div_ps(_mm512_maskz_loadu_ps(m, x + i), s);
    v = _mm512_min_ps(_mm512_max_ps(v, rc.lo), rc.hi);
    _mm_mask_storeu_epi8(y + i, m, _mm512_cvtepi32_epi8(_mm512_add_epi32(_mm512_cvtps_epi32(v), rc.zp)));
  }
}

// QLinearAdd of same-shape 8-bit a and b. p: mode, zA, zB, zC, qmin, qmax, then for mode 0 (float32, as the
// engine's MLAS emulation: fmaf(a, rA, fmaf(b, rB, fixed)), each fmaf one rounding in double then one to float32,
// exactly what the JS computes) rA, rB, fixed; for modes 1 and 2 (TFLite's integer Add) the multipliers and shifts
// of a, b and the output.
QK_AVX512 void qadd(const void* a, const void* b, bool sgn, int64_t n, const double* p, uint8_t* y) {
  const int mode = int(p[0]);
  const __m512i zA = _mm512_set1_epi32(int32_t(p[1])), zB = _mm512_set1_epi32(int32_t(p[2]));
  const RQConst c = rq_const(mode, int32_t(p[3]), int32_t(p[4]), int32_t(p[5]));
  const __m512 qlo = _mm512_set1_ps(float(p[4])), qhi = _mm512_set1_ps(float(p[5]));
  const __m512d rA = _mm512_set1_pd(p[6]), rB = _mm512_set1_pd(p[7]), fx = _mm512_set1_pd(p[8]);
  const __m512i z = _mm512_setzero_si512();
  RQ q[3];
  for (int k = 0; k < 3; k++) q[k] = rq_lanes(mode, z, z, _mm512_set1_epi32(int32_t(p[9 + 2 * k])), _mm512_set1_epi32(int32_t(p[10 + 2 * k])));
  const RQ &qa = q[0], &qb = q[1], &qo = q[2];
  const uint8_t* pa = static_cast<const uint8_t*>(a);
  const uint8_t* pb = static_cast<const uint8_t*>(b);
  for (int64_t i = 0; i < n; i += 16) {
    const int cnt = n - i < 16 ? int(n - i) : 16;
    const __mmask16 m = __mmask16((1u << cnt) - 1);
    const __m128i ra = _mm_maskz_loadu_epi8(m, pa + i), rb = _mm_maskz_loadu_epi8(m, pb + i);
    const __m512i va = sgn ? _mm512_cvtepi8_epi32(ra) : _mm512_cvtepu8_epi32(ra);
    const __m512i vb = sgn ? _mm512_cvtepi8_epi32(rb) : _mm512_cvtepu8_epi32(rb);
    __m512i r;
    if (mode == 0) {
      __m256 h[2];
      for (int k = 0; k < 2; k++) {
        const __m256i ak = k ? _mm512_extracti64x4_epi64(va, 1) : _mm512_castsi512_si256(va);
        const __m256i bk = k ? _mm512_extracti64x4_epi64(vb, 1) : _mm512_castsi512_si256(vb);
        const __m256 inner = _mm512_cvtpd_ps(_mm512_fmadd_pd(_mm512_cvtepi32_pd(bk), rB, fx));
        h[k] = _mm512_cvtpd_ps(_mm512_fmadd_pd(_mm512_cvtepi32_pd(ak), rA, _mm512_cvtps_pd(inner)));
      }
      __m512 v = _mm512_castpd_ps(_mm512_insertf64x4(_mm512_castps_pd(_mm512_castps256_ps512(h[0])), _mm256_castps_pd(h[1]), 1));
      // clamp before rounding (same as after, integer bounds): no int32 overflow in the conversion
      v = _mm512_min_ps(_mm512_max_ps(v, qlo), qhi);
      r = _mm512_cvtps_epi32(v);
    } else {
      const __m512i sa = fixed_mul(_mm512_slli_epi32(_mm512_sub_epi32(va, zA), 20), qa, mode);
      const __m512i sb = fixed_mul(_mm512_slli_epi32(_mm512_sub_epi32(vb, zB), 20), qb, mode);
      r = _mm512_add_epi32(fixed_mul(_mm512_add_epi32(sa, sb), qo, mode), c.zp);
      r = _mm512_min_epi32(_mm512_max_epi32(r, c.qmin), c.qmax);
    }
    _mm_mask_storeu_epi8(y + i, m, _mm512_cvtepi32_epi8(r));
  }
}

// out[p] = sum of the S values of plane p (int8: as uint8 + 128, the offset taken off after).
QK_AVX512 void plane_sums(const uint8_t* x, bool sgn, int64_t planes, int64_t S, int32_t* out) {
  const __m512i flip = _mm512_set1_epi8(char(sgn ? 0x80 : 0)), zero = _mm512_setzero_si512();
  for (int64_t p = 0; p < planes; p++) {
    const uint8_t* q = x + p * S;
    __m512i acc = zero;
    for (int64_t i = 0; i < S; i += 64) {
      const __mmask64 m = S - i >= 64 ? ~0ull : (1ull << (S - i)) - 1;
      acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_maskz_mov_epi8(m, _mm512_xor_si512(_mm512_maskz_loadu_epi8(m, q + i), flip)), zero));
    }
    out[p] = int32_t(_mm512_reduce_add_epi64(acc) - (sgn ? 128 * S : 0));
  }
}
#endif

// geo: N*C planes, IH, IW, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW. A window entirely in the padding gives `lowest`.
template <class T>
void maxpool_plane(const T* x, T* y, const int32_t* g, T lowest) {
  const int IH = g[1], IW = g[2], KH = g[3], KW = g[4], SH = g[5], SW = g[6], PH = g[7], PW = g[8], DH = g[9], DW = g[10],
            OH = g[11], OW = g[12];
  for (int oh = 0; oh < OH; oh++)
    for (int ow = 0; ow < OW; ow++) {
      T best = lowest;
      for (int kh = 0; kh < KH; kh++) {
        const int ih = oh * SH - PH + kh * DH;
        if (ih < 0 || ih >= IH) continue;
        const T* row = x + int64_t(ih) * IW;
        for (int kw = 0; kw < KW; kw++) {
          const int iw = ow * SW - PW + kw * DW;
          if (iw >= 0 && iw < IW && row[iw] > best) best = row[iw];
        }
      }
      y[int64_t(oh) * OW + ow] = best;
    }
}

#if defined(__x86_64__)
// 2 x 2, stride 2, no padding or dilation (uint8 lanes; int8 flipped to uint8 and back).
QK_AVX512 void maxpool_2x2(const uint8_t* x, uint8_t* y, const int32_t* g, uint8_t flip) {
  const int IW = g[2], OH = g[11], OW = g[12];
  const __m256i f = _mm256_set1_epi8(char(flip));
  for (int oh = 0; oh < OH; oh++) {
    const uint8_t* r0 = x + int64_t(2 * oh) * IW;
    const uint8_t* r1 = r0 + IW;
    for (int ow = 0; ow < OW; ow += 16) {
      const int cnt = OW - ow < 16 ? OW - ow : 16;
      const __mmask32 m = __mmask32((1ull << (2 * cnt)) - 1);
      const __m256i a = _mm256_xor_si256(_mm256_maskz_loadu_epi8(m, r0 + 2 * ow), f);
      const __m256i b = _mm256_xor_si256(_mm256_maskz_loadu_epi8(m, r1 + 2 * ow), f);
      __m256i v = _mm256_max_epu8(a, b);
      v = _mm256_max_epu8(v, _mm256_srli_epi16(v, 8));
      const __m128i out = _mm_xor_si128(_mm256_cvtepi16_epi8(_mm256_and_si256(v, _mm256_set1_epi16(0xff))), _mm256_castsi256_si128(f));
      _mm_mask_storeu_epi8(y + int64_t(oh) * OW + ow, __mmask16((1u << cnt) - 1), out);
    }
  }
}
#endif

// ---- N-API --------------------------------------------------------------------------------------------------------
struct A {
  napi_env env;
  size_t argc = 16;
  napi_value argv[16];
  A(napi_env e, napi_callback_info info) : env(e) { napi_get_cb_info(e, info, &argc, argv, nullptr, nullptr); }
  napi_value at(size_t i) const {
    if (i >= argc) throw std::runtime_error("missing argument " + std::to_string(i));
    return argv[i];
  }
  // typed array data, its element count, and its type
  void* arr(size_t i, size_t* len, napi_typedarray_type* type) const {
    void* data;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, at(i), type, len, &data, &ab, &off) != napi_ok)
      throw std::runtime_error("argument " + std::to_string(i) + " must be a typed array");
    return data;
  }
  template <class T>
  T* arr(size_t i, size_t* len, std::initializer_list<napi_typedarray_type> ok, const char* what) const {
    napi_typedarray_type t;
    void* d = arr(i, len, &t);
    for (auto k : ok)
      if (k == t) return static_cast<T*>(d);
    throw std::runtime_error(std::string("argument ") + std::to_string(i) + " must be " + what);
  }
  double num(size_t i) const {
    double v;
    if (napi_get_value_double(env, at(i), &v) != napi_ok) throw std::runtime_error("argument " + std::to_string(i) + " must be a number");
    return v;
  }
  int32_t i32(size_t i) const { return int32_t(num(i)); }
};

template <class F>
napi_value guarded(napi_env env, F&& f) {
  try {
    f();
  } catch (const std::exception& e) {
    napi_throw_error(env, nullptr, (std::string("qatkit native: ") + e.what()).c_str());
  }
  return nullptr;
}

void need(size_t have, int64_t want, const char* what) {
  if (want < 0 || int64_t(have) < want) throw std::runtime_error(std::string(what) + ": buffer too small");
}

constexpr auto U8 = napi_uint8_array, S8 = napi_int8_array, I32 = napi_int32_array;

#if defined(__x86_64__)
RQConst rq_args(const A& a, size_t i) { return rq_const(a.i32(i), a.i32(i + 1), a.i32(i + 2), a.i32(i + 3)); }
#endif

// int8ConvPackedSize(OC, Cg, KH, KW) -> bytes; int8ConvPack(B' Int16Array, ldb, OC, Cg, KH, KW, out Uint8Array)
napi_value ConvPackedSize(napi_env env, napi_callback_info info) {
  A a(env, info);
  napi_value v = nullptr;
  guarded(env, [&] { napi_create_double(env, double(conv_packed_size(a.i32(0), a.i32(1), a.i32(2), a.i32(3))), &v); });
  return v;
}

napi_value ConvPack(napi_env env, napi_callback_info info) {
  A a(env, info);
  return guarded(env, [&] {
    size_t lb, lo;
    const int16_t* B = a.arr<int16_t>(0, &lb, {napi_int16_array}, "an Int16Array");
    const int64_t ldb = a.i32(1);
    const int OC = a.i32(2), Cg = a.i32(3), KH = a.i32(4), KW = a.i32(5);
    uint8_t* out = a.arr<uint8_t>(6, &lo, {U8}, "a Uint8Array");
    if (OC < 1 || Cg < 1 || KH < 1 || KW < 1 || ldb < int64_t(Cg) * KH * KW) throw std::runtime_error("bad conv weight shape");
    need(lb, (OC - 1) * ldb + int64_t(Cg) * KH * KW, "B");
    need(lo, conv_packed_size(OC, Cg, KH, KW), "out");
    if (conv_pack(B, ldb, OC, Cg, KH, KW, out) != 0) throw std::runtime_error("weights of a channel span more than 256 values");
  });
}

// int8QConv(x Uint8Array | Int8Array [N, C, IH, IW], xZp (uint8 domain), geo Int32Array[19], packed, tab Int32Array
//           [4 * OCt], mode, zp, qmin, qmax, y Uint8Array | Int8Array | Int32Array [N, OCt, OH, OW]):
// group geo[18] of the convolution, its channels of y written.
napi_value QConv(napi_env env, napi_callback_info info) {
  A a(env, info);
  return guarded(env, [&] {
#if defined(__x86_64__)
    if (!have_vnni()) throw std::runtime_error("int8QConv needs AVX-512 VNNI");
    size_t lx, lg, lw, lt, ly;
    napi_typedarray_type xt, yt;
    ConvRun R{};
    R.x = static_cast<const uint8_t*>(a.arr(0, &lx, &xt));
    if (xt != U8 && xt != S8) throw std::runtime_error("x must be a Uint8Array or an Int8Array");
    R.xs = xt == S8;
    R.za = uint8_t(a.i32(1));
    const int32_t* geo = a.arr<int32_t>(2, &lg, {I32}, "an Int32Array");
    if (lg < 19) throw std::runtime_error("geo needs 19 values");
    const uint8_t* blob = a.arr<uint8_t>(3, &lw, {U8}, "a Uint8Array (int8ConvPack)");
    if (lw < 4 * HDRW || reinterpret_cast<const int32_t*>(blob)[0] != 2) throw std::runtime_error("not packed by int8ConvPack");
    R.w = ConvW(blob);
    if (int64_t(lw) < conv_packed_size(R.w.OC, R.w.Cg, R.w.KH, R.w.KW)) throw std::runtime_error("packed weights: too short");
    for (int i = 0; i < 19; i++)
      if (geo[i] < ((i >= 8 && i <= 11) || i == 18 ? 0 : 1)) throw std::runtime_error("bad conv geometry");
    R.G = conv_geo(geo, R.w);
    const ConvGeo& G = R.G;
    if (G.g >= G.group || G.C % G.group) throw std::runtime_error("bad group");
    if (G.OH != (G.IH + G.PH + G.PHe - ((G.KH - 1) * G.DH + 1)) / G.SH + 1 || G.OW != (G.IW + G.PW + G.PWe - ((G.KW - 1) * G.DW + 1)) / G.SW + 1)
      throw std::runtime_error("output size does not match the geometry");
    if (G.SH > 64 || G.SW > 64) throw std::runtime_error("stride > 64");
    R.tab = a.arr<int32_t>(4, &lt, {I32}, "an Int32Array");
    need(lt, 4 * int64_t(G.OCt), "tab");
    R.rc = rq_args(a, 5);
    R.y = a.arr(9, &ly, &yt);
    R.wide = R.rc.mode == 3;
    if (R.wide ? yt != I32 : (yt != U8 && yt != S8)) throw std::runtime_error("y must be an Int32Array for mode 3, else 8-bit");
    need(lx, int64_t(G.N) * G.C * G.IH * G.IW, "x");
    need(ly, int64_t(G.N) * G.OCt * G.OH * G.OW, "y");
    conv_run(R);
#else
    throw std::runtime_error("int8QConv needs x86-64");
#endif
  });
}

#if defined(__x86_64__)
// int8Requant(C Int32Array, M, N, ldc, tab Int32Array [4 * nt], nt, mode, zp, qmin, qmax, y 8-bit [M, N])
napi_value Requant(napi_env env, napi_callback_info info) {
  A a(env, info);
  return guarded(env, [&] {
    if (!have_vnni()) throw std::runtime_error("int8Requant needs AVX-512");
    size_t lc, lt, ly;
    const int32_t* C = a.arr<int32_t>(0, &lc, {I32}, "an Int32Array");
    const int M = a.i32(1), N = a.i32(2), ldc = a.i32(3);
    const int32_t* tab = a.arr<int32_t>(4, &lt, {I32}, "an Int32Array");
    const int nt = a.i32(5);
    const RQConst rc = rq_args(a, 6);
    uint8_t* y = a.arr<uint8_t>(10, &ly, {U8, S8}, "a Uint8Array or an Int8Array");
    if (M < 0 || N < 0 || ldc < N || (nt != 1 && nt != N) || rc.mode > 2) throw std::runtime_error("bad requant arguments");
    if (!M || !N) return;
    need(lc, int64_t(M - 1) * ldc + N, "C");
    need(lt, 4 * int64_t(nt), "tab");
    need(ly, int64_t(M) * N, "y");
    requant_rows(C, M, N, ldc, tab, nt, rc, y);
  });
}

// int8Quantize(x Float32Array, scale, zp, qmin, qmax, y 8-bit)
napi_value Quantize(napi_env env, napi_callback_info info) {
  A a(env, info);
  return guarded(env, [&] {
    if (!have_vnni()) throw std::runtime_error("int8Quantize needs AVX-512");
    size_t lx, ly;
    const float* x = a.arr<float>(0, &lx, {napi_float32_array}, "a Float32Array");
    const float s = float(a.num(1));
    uint8_t* y = a.arr<uint8_t>(5, &ly, {U8, S8}, "a Uint8Array or an Int8Array");
    need(ly, int64_t(lx), "y");
    quantize_f32(x, int64_t(lx), s, rq_const(0, a.i32(2), a.i32(3), a.i32(4)), y);
  });
}
#endif

// int8MaxPool(x 8-bit [planes, IH, IW], geo Int32Array[13] (planes, IH, IW, KH, KW, SH, SW, PH, PW, DH, DW, OH, OW), y)
napi_value MaxPool(napi_env env, napi_callback_info info) {
  A a(env, info);
  return guarded(env, [&] {
    size_t lx, lg, ly;
    napi_typedarray_type xt, yt;
    void* x = a.arr(0, &lx, &xt);
    const int32_t* g = a.arr<int32_t>(1, &lg, {I32}, "an Int32Array");
    void* y = a.arr(2, &ly, &yt);
    if ((xt != U8 && xt != S8) || yt != xt) throw std::runtime_error("x and y must both be Uint8Array or Int8Array");
    if (lg < 13) throw std::runtime_error("geo needs 13 values");
    for (int i = 0; i < 13; i++)
      if (g[i] < (i == 7 || i == 8 ? 0 : 1)) throw std::runtime_error("bad pool geometry");
    const int64_t in = int64_t(g[1]) * g[2], out = int64_t(g[11]) * g[12];
    need(lx, g[0] * in, "x");
    need(ly, g[0] * out, "y");
    const bool s = xt == S8;
#if defined(__x86_64__)
    const bool fast = have_vnni() && g[3] == 2 && g[4] == 2 && g[5] == 2 && g[6] == 2 && !g[7] && !g[8] && g[9] == 1 && g[10] == 1 &&
                      2 * g[11] <= g[1] && 2 * g[12] <= g[2];
#else
    const bool fast = false;
#endif
    qk::parallel_range(g[0], 16, [&](int64_t p0, int64_t p1) {
      for (int64_t p = p0; p < p1; p++) {
        const uint8_t* xp = static_cast<const uint8_t*>(x) + p * in;
        uint8_t* yp = static_cast<uint8_t*>(y) + p * out;
#if defined(__x86_64__)
        if (fast) {
          maxpool_2x2(xp, yp, g, s ? 0x80 : 0);
          continue;
        }
#endif
        if (s) maxpool_plane(reinterpret_cast<const int8_t*>(xp), reinterpret_cast<int8_t*>(yp), g, int8_t(-128));
        else maxpool_plane(xp, yp, g, uint8_t(0));
      }
    });
  });
}

#if defined(__x86_64__)
// int8QAdd(a 8-bit, b 8-bit (same type and length), p Float64Array[15] (see qadd), y 8-bit)
napi_value QAdd(napi_env env, napi_callback_info info) {
  A a(env, info);
  return guarded(env, [&] {
    if (!have_vnni()) throw std::runtime_error("int8QAdd needs AVX-512");
    size_t la, lb, lp, ly;
    napi_typedarray_type at, bt;
    const void* x = a.arr(0, &la, &at);
    const void* z = a.arr(1, &lb, &bt);
    const double* p = a.arr<double>(2, &lp, {napi_float64_array}, "a Float64Array");
    uint8_t* y = a.arr<uint8_t>(3, &ly, {U8, S8}, "a Uint8Array or an Int8Array");
    if ((at != U8 && at != S8) || bt != at || lb != la || ly < la || lp < 15 || p[0] < 0 || p[0] > 2)
      throw std::runtime_error("int8QAdd: bad arguments");
    qadd(x, z, at == S8, int64_t(la), p, y);
  });
}
#endif

// int8PlaneSums(x 8-bit [planes, S], S, out Int32Array [planes]): out[p] = sum of plane p (int8 as signed)
napi_value PlaneSums(napi_env env, napi_callback_info info) {
  A a(env, info);
  return guarded(env, [&] {
    size_t lx, lo;
    napi_typedarray_type xt;
    const void* x = a.arr(0, &lx, &xt);
    const int64_t S = a.i32(1);
    int32_t* out = a.arr<int32_t>(2, &lo, {I32}, "an Int32Array");
    if ((xt != U8 && xt != S8) || S < 1) throw std::runtime_error("int8PlaneSums: bad arguments");
    need(lx, int64_t(lo) * S, "x");
#if defined(__x86_64__)
    if (have_vnni()) {
      plane_sums(static_cast<const uint8_t*>(x), xt == S8, int64_t(lo), S, out);
      return;
    }
#endif
    for (size_t p = 0; p < lo; p++) {
      int32_t s = 0;
      if (xt == S8)
        for (int64_t i = 0; i < S; i++) s += static_cast<const int8_t*>(x)[p * S + i];
      else
        for (int64_t i = 0; i < S; i++) s += static_cast<const uint8_t*>(x)[p * S + i];
      out[p] = s;
    }
  });
}

napi_value Available(napi_env env, napi_callback_info) {
  napi_value v;
  napi_get_boolean(env, have_vnni(), &v);
  return v;
}

}  // namespace

// Adds the functions above to the addon's exports (called from addon.cc's Init).
void qk_register_int8_ops(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      {"int8OpsAvailable", nullptr, Available, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8ConvPackedSize", nullptr, ConvPackedSize, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8ConvPack", nullptr, ConvPack, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8QConv", nullptr, QConv, nullptr, nullptr, nullptr, napi_default, nullptr},
#if defined(__x86_64__)
      {"int8Requant", nullptr, Requant, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8Quantize", nullptr, Quantize, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8QAdd", nullptr, QAdd, nullptr, nullptr, nullptr, napi_default, nullptr},
#endif
      {"int8MaxPool", nullptr, MaxPool, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8PlaneSums", nullptr, PlaneSums, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
}
