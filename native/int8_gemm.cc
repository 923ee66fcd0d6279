// Standalone int8 GEMM for the integer engine (src/int): u8 activations x s8 weights -> exact int32, plus the two
// requantizations the engine uses. Wired into the addon (addon.cc int8Gemm / int8PackB / int8GemmPacked /
// int8ConvPacked, see the end of this file); the engine uses the packed entry points further down.
//
//   C[m, n] = sum_k (A[m, k] - a_zp) * (B[n, k] - b_zp[n]) + bias[n]
//
// A is row-major [M, K] uint8, B is "NT" [N, K] int8 (each output channel's weights contiguous, as QLinearConv /
// QGemm transB=1 store them), C row-major int32. Zero points are folded out of the inner loop:
//   sum (a - za)(b - zb) = sum a*b - za * sum_k b - zb * sum_k a + K * za * zb.
// Inner products, chosen at run time:
//   AVX-512 VNNI: vpdpbusd (u8 x s8, four products summed straight into int32: no int16 intermediate, so exact);
//   AVX2: both operands widened to int16 and vpmaddwd (exact). NOT vpmaddubsw, whose saturating int16 pair sums are
//     the ONNX Runtime trap on CPUs without VNNI (255 * 127 * 2 > 32767);
//   portable: scalar int32.
// Accumulation wraps in int32 as ONNX specifies. Single-threaded; callers split M (images) across threads.
#include <cstdint>
#include <cstring>
#include <cmath>
#include <cstdlib>
#include <vector>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

extern "C" {

// The int8 paths this CPU has, read once: 2 = AVX-512 VNNI (with BW, VL), 1 = AVX2, 0 = portable.
// QK_INT8_ISA=avx2|generic caps it (for tests). Shared with int8_ops.cc.
int qk_int8_level() {
  static const int level = [] {
    int l = 0;
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx2")) l = 1;
    if (l && __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl"))
      l = 2;
#endif
    const char* force = std::getenv("QK_INT8_ISA");
    if (force && !std::strcmp(force, "generic")) return 0;
    if (force && !std::strcmp(force, "avx2")) return l < 1 ? l : 1;
    return l;
  }();
  return level;
}

}  // extern "C"

namespace {

using dot_fn = int32_t (*)(const uint8_t*, const int8_t*, int);

int32_t dot_generic(const uint8_t* a, const int8_t* b, int K) {
  int32_t s = 0;
  for (int k = 0; k < K; k++) s += int32_t(a[k]) * int32_t(b[k]);
  return s;
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) int32_t dot_avx2(const uint8_t* a, const int8_t* b, int K) {
  __m256i acc = _mm256_setzero_si256();
  int k = 0;
  for (; k + 16 <= K; k += 16) {
    __m256i va = _mm256_cvtepu8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(a + k)));
    __m256i vb = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + k)));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(va, vb));  // pairs of exact int16 products summed in int32
  }
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(acc), _mm256_extracti128_si256(acc, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4e));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xb1));
  int32_t r = _mm_cvtsi128_si32(s);
  for (; k < K; k++) r += int32_t(a[k]) * int32_t(b[k]);
  return r;
}

__attribute__((target("avx512f,avx512bw,avx512vnni"))) int32_t dot_vnni(const uint8_t* a, const int8_t* b, int K) {
  __m512i acc = _mm512_setzero_si512();
  int k = 0;
  for (; k + 64 <= K; k += 64)
    acc = _mm512_dpbusd_epi32(acc, _mm512_loadu_si512(a + k), _mm512_loadu_si512(b + k));
  if (k < K) {  // tail: masked loads read zeros past K
    __mmask64 m = (K - k) == 64 ? ~0ULL : ((1ULL << (K - k)) - 1);
    acc = _mm512_dpbusd_epi32(acc, _mm512_maskz_loadu_epi8(m, a + k), _mm512_maskz_loadu_epi8(m, b + k));
  }
  alignas(64) int32_t lanes[16];
  _mm512_store_si512(lanes, acc);
  int32_t r = 0;
  for (int i = 0; i < 16; i++) r += lanes[i];
  return r;
}
#endif

// The best path qk_int8_level allows.
dot_fn pick_dot() {
#if defined(__x86_64__)
  if (qk_int8_level() == 2) return dot_vnni;
  if (qk_int8_level() == 1) return dot_avx2;
#endif
  return dot_generic;
}

