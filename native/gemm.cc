#include "gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "threadpool.h"

namespace qk {

// ---------------------------------------------------------------- ISA selection
static bool cpu_has(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (isa == Isa::Avx512) return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  if (isa == Isa::Avx2) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  return isa == Isa::Generic;
}

Isa best_isa() {
  static Isa best = cpu_has(Isa::Avx512) ? Isa::Avx512 : cpu_has(Isa::Avx2) ? Isa::Avx2 : Isa::Generic;
  return best;
}

static Isa initial_isa() {
  Isa isa = best_isa();
  if (const char* e = std::getenv("QATKIT_ISA")) {
    if (!std::strcmp(e, "generic")) isa = Isa::Generic;
    else if (!std::strcmp(e, "avx2") && cpu_has(Isa::Avx2)) isa = Isa::Avx2;
  }
  return isa;
}

static Isa g_isa = initial_isa();
Isa active_isa() { return g_isa; }
void set_isa(Isa isa) {
  while (!cpu_has(isa)) isa = (Isa)((int)isa - 1);
  g_isa = isa;
}
const char* isa_name(Isa isa) {
  return isa == Isa::Avx512 ? "avx512" : isa == Isa::Avx2 ? "avx2+fma" : "generic";
}

// ---------------------------------------------------------------- sources
void DenseA::rows(int64_t i0, int mr, int64_t k, const float** out) const {
  for (int r = 0; r < mr; r++) {
    int64_t i = std::min(i0 + r, M - 1);
    out[r] = trans ? a + k * lda + i : a + i * lda + k;
  }
}

void DenseB::pack(int64_t k0, int64_t kc, int64_t j0, int nr, int NR, float* dst) const {
  if (!trans) {
    for (int64_t k = 0; k < kc; k++) {
      const float* src = b + (k0 + k) * ldb + j0;
      float* d = dst + k * NR;
      std::memcpy(d, src, sizeof(float) * nr);
      for (int j = nr; j < NR; j++) d[j] = 0.f;
    }
  } else {
    // B(k, j) = b[j * ldb + k]: walk each source row contiguously.
    for (int j = 0; j < NR; j++) {
      if (j < nr) {
        const float* src = b + (j0 + j) * ldb + k0;
        for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = src[k];
      } else {
        for (int64_t k = 0; k < kc; k++) dst[k * NR + j] = 0.f;
      }
    }
  }
}

// ---------------------------------------------------------------- micro-kernels
// ukr(np, plen, ptrs, astride, bp, c, ldc, acc, mr, nr): for each piece p, rows r read
// ptrs[p*MR + r][t*astride], t < plen[p]; bp advances NR floats per k.
using Ukr = void (*)(int64_t, const int64_t*, const float* const*, int64_t, const float*, float*, int64_t,
                     bool, int, int);

template <int MR, int NR>
static void ukr_generic(int64_t np, const int64_t* plen, const float* const* ptrs, int64_t as, const float* bp,
                        float* c, int64_t ldc, bool acc, int mr, int nr) {
  float t[MR][NR] = {};
  for (int64_t p = 0; p < np; p++) {
    const float* a[MR];
    for (int r = 0; r < MR; r++) a[r] = ptrs[p * MR + r];
    for (int64_t k = 0; k < plen[p]; k++) {
      for (int r = 0; r < MR; r++) {
        float av = a[r][k * as];
        for (int j = 0; j < NR; j++) t[r][j] += av * bp[j];
      }
      bp += NR;
    }
  }
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) c[r * ldc + j] = acc ? c[r * ldc + j] + t[r][j] : t[r][j];
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) static void ukr_avx2(int64_t np, const int64_t* plen,
                                                          const float* const* ptrs, int64_t as,
                                                          const float* bp, float* c, int64_t ldc, bool acc,
                                                          int mr, int nr) {
  constexpr int MR = 6;
  __m256 c00 = _mm256_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
         c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00;
  for (int64_t p = 0; p < np; p++) {
    const float *a0 = ptrs[p * MR], *a1 = ptrs[p * MR + 1], *a2 = ptrs[p * MR + 2], *a3 = ptrs[p * MR + 3],
                *a4 = ptrs[p * MR + 4], *a5 = ptrs[p * MR + 5];
    int64_t L = plen[p];
#define QK_AVX2_STEP(off)                                                  \
  {                                                                        \
    __m256 b0 = _mm256_loadu_ps(bp), b1 = _mm256_loadu_ps(bp + 8);        \
    __m256 av = _mm256_broadcast_ss(a0 + (off));                           \
    c00 = _mm256_fmadd_ps(av, b0, c00); c01 = _mm256_fmadd_ps(av, b1, c01); \
    av = _mm256_broadcast_ss(a1 + (off));                                  \
    c10 = _mm256_fmadd_ps(av, b0, c10); c11 = _mm256_fmadd_ps(av, b1, c11); \
    av = _mm256_broadcast_ss(a2 + (off));                                  \
    c20 = _mm256_fmadd_ps(av, b0, c20); c21 = _mm256_fmadd_ps(av, b1, c21); \
    av = _mm256_broadcast_ss(a3 + (off));                                  \
    c30 = _mm256_fmadd_ps(av, b0, c30); c31 = _mm256_fmadd_ps(av, b1, c31); \
    av = _mm256_broadcast_ss(a4 + (off));                                  \
    c40 = _mm256_fmadd_ps(av, b0, c40); c41 = _mm256_fmadd_ps(av, b1, c41); \
    av = _mm256_broadcast_ss(a5 + (off));                                  \
    c50 = _mm256_fmadd_ps(av, b0, c50); c51 = _mm256_fmadd_ps(av, b1, c51); \
    bp += 16;                                                              \
  }
    if (as == 1) {
      for (int64_t k = 0; k < L; k++) QK_AVX2_STEP(k)
    } else {
      for (int64_t k = 0, o = 0; k < L; k++, o += as) QK_AVX2_STEP(o)
    }
#undef QK_AVX2_STEP
  }
  __m256 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31}, {c40, c41}, {c50, c51}};
  if (nr == 16) {
    for (int r = 0; r < mr; r++) {
      float* cr = c + r * ldc;
      __m256 v0 = rows[r][0], v1 = rows[r][1];
      if (acc) {
        v0 = _mm256_add_ps(v0, _mm256_loadu_ps(cr));
        v1 = _mm256_add_ps(v1, _mm256_loadu_ps(cr + 8));
      }
      _mm256_storeu_ps(cr, v0);
      _mm256_storeu_ps(cr + 8, v1);
    }
  } else {
    alignas(32) float t[16];
    for (int r = 0; r < mr; r++) {
      float* cr = c + r * ldc;
      _mm256_store_ps(t, rows[r][0]);
      _mm256_store_ps(t + 8, rows[r][1]);
      for (int j = 0; j < nr; j++) cr[j] = acc ? cr[j] + t[j] : t[j];
    }
  }
}

