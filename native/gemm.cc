#include "gemm.h"

#include <immintrin.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "simd.h"
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
void DenseA::tile(int64_t i0, int mr, int MR, const int64_t* pk, int64_t np, const float** out) const {
  for (int64_t p = 0; p < np; p++)
    for (int r = 0; r < MR; r++) {
      const int64_t i = r < mr ? i0 + r : i0;
      out[p * MR + r] = trans ? a + pk[p] * lda + i : a + i * lda + pk[p];
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
// ukr(np, plen, ptrs, astride, bp, bstride, c, ldc, acc, mr, nr): C[mr, nr] (+)= A * B over np
// pieces; in piece p, row r reads ptrs[p*MR + r][t*astride] for t < plen[p], and B row k is at
// bp + k*bstride (packed panels: bstride = NR).
using Ukr = void (*)(int64_t, const int64_t*, const float* const*, int64_t, const float*, int64_t, float*, int64_t,
                     bool, int, int);

template <int MR, int NR>
static void ukr_generic(int64_t np, const int64_t* plen, const float* const* ptrs, int64_t as, const float* bp,
                        int64_t bs, float* c, int64_t ldc, bool acc, int mr, int nr) {
  float t[MR][NR] = {};
  for (int64_t p = 0; p < np; p++) {
    const float* a[MR];
    for (int r = 0; r < MR; r++) a[r] = ptrs[p * MR + r];
    for (int64_t k = 0; k < plen[p]; k++, bp += bs)
      for (int r = 0; r < MR; r++) {
        const float av = a[r][k * as];
        for (int j = 0; j < NR; j++) t[r][j] += av * bp[j];
      }
  }
  for (int r = 0; r < mr; r++)
    for (int j = 0; j < nr; j++) c[r * ldc + j] = acc ? c[r * ldc + j] + t[r][j] : t[r][j];
}

#if defined(__x86_64__)
// MR rows x NV vectors of V: the accumulators stay in registers (loops fully unrolled).
// RS > 0: row r of every piece is at ptrs[p*MR] + r*RS (one base register, constant offsets).
#define QK_UKR(NAME, TGT, V)                                                                                     \
  template <int MR, int NV, int RS = 0>                                                                          \
  TGT static void NAME(int64_t np, const int64_t* plen, const float* const* ptrs, int64_t as, const float* bp,   \
                       int64_t bs, float* c, int64_t ldc, bool acc, int mr, int nr) {                           \
    typename V::T t[MR][NV];                                                                                    \
    _Pragma("GCC unroll 16") for (int r = 0; r < MR; r++)                                                       \
      _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) t[r][v] = V::zero();                                 \
    for (int64_t p = 0; p < np; p++) {                                                                          \
      const float* a[MR];                                                                                       \
      _Pragma("GCC unroll 16") for (int r = 0; r < MR; r++) a[r] = RS ? ptrs[p * MR] + r * RS : ptrs[p * MR + r];\
      const int64_t L = plen[p];                                                                                \
      for (int64_t k = 0, o = 0; k < L; k++, o += as, bp += bs) {                                               \
        typename V::T b[NV];                                                                                    \
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) b[v] = V::load(bp + v * V::W);                     \
        _Pragma("GCC unroll 16") for (int r = 0; r < MR; r++) {                                                 \
          const typename V::T av = V::bcast(a[r] + o);                                                          \
          _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) t[r][v] = V::fma(av, b[v], t[r][v]);             \
        }                                                                                                       \
      }                                                                                                         \
    }                                                                                                           \
    for (int r = 0; r < mr; r++)                                                                                \
      _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) if (nr > v * V::W)                                   \
        V::store(c + r * ldc + v * V::W, t[r][v], nr - v * V::W, acc);                                          \
  }
QK_UKR(ukr_zmm, QK_TGT512, Zmm)
QK_UKR(ukr_ymm, QK_TGT256, Ymm)
#undef QK_UKR
#endif

struct Kernel {
  int MR, NR;
  Ukr fn;
};

// Narrow B (few output channels: small convolutions, filter gradients) gets a kernel of
// one vector per row and more rows, so fewer lanes idle past N. Sources whose tile rows are
// evenly spaced (a filter gradient's input channels, a conv's pixels along an output row)
// get kernels that address them from one register: 16 row pointers would not fit in the
// general-purpose registers.
template <int MR, int NV, int... RS>
static Ukr spaced(int64_t rs) {
  Ukr f = nullptr;
  (void)((rs == RS ? (f = ukr_zmm<MR, NV, RS>, true) : false) || ...);
  return f;
}

static Kernel kernel_for(Isa isa, int64_t N, const ASource& a) {
#if defined(__x86_64__)
  if (isa == Isa::Avx512) {
    if (N <= 8) return {12, 8, ukr_ymm<12, 1>};
    if (N <= 16) {
      if (Ukr f = spaced<16, 1, 1, 3, 16, 32, 64>(a.row_stride(16))) return {16, 16, f};
      return {12, 16, ukr_zmm<12, 1>};
    }
    // Rows one pixel apart (a conv along an output row): 8 rows from one register.
    if (Ukr f = spaced<8, 2, 16, 32, 64, 128>(a.row_stride(8))) return {8, 32, f};
    // Up to 64 columns otherwise (64-channel filter gradients): one panel, 6 rows of 4 vectors, 10 loads
    // per 24 FMAs.
    if (N > 48 && N <= 64) return {6, 64, ukr_zmm<6, 4>};
    if (Ukr f = spaced<8, 2, 1>(a.row_stride(8))) return {8, 32, f};
    return {8, 32, ukr_zmm<8, 2>};
  }
  if (isa == Isa::Avx2) {
    if (N <= 8) return {12, 8, ukr_ymm<12, 1>};
    return {6, 16, ukr_ymm<6, 2>};
  }
#endif
  (void)isa, (void)a;
  if (N <= 8) return {4, 8, ukr_generic<4, 8>};
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
  const Kernel kr = kernel_for(g_isa, N, a);
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
  std::unique_ptr<float[]> bpack(new float[(size_t)(cdiv(NC, NR) * NR * KC)]);  // uninitialized: pack writes it
  std::vector<const float*> bpanel(cdiv(NC, NR));
  std::vector<int64_t> bstride(cdiv(NC, NR));

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
        const int64_t j0 = jc + p * NR;
        const int nr = (int)std::min<int64_t>(NR, N - j0);
        const float* d = nr == NR ? b.direct(k0, j0, &bstride[p]) : nullptr;
        if (d) {
          bpanel[p] = d;
        } else {
          b.pack(k0, kc, j0, nr, NR, bpack.get() + p * kc * NR);
          bpanel[p] = bpack.get() + p * kc * NR;
          bstride[p] = NR;
        }
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
          a.tile(i0, mr, MR, pk.data(), np, all.data() + (t - t0) * np * MR);
        }
        for (int64_t pnl = 0; pnl < npanels; pnl++) {
          const int64_t j0 = jc + pnl * NR;
          const int nr = (int)std::min<int64_t>(NR, N - j0);
          for (int64_t t = t0; t < t1; t++) {
            const int64_t i0 = t * MR;
            const int mr = (int)std::min<int64_t>(MR, M - i0);
            kr.fn(np, plen.data(), all.data() + (t - t0) * np * MR, a.astride, bpanel[pnl], bstride[pnl],
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
