// Function multiversioning for plain loops: QK_MULTI defines one body and compiles it
// three times (AVX-512, AVX2+FMA, portable); the body is force-inlined into each
// target-attributed wrapper so the compiler vectorizes it for that ISA. The call
// dispatches on the ISA chosen at run time (gemm.h: active_isa()).
#pragma once
#include "gemm.h"

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#if defined(__x86_64__)
#define QK_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define QK_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define QK_MULTI(ret, name, params, args)                                                   \
  static inline __attribute__((always_inline)) ret name##_body params;                    \
  QK_TARGET_AVX512 static ret name##_avx512 params { return name##_body args; }           \
  QK_TARGET_AVX2 static ret name##_avx2 params { return name##_body args; }               \
  static ret name##_generic params { return name##_body args; }                          \
  ret name params {                                                                        \
    switch (::qk::active_isa()) {                                                          \
      case ::qk::Isa::Avx512: return name##_avx512 args;                                   \
      case ::qk::Isa::Avx2: return name##_avx2 args;                                       \
      default: return name##_generic args;                                                 \
    }                                                                                      \
  }                                                                                        \
  static inline __attribute__((always_inline)) ret name##_body params
#else
#define QK_MULTI(ret, name, params, args) ret name params
#endif

#if defined(__x86_64__)
// Vector traits for hand-blocked kernels (the GEMM micro-kernels, direct convolutions), used
// inside functions carrying the same target attribute.
#define QK_TGT512 __attribute__((target("avx512f,avx512vl,avx2,fma")))
#define QK_TGT256 __attribute__((target("avx2,fma")))
#define QK_VEC(TGT) TGT __attribute__((always_inline)) static inline

// W lanes; sel_gt(a, b, x, y) = a > b ? x : y lane-wise (sel_eq: a == b); loadm(p, mask(n)) reads lanes [0, n) (zeros past them, no fault past n); store(p, v,
// n, acc) writes lanes [0, n) (adding what is there if acc).
struct Zmm {
  using T = __m512;
  static constexpr int W = 16;
  QK_VEC(QK_TGT512) T zero() { return _mm512_setzero_ps(); }
  QK_VEC(QK_TGT512) T load(const float* p) { return _mm512_loadu_ps(p); }
  using M = __mmask16;  // lanes [0, n) of a masked load
  QK_VEC(QK_TGT512) M mask(int n) { return (M)(n >= 16 ? 0xFFFF : n <= 0 ? 0 : (1u << n) - 1); }
  QK_VEC(QK_TGT512) T loadm(const float* p, M m) { return _mm512_maskz_loadu_ps(m, p); }
  QK_VEC(QK_TGT512) T bcast(const float* p) { return _mm512_set1_ps(*p); }
  QK_VEC(QK_TGT512) T set1(float f) { return _mm512_set1_ps(f); }
  QK_VEC(QK_TGT512) T sel_gt(T a, T b, T x, T y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_GT_OQ), y, x); }
  QK_VEC(QK_TGT512) T sel_eq(T a, T b, T x, T y) { return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, b, _CMP_EQ_OQ), y, x); }
  QK_VEC(QK_TGT512) T fma(T a, T b, T c) { return _mm512_fmadd_ps(a, b, c); }
  QK_VEC(QK_TGT512) T add(T a, T b) { return _mm512_add_ps(a, b); }
  QK_VEC(QK_TGT512) void store(float* p, T v, int n, bool acc) {
    const __mmask16 m = (__mmask16)(n >= 16 ? 0xFFFF : (1u << n) - 1);
    if (acc) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, p));
    _mm512_mask_storeu_ps(p, m, v);
  }
};
struct Ymm {
  using T = __m256;
  static constexpr int W = 8;
  QK_VEC(QK_TGT256) T zero() { return _mm256_setzero_ps(); }
  QK_VEC(QK_TGT256) T load(const float* p) { return _mm256_loadu_ps(p); }
  using M = __m256i;
  QK_VEC(QK_TGT256) M mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  }
  QK_VEC(QK_TGT256) T loadm(const float* p, M m) { return _mm256_maskload_ps(p, m); }
  QK_VEC(QK_TGT256) T bcast(const float* p) { return _mm256_broadcast_ss(p); }
  QK_VEC(QK_TGT256) T set1(float f) { return _mm256_set1_ps(f); }
  QK_VEC(QK_TGT256) T sel_gt(T a, T b, T x, T y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_GT_OQ)); }
  QK_VEC(QK_TGT256) T sel_eq(T a, T b, T x, T y) { return _mm256_blendv_ps(y, x, _mm256_cmp_ps(a, b, _CMP_EQ_OQ)); }
  QK_VEC(QK_TGT256) T fma(T a, T b, T c) { return _mm256_fmadd_ps(a, b, c); }
  QK_VEC(QK_TGT256) T add(T a, T b) { return _mm256_add_ps(a, b); }
  QK_VEC(QK_TGT256) void store(float* p, T v, int n, bool acc) {
    if (n >= 8) {
      _mm256_storeu_ps(p, acc ? _mm256_add_ps(v, _mm256_loadu_ps(p)) : v);
      return;
    }
    alignas(32) float t[8];
    _mm256_store_ps(t, v);
    for (int j = 0; j < n; j++) p[j] = acc ? p[j] + t[j] : t[j];
  }
};

#endif

// The same operations on one float, for portable versions of kernels written against the traits.
struct Scalar {
  using T = float;
  using M = bool;
  static constexpr int W = 1;
  static inline T zero() { return 0.f; }
  static inline M mask(int n) { return n > 0; }
  static inline T loadm(const float* p, M m) { return m ? *p : 0.f; }
  static inline T set1(float f) { return f; }
  static inline T sel_gt(T a, T b, T x, T y) { return a > b ? x : y; }
  static inline T sel_eq(T a, T b, T x, T y) { return a == b ? x : y; }
  static inline void store(float* p, T v, int n, bool acc) {
    if (n > 0) *p = acc ? *p + v : v;
  }
};