const dot_fn dot = pick_dot();

inline int32_t wrap_add(int32_t a, int32_t b) { return int32_t(uint32_t(a) + uint32_t(b)); }

}  // namespace

extern "C" {

// Which inner product qk_gemm_u8s8 uses: "avx512vnni", "avx2" or "generic".
const char* qk_int8_isa() {
#if defined(__x86_64__)
  if (dot == dot_vnni) return "avx512vnni";
  if (dot == dot_avx2) return "avx2";
#endif
  return "generic";
}

// C[M, N] (ldc) = (A - a_zp) x (B - b_zp)^T + bias. b_zp and bias may be null (zeros); b_zp is per row of B (per
// output channel). 4-byte scratch per row of A and B is taken from the stack for up to 4096 rows, else the heap.
void qk_gemm_u8s8(int M, int N, int K, const uint8_t* A, int lda, int32_t a_zp, const int8_t* B, int ldb,
                  const int32_t* b_zp, const int32_t* bias, int32_t* C, int ldc) {
  // row sums of B (per output channel) and of A (per output row) for the zero-point terms
  for (int n = 0; n < N; n++) {
    int32_t sb = 0;
    for (int k = 0; k < K; k++) sb += B[int64_t(n) * ldb + k];
    const int32_t zb = b_zp ? b_zp[n] : 0;
    // constant per column: - a_zp * sum_k b + K * a_zp * zb + bias
    const int32_t col = wrap_add(wrap_add(int32_t(uint32_t(-a_zp) * uint32_t(sb)), int32_t(uint32_t(K) * uint32_t(a_zp) * uint32_t(zb))),
                                 bias ? bias[n] : 0);
    for (int m = 0; m < M; m++) C[int64_t(m) * ldc + n] = col;
  }
  for (int m = 0; m < M; m++) {
    const uint8_t* a = A + int64_t(m) * lda;
    int32_t sa = 0;
    if (b_zp)
      for (int k = 0; k < K; k++) sa += a[k];
    int32_t* c = C + int64_t(m) * ldc;
    for (int n = 0; n < N; n++) {
      const int32_t zb = b_zp ? b_zp[n] : 0;
      c[n] = wrap_add(c[n], wrap_add(dot(a, B + int64_t(n) * ldb, K), int32_t(uint32_t(-zb) * uint32_t(sa))));
    }
  }
}

// ONNX Runtime's float requantization (MLAS): y = clamp(rint(float(acc) * mult[n]), qmin - zp, qmax - zp) + zp, with
// float32 arithmetic and round half to even (the default rounding mode). Per-column multipliers (mult[n]).
void qk_requant_float_u8(int M, int N, const int32_t* C, int ldc, const float* mult, int32_t zp, int32_t qmin, int32_t qmax,
                         uint8_t* Y, int ldy) {
  const float lo = float(qmin - zp), hi = float(qmax - zp);
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      float v = float(C[int64_t(m) * ldc + n]) * mult[n];
      v = v < lo ? lo : v > hi ? hi : v;
      Y[int64_t(m) * ldy + n] = uint8_t(int32_t(std::nearbyint(v)) + zp);
    }
}

// The engine's 'fixedpoint-single': (acc * M0 + 2^(T-1)) >> T with T = 31 - shift (left shifts applied to acc first,
// wrapping), M0 in [2^30, 2^31) from quantizeMultiplier; then + zp and saturate.
void qk_requant_fixed_u8(int M, int N, const int32_t* C, int ldc, const int32_t* multiplier, const int32_t* shift,
                         int32_t zp, int32_t qmin, int32_t qmax, uint8_t* Y, int ldy) {
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++) {
      const int left = shift[n] > 0 ? shift[n] : 0, T = 31 + (shift[n] > 0 ? 0 : -shift[n]);
      const int64_t x = int32_t(uint32_t(C[int64_t(m) * ldc + n]) << left);
      int64_t r = (x * multiplier[n] + (int64_t(1) << (T - 1))) >> T;
      r += zp;
      Y[int64_t(m) * ldy + n] = uint8_t(r < qmin ? qmin : r > qmax ? qmax : r);
    }
}

}  // extern "C"

