// Standalone int8 GEMM for the integer engine (src/int): u8 activations x s8 weights -> exact int32, plus the two
// requantizations the engine uses. Not yet wired into the addon (see the end of this file for how).
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
#if defined(__x86_64__)
#include <immintrin.h>
#endif

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

// The best path the CPU has; QK_INT8_ISA=avx2|generic forces a lesser one (for tests).
dot_fn pick_dot() {
  const char* force = std::getenv("QK_INT8_ISA");
  if (force && !std::strcmp(force, "generic")) return dot_generic;
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2");
  if (force && !std::strcmp(force, "avx2") && avx2) return dot_avx2;
  if (__builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512bw")) return dot_vnni;
  if (avx2) return dot_avx2;
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

// Wiring (for the owner of native/ and src/backend):
// 1. binding.gyp: add "native/int8_gemm.cc" to sources (no new flags: the SIMD paths carry target attributes).
// 2. addon.cc: a function int8Gemm(A: Uint8Array, aZp, B: Int8Array, bZp: Int32Array|null, bias: Int32Array|null,
//    M, N, K, C: Int32Array) calling qk_gemm_u8s8 on the typed arrays' memory, split over the thread pool by rows
//    of M; and requantFloatU8 / requantFixedU8 the same way.
// 3. src/int/kernels/gemm.ts: gemmBuffers() holds int16 operands already shifted by their zero points; a native path
//    would instead keep A as uint8 with a_zp, B as int8 [N, K] packed once per session (memo), and call int8Gemm
//    for QLinearMatMul / QGemm and for im2row convolutions (rows = output positions, K = C * kh * kw); the drain()
//    then reads the int32 C as it does the wasm one. Results are exact integers, so every existing test applies.
