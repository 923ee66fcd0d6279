// Packed, cache-blocked single-precision GEMM with register-blocked FMA micro-kernels
// (AVX-512: 8x32 and 6x64 and narrow ones, AVX2+FMA: 6x16, portable: 4x16), chosen at run time.
//
// C[M,N] (+)= A[M,K] * B[K,N]. A is read in place through row pointers ("indirect" GEMM:
// a convolution passes pointers into its NHWC input, so no im2col buffer is built); B is
// packed into NR-wide panels.
#pragma once
#include <cstdint>

namespace qk {

enum class Isa { Generic = 0, Avx2 = 1, Avx512 = 2 };
Isa best_isa();
Isa active_isa();
void set_isa(Isa isa);  // clamps to what the CPU supports
const char* isa_name(Isa isa);

// Most rows a micro-kernel tile has.
constexpr int kMaxMR = 16;

// Where the GEMM reads A: A(i, k + t) = (pointer for row i at k)[t * astride] for t < run(k).
struct ASource {
  int64_t astride = 1;
  virtual ~ASource() = default;
  // Length of the run of k, starting at k, over which one pointer per row suffices.
  virtual int64_t run(int64_t k) const = 0;
  // The pointers of one MR-row tile: out[p*MR + r] for row i0 + r at k = pk[p] (p < np), rows
  // r >= mr (past M) repeating row 0.
  virtual void tile(int64_t i0, int mr, int MR, const int64_t* pk, int64_t np, const float** out) const = 0;
  // s > 0 when, in tiles of MR rows, row r is always at row 0's pointer + r*s (and M is a
  // multiple of MR); else 0.
  virtual int64_t row_stride(int MR) const {
    (void)MR;
    return 0;
  }
};

// Where the GEMM reads B: pack B[k0:k0+kc, j0:j0+nr] as kc rows of `NR` floats (zero past nr).
struct BSource {
  virtual ~BSource() = default;
  virtual void pack(int64_t k0, int64_t kc, int64_t j0, int nr, int NR, float* dst) const = 0;
  // Where B[k0, j0] is when a full panel can be read in place (row k at + k * *stride); else null.
  virtual const float* direct(int64_t k0, int64_t j0, int64_t* stride) const {
    (void)k0, (void)j0, (void)stride;
    return nullptr;
  }
};

// Row-major (or transposed) dense operands.
struct DenseA final : ASource {
  const float* a; int64_t lda; bool trans; int64_t M, K;
  DenseA(const float* a_, int64_t lda_, bool trans_, int64_t M_, int64_t K_)
      : a(a_), lda(lda_), trans(trans_), M(M_), K(K_) { astride = trans ? lda : 1; }
  int64_t run(int64_t k) const override { return K - k; }
  void tile(int64_t i0, int mr, int MR, const int64_t* pk, int64_t np, const float** out) const override;
  int64_t row_stride(int MR) const override { return trans && M % MR == 0 ? 1 : 0; }
};
struct DenseB final : BSource {
  const float* b; int64_t ldb; bool trans;
  DenseB(const float* b_, int64_t ldb_, bool trans_) : b(b_), ldb(ldb_), trans(trans_) {}
  void pack(int64_t k0, int64_t kc, int64_t j0, int nr, int NR, float* dst) const override;
  // Short rows (a conv's dy, narrow weights) are read in place: packing would copy all of B.
  const float* direct(int64_t k0, int64_t j0, int64_t* stride) const override {
    if (trans || ldb > 64) return nullptr;
    *stride = ldb;
    return b + k0 * ldb + j0;
  }
};

// C = A*B (accumulate=false) or C += A*B. Uses the thread pool unless single_thread.
void gemm(int64_t M, int64_t N, int64_t K, const ASource& a, const BSource& b, float* C, int64_t ldc,
          bool accumulate, bool single_thread = false);

// Plain dense helper: op(A) is MxK, op(B) is KxN, all row-major.
void sgemm(bool transA, bool transB, int64_t M, int64_t N, int64_t K, const float* A, int64_t lda,
           const float* B, int64_t ldb, float* C, int64_t ldc, bool accumulate, bool single_thread = false);

}  // namespace qk