// ---- packed, register-blocked path (what the engine's GEMM provider calls) ----------------------------------------
// B is packed once per session (by the caller) as int16 values already shifted by their zero points, in panels of 8
// columns: Bp[((nb * Kh) + kk) * 16 + c * 2 + j] = B[nb * 8 + c, 2 * kk + j] - b_zp[..], Kh = ceil(K / 2), zeros in
// the padding. A stays uint8 with a zero point per row (or one for all rows); each block of MR rows is widened to
// int16 pairs (a - a_zp) on the stack and multiplied with vpmaddwd (int16 x int16 pairs summed in int32: exact, no
// vpmaddubsw saturation). C is written row-major (C[m * ldc + n]) or transposed (C[n * ldc + m]) and overwritten.
namespace {

constexpr int MR = 6, NR = 8;

using panel_fn = void (*)(const int16_t* a, int lda16, int rows, const int16_t* bp, int Kh, int32_t* out /*[MR][NR]*/);

void panel_generic(const int16_t* a, int lda16, int rows, const int16_t* bp, int Kh, int32_t* out) {
  for (int r = 0; r < MR; r++)
    for (int c = 0; c < NR; c++) out[r * NR + c] = 0;
  for (int r = 0; r < rows; r++) {
    const int16_t* ar = a + r * lda16;
    uint32_t acc[NR] = {0};
    for (int kk = 0; kk < Kh; kk++) {
      const int32_t a0 = ar[2 * kk], a1 = ar[2 * kk + 1];
      const int16_t* b = bp + kk * 2 * NR;
      for (int c = 0; c < NR; c++) acc[c] += uint32_t(a0 * b[2 * c] + a1 * b[2 * c + 1]);
    }
    for (int c = 0; c < NR; c++) out[r * NR + c] = int32_t(acc[c]);
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2"))) void panel_avx2(const int16_t* a, int lda16, int rows, const int16_t* bp, int Kh, int32_t* out) {
  __m256i c0 = _mm256_setzero_si256(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  // rows past `rows` read row 0 again (results dropped)
  const int32_t* r0 = reinterpret_cast<const int32_t*>(a);
  const int32_t* r1 = reinterpret_cast<const int32_t*>(a + (rows > 1 ? 1 : 0) * lda16);
  const int32_t* r2 = reinterpret_cast<const int32_t*>(a + (rows > 2 ? 2 : 0) * lda16);
  const int32_t* r3 = reinterpret_cast<const int32_t*>(a + (rows > 3 ? 3 : 0) * lda16);
  const int32_t* r4 = reinterpret_cast<const int32_t*>(a + (rows > 4 ? 4 : 0) * lda16);
  const int32_t* r5 = reinterpret_cast<const int32_t*>(a + (rows > 5 ? 5 : 0) * lda16);
  for (int kk = 0; kk < Kh; kk++) {
    const __m256i b = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(bp + kk * 16));
    c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(_mm256_set1_epi32(r0[kk]), b));
    c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(_mm256_set1_epi32(r1[kk]), b));
    c2 = _mm256_add_epi32(c2, _mm256_madd_epi16(_mm256_set1_epi32(r2[kk]), b));
    c3 = _mm256_add_epi32(c3, _mm256_madd_epi16(_mm256_set1_epi32(r3[kk]), b));
    c4 = _mm256_add_epi32(c4, _mm256_madd_epi16(_mm256_set1_epi32(r4[kk]), b));
    c5 = _mm256_add_epi32(c5, _mm256_madd_epi16(_mm256_set1_epi32(r5[kk]), b));
  }
  __m256i* o = reinterpret_cast<__m256i*>(out);
  _mm256_storeu_si256(o + 0, c0); _mm256_storeu_si256(o + 1, c1); _mm256_storeu_si256(o + 2, c2);
  _mm256_storeu_si256(o + 3, c3); _mm256_storeu_si256(o + 4, c4); _mm256_storeu_si256(o + 5, c5);
}
#endif

panel_fn pick_panel() {
#if defined(__x86_64__)
  if (qk_int8_level() >= 1) return panel_avx2;
#endif
  return panel_generic;
}

const panel_fn panel = pick_panel();

}  // namespace