__attribute__((target("avx512f,fma"))) static void ukr_avx512(int64_t np, const int64_t* plen,
                                                               const float* const* ptrs, int64_t as,
                                                               const float* bp, float* c, int64_t ldc,
                                                               bool acc, int mr, int nr) {
  constexpr int MR = 8;
  __m512 c00 = _mm512_setzero_ps(), c01 = c00, c10 = c00, c11 = c00, c20 = c00, c21 = c00, c30 = c00,
         c31 = c00, c40 = c00, c41 = c00, c50 = c00, c51 = c00, c60 = c00, c61 = c00, c70 = c00, c71 = c00;
  for (int64_t p = 0; p < np; p++) {
    const float *a0 = ptrs[p * MR], *a1 = ptrs[p * MR + 1], *a2 = ptrs[p * MR + 2], *a3 = ptrs[p * MR + 3],
                *a4 = ptrs[p * MR + 4], *a5 = ptrs[p * MR + 5], *a6 = ptrs[p * MR + 6], *a7 = ptrs[p * MR + 7];
    int64_t L = plen[p];
#define QK_AVX512_STEP(off)                                                 \
  {                                                                         \
    __m512 b0 = _mm512_loadu_ps(bp), b1 = _mm512_loadu_ps(bp + 16);        \
    __m512 av = _mm512_set1_ps(a0[off]);                                    \
    c00 = _mm512_fmadd_ps(av, b0, c00); c01 = _mm512_fmadd_ps(av, b1, c01); \
    av = _mm512_set1_ps(a1[off]);                                           \
    c10 = _mm512_fmadd_ps(av, b0, c10); c11 = _mm512_fmadd_ps(av, b1, c11); \
    av = _mm512_set1_ps(a2[off]);                                           \
    c20 = _mm512_fmadd_ps(av, b0, c20); c21 = _mm512_fmadd_ps(av, b1, c21); \
    av = _mm512_set1_ps(a3[off]);                                           \
    c30 = _mm512_fmadd_ps(av, b0, c30); c31 = _mm512_fmadd_ps(av, b1, c31); \
    av = _mm512_set1_ps(a4[off]);                                           \
    c40 = _mm512_fmadd_ps(av, b0, c40); c41 = _mm512_fmadd_ps(av, b1, c41); \
    av = _mm512_set1_ps(a5[off]);                                           \
    c50 = _mm512_fmadd_ps(av, b0, c50); c51 = _mm512_fmadd_ps(av, b1, c51); \
    av = _mm512_set1_ps(a6[off]);                                           \
    c60 = _mm512_fmadd_ps(av, b0, c60); c61 = _mm512_fmadd_ps(av, b1, c61); \
    av = _mm512_set1_ps(a7[off]);                                           \
    c70 = _mm512_fmadd_ps(av, b0, c70); c71 = _mm512_fmadd_ps(av, b1, c71); \
    bp += 32;                                                               \
  }
    if (as == 1) {
      for (int64_t k = 0; k < L; k++) QK_AVX512_STEP(k)
    } else {
      for (int64_t k = 0, o = 0; k < L; k++, o += as) QK_AVX512_STEP(o)
    }
#undef QK_AVX512_STEP
  }
  __m512 rows[MR][2] = {{c00, c01}, {c10, c11}, {c20, c21}, {c30, c31},
                        {c40, c41}, {c50, c51}, {c60, c61}, {c70, c71}};
  __mmask16 m0 = (__mmask16)(nr >= 16 ? 0xFFFF : (1u << nr) - 1);
  __mmask16 m1 = (__mmask16)(nr >= 32 ? 0xFFFF : nr <= 16 ? 0 : (1u << (nr - 16)) - 1);
  for (int r = 0; r < mr; r++) {
    float* cr = c + r * ldc;
    __m512 v0 = rows[r][0], v1 = rows[r][1];
    if (acc) {
      v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, cr));
      v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, cr + 16));
    }
    _mm512_mask_storeu_ps(cr, m0, v0);
    _mm512_mask_storeu_ps(cr + 16, m1, v1);
  }
}
#endif