extern "C" {

const char* qk_int8_packed_isa() {
#if defined(__x86_64__)
  if (panel == panel_avx2) return "avx2";
#endif
  return "generic";
}

// Rows [m0, m1) of C = (A - a_zp[m]) x Bp. a_zp has one value (nzp == 1) or one per row of A (indexed by m).
void qk_gemm_u8_packed(int m0, int m1, int N, int K, const uint8_t* A, int lda, const int32_t* a_zp, int nzp,
                       const int16_t* Bp, int32_t* C, int ldc, int transC) {
  const int Kh = (K + 1) / 2, K2 = Kh * 2;
  const int NB = (N + NR - 1) / NR;
  int16_t* a16 = static_cast<int16_t*>(std::malloc(sizeof(int16_t) * size_t(MR) * K2 + 64));
  alignas(32) int32_t blk[MR * NR];
  for (int m = m0; m < m1; m += MR) {
    const int rows = m1 - m < MR ? m1 - m : MR;
    for (int r = 0; r < rows; r++) {
      const uint8_t* a = A + int64_t(m + r) * lda;
      const int32_t z = a_zp ? a_zp[nzp == 1 ? 0 : m + r] : 0;
      int16_t* d = a16 + r * K2;
      for (int k = 0; k < K; k++) d[k] = int16_t(int32_t(a[k]) - z);
      if (K2 > K) d[K] = 0;
    }
    for (int nb = 0; nb < NB; nb++) {
      panel(a16, K2, rows, Bp + int64_t(nb) * Kh * 2 * NR, Kh, blk);
      const int n0 = nb * NR, cols = N - n0 < NR ? N - n0 : NR;
      if (transC) {
        for (int c = 0; c < cols; c++) {
          int32_t* dst = C + int64_t(n0 + c) * ldc + m;
          for (int r = 0; r < rows; r++) dst[r] = blk[r * NR + c];
        }
      } else {
        for (int r = 0; r < rows; r++) std::memcpy(C + int64_t(m + r) * ldc + n0, blk + r * NR, sizeof(int32_t) * cols);
      }
    }
  }
  std::free(a16);
}

// 2-D convolution of one image (and group) without an im2row buffer: each block of MR output positions gathers its
// receptive fields (k = (c, kh, kw), as the packed weights' rows) straight into the int16 block, x - x_zp with zeros
// in the padding, then runs the same panels. x holds Cg planes of IH x IW, uint8 (int8 when x_signed). Output
// positions [p0, p1) of C[oc * ldc + p] (transposed, as the engine drains it). geo: Cg, IH, IW, KH, KW, SH, SW, PH,
// PW, DH, DW, OH, OW.
void qk_conv_u8_packed(int p0, int p1, const void* x, int x_signed, int32_t x_zp, const int32_t* geo, int OC,
                       const int16_t* Bp, int32_t* C, int ldc) {
  const int Cg = geo[0], IH = geo[1], IW = geo[2], KH = geo[3], KW = geo[4], SH = geo[5], SW = geo[6], PH = geo[7],
            PW = geo[8], DH = geo[9], DW = geo[10], OW = geo[12];
  const int K = Cg * KH * KW, Kh = (K + 1) / 2, K2 = Kh * 2;
  const int NB = (OC + NR - 1) / NR;
  const int64_t plane = int64_t(IH) * IW;
  const uint8_t* xu = static_cast<const uint8_t*>(x);
  const int8_t* xs = static_cast<const int8_t*>(x);
  int16_t* a16 = static_cast<int16_t*>(std::malloc(sizeof(int16_t) * size_t(MR) * K2 + 64));
  alignas(32) int32_t blk[MR * NR];
  for (int m = p0; m < p1; m += MR) {
    const int rows = p1 - m < MR ? p1 - m : MR;
    for (int r = 0; r < rows; r++) {
      const int p = m + r, oh = p / OW, ow = p % OW;
      int16_t* d = a16 + r * K2;
      for (int c = 0; c < Cg; c++) {
        const int64_t cb = c * plane;
        for (int kh = 0; kh < KH; kh++) {
          const int ih = oh * SH - PH + kh * DH;
          if (ih < 0 || ih >= IH) {
            for (int kw = 0; kw < KW; kw++) *d++ = 0;
            continue;
          }
          const int64_t rb = cb + int64_t(ih) * IW;
          int iw = ow * SW - PW;
          if (x_signed) {
            for (int kw = 0; kw < KW; kw++, iw += DW) *d++ = (iw >= 0 && iw < IW) ? int16_t(int32_t(xs[rb + iw]) + 128 - x_zp) : 0;
          } else {
            for (int kw = 0; kw < KW; kw++, iw += DW) *d++ = (iw >= 0 && iw < IW) ? int16_t(int32_t(xu[rb + iw]) - x_zp) : 0;
          }
        }
      }
      if (K2 > K) *d = 0;
    }
    for (int nb = 0; nb < NB; nb++) {
      panel(a16, K2, rows, Bp + int64_t(nb) * Kh * 2 * NR, Kh, blk);
      const int n0 = nb * NR, cols = OC - n0 < NR ? OC - n0 : NR;
      for (int c = 0; c < cols; c++) {
        int32_t* dst = C + int64_t(n0 + c) * ldc + m;
        for (int r = 0; r < rows; r++) dst[r] = blk[r * NR + c];
      }
    }
  }
  std::free(a16);
}

}  // extern "C"

// ---- packed-B entry points: the layout follows the CPU --------------------------------------------------------------
// The engine packs each constant B once (qk_pack_b from its zero-point-shifted int16 rows B' = B - b_zp) into an
// opaque blob: a 64-byte header {kind, N, K, Np, Kq}, then
//   kind 0 (AVX2 / portable): the int16 panels above (Bp, vpmaddwd);
//   kind 1 (AVX-512 VNNI): int32 zb[Np], int32 sb[Np], then int8 panels of 16 columns x 4 k,
//     P[((nb * Kq) + kq) * 64 + c * 4 + j] = s8[nb * 16 + c, 4 * kq + j], where s8 = B' + zb[n] fits int8 (B' spans
//     at most 255 values per column) and sb[n] = sum_k s8. vpdpbusd multiplies raw uint8 A by s8 into int32 (exact),
//     and the zero points come back as sum (a - za)(s8 - zb) = dot - zb * sum a - za * sb + K * za * zb, mod 2^32.
namespace {

constexpr int HDR = 64, NRV = 16;

bool use_vnni() { return qk_int8_level() == 2; }

inline int32_t load4(const uint8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void panel_vnni(const uint8_t* a, int lda8, int rows, const int8_t* bp,
                                                                      int Kq, int32_t* out) {
  __m512i c0 = _mm512_setzero_si512(), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0;
  const uint8_t* r0 = a;
  const uint8_t* r1 = a + (rows > 1 ? 1 : 0) * lda8;
  const uint8_t* r2 = a + (rows > 2 ? 2 : 0) * lda8;
  const uint8_t* r3 = a + (rows > 3 ? 3 : 0) * lda8;
  const uint8_t* r4 = a + (rows > 4 ? 4 : 0) * lda8;
  const uint8_t* r5 = a + (rows > 5 ? 5 : 0) * lda8;
#define bc(p) _mm512_set1_epi32(load4(p))
  for (int kq = 0; kq < Kq; kq++) {
    const __m512i b = _mm512_loadu_si512(bp + int64_t(kq) * 64);
    const int o = kq * 4;
    c0 = _mm512_dpbusd_epi32(c0, bc(r0 + o), b);
    c1 = _mm512_dpbusd_epi32(c1, bc(r1 + o), b);
    c2 = _mm512_dpbusd_epi32(c2, bc(r2 + o), b);
    c3 = _mm512_dpbusd_epi32(c3, bc(r3 + o), b);
    c4 = _mm512_dpbusd_epi32(c4, bc(r4 + o), b);
    c5 = _mm512_dpbusd_epi32(c5, bc(r5 + o), b);
  }
#undef bc
  _mm512_storeu_si512(out + 0 * NRV, c0); _mm512_storeu_si512(out + 1 * NRV, c1); _mm512_storeu_si512(out + 2 * NRV, c2);
  _mm512_storeu_si512(out + 3 * NRV, c3); _mm512_storeu_si512(out + 4 * NRV, c4); _mm512_storeu_si512(out + 5 * NRV, c5);
}
#endif

inline uint32_t u(int64_t v) { return uint32_t(v); }

// Sum of n uint8 (n a multiple of 4).
#if defined(__x86_64__)
__attribute__((target("avx512f,avx512bw"))) int32_t sum_u8(const uint8_t* p, int n) {
  __m512i acc = _mm512_setzero_si512();
  int i = 0;
  for (; i + 64 <= n; i += 64) acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_loadu_si512(p + i), _mm512_setzero_si512()));
  if (i < n) {
    const __mmask64 m = (1ULL << (n - i)) - 1;
    acc = _mm512_add_epi64(acc, _mm512_sad_epu8(_mm512_maskz_loadu_epi8(m, p + i), _mm512_setzero_si512()));
  }
  return int32_t(_mm512_reduce_add_epi64(acc));
}
#else
int32_t sum_u8(const uint8_t* p, int n) {
  int32_t s = 0;
  for (int i = 0; i < n; i++) s += p[i];
  return s;
}
#endif