struct Kernel {
  int MR, NR;
  Ukr fn;
};

static Kernel kernel_for(Isa isa) {
#if defined(__x86_64__)
  if (isa == Isa::Avx512) return {8, 32, ukr_avx512};
  if (isa == Isa::Avx2) return {6, 16, ukr_avx2};
#endif
  (void)isa;
  return {4, 16, ukr_generic<4, 16>};
}

// ---------------------------------------------------------------- driver
static inline int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

void gemm(int64_t M, int64_t N, int64_t K, const ASource& a, const BSource& b, float* C, int64_t ldc,
          bool accumulate, bool single_thread) {
  if (M <= 0 || N <= 0) return;
  if (K <= 0) {
    if (!accumulate)
      for (int64_t i = 0; i < M; i++) std::memset(C + i * ldc, 0, sizeof(float) * N);
    return;
  }
  const Kernel kr = kernel_for(g_isa);
  const int MR = kr.MR, NR = kr.NR;
  ThreadPool& pool = ThreadPool::get();
  const int T = single_thread ? 1 : pool.size();
  const bool small = (double)M * N * K < 64.0 * 64 * 64;
  const int Tuse = small ? 1 : T;

  // BLIS-style blocking: for each column block and k chunk, pack B[kc, nc] (shared, in L2/L3),
  // then threads take groups of MR-row tiles; A rows are read in place.
  const int64_t NC = std::min<int64_t>(cdiv(N, NR) * NR, 512);
  // Narrow B (conv filters, dy of a filter gradient): longer k chunks, fewer synchronizations.
  const int64_t kcMax = N <= 128 ? 1024 : 512;
  const int64_t KC = K <= kcMax + kcMax / 4 ? K : cdiv(K, cdiv(K, kcMax));
  std::vector<float> bpack((size_t)cdiv(NC, NR) * NR * KC);

  const int64_t mtiles = cdiv(M, MR);
  // Row-tile groups: enough for load balance, each small enough for its A rows to stay in L2.
  int64_t group = std::max<int64_t>(1, 192 / MR);
  if (Tuse > 1) group = std::max<int64_t>(1, std::min<int64_t>(group, cdiv(mtiles, Tuse * 4)));
  const int64_t ngroups = cdiv(mtiles, group);

  for (int64_t jc = 0; jc < N; jc += NC) {
    const int64_t nc = std::min(NC, N - jc);
    const int64_t npanels = cdiv(nc, NR);
    for (int64_t k0 = 0; k0 < K; k0 += KC) {
      const int64_t kc = std::min(KC, K - k0);
      auto packPanel = [&](int64_t p) {
        int64_t j0 = jc + p * NR;
        int nr = (int)std::min<int64_t>(NR, N - j0);
        b.pack(k0, kc, j0, nr, NR, bpack.data() + p * kc * NR);
      };
      if (Tuse > 1 && npanels > 1) pool.parallel_for(npanels, packPanel);
      else for (int64_t p = 0; p < npanels; p++) packPanel(p);

      // Split the chunk into runs where one pointer per row suffices.
      std::vector<int64_t> pk, plen;
      for (int64_t k = k0; k < k0 + kc;) {
        int64_t r = std::min(a.run(k), k0 + kc - k);
        pk.push_back(k);
        plen.push_back(r);
        k += r;
      }
      const int64_t np = (int64_t)plen.size();
      const bool acc = accumulate || k0 > 0;
      auto runGroup = [&](int64_t g) {
        const int64_t t0 = g * group, t1 = std::min(mtiles, t0 + group);
        // Row pointers for the whole group, then BLIS order: each B panel (kc x NR) stays in L1
        // while the group's row tiles stream past it.
        std::vector<const float*> all((t1 - t0) * np * MR);
        for (int64_t t = t0; t < t1; t++) {
          const int64_t i0 = t * MR;
          const int mr = (int)std::min<int64_t>(MR, M - i0);
          const float** pp = all.data() + (t - t0) * np * MR;
          for (int64_t p = 0; p < np; p++) {
            a.rows(i0, mr, pk[p], pp + p * MR);
            for (int r = mr; r < MR; r++) pp[p * MR + r] = pp[p * MR];
          }
        }
        for (int64_t pnl = 0; pnl < npanels; pnl++) {
          const int64_t j0 = jc + pnl * NR;
          const int nr = (int)std::min<int64_t>(NR, N - j0);
          for (int64_t t = t0; t < t1; t++) {
            const int64_t i0 = t * MR;
            const int mr = (int)std::min<int64_t>(MR, M - i0);
            kr.fn(np, plen.data(), all.data() + (t - t0) * np * MR, a.astride, bpack.data() + pnl * kc * NR,
                  C + i0 * ldc + j0, ldc, acc, mr, nr);
          }
        }
      };
      if (Tuse > 1 && ngroups > 1) pool.parallel_for(ngroups, runGroup);
      else for (int64_t g = 0; g < ngroups; g++) runGroup(g);
    }
  }
}

void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate, bool single_thread) {
  DenseA a(A, lda, transA, M, K);
  DenseB b(B, ldb, transB);
  gemm(M, N, K, a, b, C, ldc, accumulate, single_thread);
}

}  // namespace qk