// blk[r][c] += K * za[r] * zb[c] - zb[c] * sa[r] - za[r] * sb[c] (int32, wrapping)
#if defined(__x86_64__)
__attribute__((target("avx512f"))) void fix_block(int32_t* blk, int rows, const int32_t* za, const int32_t* sa,
                                                  const int32_t* zb, const int32_t* sb, int K) {
  const __m512i vzb = _mm512_loadu_si512(zb), vsb = _mm512_loadu_si512(sb);
  for (int r = 0; r < rows; r++) {
    const __m512i t = _mm512_sub_epi32(_mm512_mullo_epi32(vzb, _mm512_set1_epi32(int32_t(u(K) * u(za[r]) - u(sa[r])))),
                                       _mm512_mullo_epi32(vsb, _mm512_set1_epi32(za[r])));
    _mm512_storeu_si512(blk + r * NRV, _mm512_add_epi32(_mm512_loadu_si512(blk + r * NRV), t));
  }
}
#endif

// One block of `rows` uint8 rows (a8: rows x Kq*4, zero K padding), zero points za[r], row sums sa[r]: all panels.
void vnni_block(const uint8_t* a8, int lda8, int rows, const int32_t* za, const int32_t* sa, const uint8_t* blob, int64_t m,
                int32_t* C, int ldc, int transC) {
#if defined(__x86_64__)
  const int32_t* hdr = reinterpret_cast<const int32_t*>(blob);
  const int N = hdr[1], K = hdr[2], Np = hdr[3], Kq = hdr[4];
  const int32_t* zb = reinterpret_cast<const int32_t*>(blob + HDR);
  const int32_t* sb = zb + Np;
  const int8_t* P = reinterpret_cast<const int8_t*>(sb + Np);
  alignas(64) int32_t blk[MR * NRV];
  for (int nb = 0; nb < Np / NRV; nb++) {
    panel_vnni(a8, lda8, rows, P + int64_t(nb) * Kq * 64, Kq, blk);
    const int n0 = nb * NRV, cols = N - n0 < NRV ? N - n0 : NRV;
    fix_block(blk, rows, za, sa, zb + n0, sb + n0, K);
    if (transC) {
      for (int c = 0; c < cols; c++) {
        int32_t* dst = C + int64_t(n0 + c) * ldc + m;
        for (int r = 0; r < rows; r++) dst[r] = blk[r * NRV + c];
      }
    } else {
      for (int r = 0; r < rows; r++) std::memcpy(C + (m + r) * int64_t(ldc) + n0, blk + r * NRV, sizeof(int32_t) * cols);
    }
  }
#else
  (void)a8; (void)lda8; (void)rows; (void)za; (void)sa; (void)blob; (void)m; (void)C; (void)ldc; (void)transC;
#endif
}

}  // namespace

extern "C" {

// Bytes of the packed blob for an N x K B on this CPU.
int64_t qk_packed_size(int N, int K) {
  if (use_vnni()) {
    const int64_t Np = (N + NRV - 1) / NRV * NRV, Kq = (K + 3) / 4;
    return HDR + 8 * Np + Np * Kq * 4;
  }
  return HDR + int64_t((N + NR - 1) / NR * NR) * ((K + 1) / 2 * 2) * 2;
}

// Pack B' (zero-point-shifted int16 rows, B[n * ldb + k]) into blob. Returns 0, or -1 when a column spans > 255.
int qk_pack_b(const int16_t* B, int ldb, int N, int K, uint8_t* blob) {
  int32_t* hdr = reinterpret_cast<int32_t*>(blob);
  std::memset(blob, 0, qk_packed_size(N, K));
  hdr[1] = N;
  hdr[2] = K;
  if (use_vnni()) {
    const int Np = (N + NRV - 1) / NRV * NRV, Kq = (K + 3) / 4;
    hdr[0] = 1;
    hdr[3] = Np;
    hdr[4] = Kq;
    int32_t* zb = reinterpret_cast<int32_t*>(blob + HDR);
    int32_t* sb = zb + Np;
    int8_t* P = reinterpret_cast<int8_t*>(sb + Np);
    for (int n = 0; n < N; n++) {
      int lo = 0, hi = 0;
      for (int k = 0; k < K; k++) {
        const int v = B[int64_t(n) * ldb + k];
        if (k == 0 || v < lo) lo = v;
        if (k == 0 || v > hi) hi = v;
      }
      if (hi - lo > 255) return -1;
      const int off = lo >= -128 && hi <= 127 ? 0 : -128 - lo;  // keep B' itself (off 0) when it fits
      zb[n] = off;
      int32_t sum = 0;
      for (int k = 0; k < K; k++) {
        const int v = B[int64_t(n) * ldb + k] + off;
        sum += v;
        P[(int64_t(n / NRV) * Kq + k / 4) * 64 + (n % NRV) * 4 + k % 4] = int8_t(v);
      }
      sb[n] = sum;
    }
    return 0;
  }
  const int Kh = (K + 1) / 2;
  hdr[0] = 0;
  hdr[3] = (N + NR - 1) / NR * NR;
  hdr[4] = Kh;
  int16_t* P = reinterpret_cast<int16_t*>(blob + HDR);
  for (int n = 0; n < N; n++)
    for (int k = 0; k < K; k++) P[(int64_t(n / NR) * Kh + k / 2) * 16 + (n % NR) * 2 + k % 2] = B[int64_t(n) * ldb + k];
  return 0;
}

// Rows [m0, m1) of C = (A - a_zp[m]) x B'^T with B' packed by qk_pack_b (any kind).
void qk_gemm_u8_blob(int m0, int m1, const uint8_t* A, int lda, const int32_t* a_zp, int nzp, const uint8_t* blob,
                     int32_t* C, int ldc, int transC) {
  const int32_t* hdr = reinterpret_cast<const int32_t*>(blob);
  const int N = hdr[1], K = hdr[2];
  if (hdr[0] == 0) {
    qk_gemm_u8_packed(m0, m1, N, K, A, lda, a_zp, nzp, reinterpret_cast<const int16_t*>(blob + HDR), C, ldc, transC);
    return;
  }
  const int Kq = hdr[4], lda8 = Kq * 4;
  uint8_t* a8 = static_cast<uint8_t*>(std::calloc(size_t(MR) * lda8 + 64, 1));
  int32_t za[MR], sa[MR];
  for (int m = m0; m < m1; m += MR) {
    const int rows = m1 - m < MR ? m1 - m : MR;
    for (int r = 0; r < rows; r++) {
      const uint8_t* a = A + int64_t(m + r) * lda;
      std::memcpy(a8 + r * lda8, a, K);
      sa[r] = sum_u8(a8 + r * lda8, lda8);
      za[r] = a_zp ? a_zp[nzp == 1 ? 0 : m + r] : 0;
    }
    vnni_block(a8, lda8, rows, za, sa, blob, m, C, ldc, transC);
  }
  std::free(a8);
}

// qk_conv_u8_packed with a blob of either kind.
void qk_conv_u8_blob(int p0, int p1, const void* x, int x_signed, int32_t x_zp, const int32_t* geo, const uint8_t* blob,
                     int32_t* C, int ldc) {
  const int32_t* hdr = reinterpret_cast<const int32_t*>(blob);
  const int OC = hdr[1];
  if (hdr[0] == 0) {
    qk_conv_u8_packed(p0, p1, x, x_signed, x_zp, geo, OC, reinterpret_cast<const int16_t*>(blob + HDR), C, ldc);
    return;
  }
  const int Cg = geo[0], IH = geo[1], IW = geo[2], KH = geo[3], KW = geo[4], SH = geo[5], SW = geo[6], PH = geo[7],
            PW = geo[8], DH = geo[9], DW = geo[10], OW = geo[12];
  const int Kq = hdr[4], lda8 = Kq * 4;
  const int64_t plane = int64_t(IH) * IW;
  const uint8_t* xu = static_cast<const uint8_t*>(x);
  const uint8_t pad = uint8_t(x_zp);  // a padded input equals the zero point (uint8 domain)
  const int64_t xlen = Cg * plane;
  const uint64_t flip8 = x_signed ? 0x8080808080808080ULL : 0;  // int8 + 128
  const int K = Cg * KH * KW;
  const uint8_t* xend = xu + xlen;
  // a row of padding values, stored pre-flipped (the copies XOR every byte with flip8)
  std::vector<uint8_t> padv(size_t(IW) + 16, uint8_t(pad ^ uint8_t(flip8)));
  const uint8_t* padrow = padv.data();
  std::vector<const uint8_t*> src(size_t(Cg) * KH);
  int cur_oh = -1;
  uint8_t* a8 = static_cast<uint8_t*>(std::calloc(size_t(MR) * lda8 + 64, 1));
  int32_t za[MR], sa[MR];
  for (int m = p0; m < p1; m += MR) {
    const int rows = p1 - m < MR ? p1 - m : MR;
    for (int r = 0; r < rows; r++) {
      const int p = m + r, oh = p / OW, ow = p % OW;
      uint8_t* d = a8 + r * lda8;
      if (oh != cur_oh) {
        // the input row each (c, kh) reads for this output row, or the padding row
        cur_oh = oh;
        for (int c = 0; c < Cg; c++)
          for (int kh = 0; kh < KH; kh++) {
            const int ih = oh * SH - PH + kh * DH;
            src[c * KH + kh] = (ih < 0 || ih >= IH) ? padrow : xu + c * plane + int64_t(ih) * IW;
          }
      }
      const int iw0 = ow * SW - PW;
      if (DW == 1 && KW <= 8 && iw0 >= 0 && iw0 + KW <= IW) {
        // interior: one 8-byte copy per (c, kh) (its tail is overwritten next, or lands in the K padding / slack)
        for (int j = 0; j < Cg * KH; j++) {
          const uint8_t* q = src[j] + iw0;
          if (q + 8 <= xend || src[j] == padrow) {
            uint64_t v;
            std::memcpy(&v, q, 8);
            v ^= flip8;
            std::memcpy(d, &v, 8);
          } else {
            for (int kw = 0; kw < KW; kw++) d[kw] = q[kw] ^ uint8_t(flip8);
          }
          d += KW;
        }
      } else {
        for (int j = 0; j < Cg * KH; j++) {
          const uint8_t* q = src[j];
          int iw = iw0;
          for (int kw = 0; kw < KW; kw++, iw += DW) *d++ = (iw >= 0 && iw < IW) ? uint8_t(q[iw] ^ uint8_t(flip8)) : pad;
        }
      }
      std::memset(a8 + r * lda8 + K, 0, lda8 - K);  // K padding: zeros (the wide copies may spill into it)
      sa[r] = sum_u8(a8 + r * lda8, lda8);
      za[r] = x_zp;
    }
    vnni_block(a8, lda8, rows, za, sa, blob, m, C, ldc, 1);
  }
  std::free(a8);
}

const char* qk_int8_blob_isa() { return use_vnni() ? "avx512vnni" : qk_int8_packed_isa(); }

}  // extern "C"

// Wiring (done):
// 1. binding.gyp lists this file (no new flags: the SIMD paths carry target attributes, chosen at run time;
//    QK_INT8_ISA=avx2|generic forces a lesser path, read once at load).
// 2. addon.cc: int8Gemm (qk_gemm_u8s8 above, split by rows over the thread pool), int8PackedSize / int8PackB
//    (qk_pack_b), int8GemmPacked (qk_gemm_u8_blob), int8ConvPacked (qk_conv_u8_blob: im2row fused into the GEMM),
//    int8Info. All work in place on JS typed arrays.
// 3. src/int/native_gemm.ts registers them as the engine's IntGemmProvider (src/int/kernels/gemm.ts); QLinearConv /
//    ConvInteger (1-D, 2-D), QGemm, QLinearMatMul and MatMulInteger call it; the int32 accumulators then go through
//    the engine's own drain (wasm requantization), so results are those of the wasm path bit for bit
//    (src/int/native_gemm.test.ts). qk_requant_float_u8 / qk_requant_fixed_u8 are not exposed: unused.
// 4. On AVX-512 VNNI CPUs native/int8_ops.cc's fused kernels (direct convolution with requantization, etc.) take
//    over the convolutions and the requantizations; this file's GEMM keeps the matmuls and the other CPUs.
