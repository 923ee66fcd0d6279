// Element-wise ops, reductions, batch norm, softmax and fake quantization.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "kernels.h"
#include "simd.h"
#include "threadpool.h"

namespace qk {

static constexpr int64_t kGrain = 1 << 14;  // elements per task below which threading does not pay

// ---------------------------------------------------------------- binary
template <int OP>
static inline __attribute__((always_inline)) float bin(float a, float b) {
  if (OP == kAdd) return a + b;
  if (OP == kSub) return a - b;
  if (OP == kMul) return a * b;
  if (OP == kDiv) return a / b;
  if (OP == kMax) return a > b ? a : b;
  if (OP == kMin) return a < b ? a : b;
  if (OP == kSqDiff) return (a - b) * (a - b);
  return std::pow(a, b);
}

// out[r, m, c] = a[r*as[0] + m*as[1] + c*as[2]] op b[...]; inner strides are 0 or 1.
template <int OP>
static inline __attribute__((always_inline)) void bin_rows(const float* a, const int64_t* as, const float* b,
                                                           const int64_t* bs, float* o, int64_t q0, int64_t q1,
                                                           int64_t M, int64_t C) {
  int64_t r = q0 / M, m = q0 % M;  // advanced incrementally: no division per row
  for (int64_t q = q0; q < q1; q++, ++m == M ? (m = 0, ++r) : 0) {
    const float* ar = a + r * as[0] + m * as[1];
    const float* br = b + r * bs[0] + m * bs[1];
    float* orow = o + q * C;
    if (as[2] && bs[2])
      for (int64_t c = 0; c < C; c++) orow[c] = bin<OP>(ar[c], br[c]);
    else if (as[2]) {
      const float bv = br[0];
      for (int64_t c = 0; c < C; c++) orow[c] = bin<OP>(ar[c], bv);
    } else if (bs[2]) {
      const float av = ar[0];
      for (int64_t c = 0; c < C; c++) orow[c] = bin<OP>(av, br[c]);
    } else {
      const float v = bin<OP>(ar[0], br[0]);
      for (int64_t c = 0; c < C; c++) orow[c] = v;
    }
  }
}

QK_MULTI(void, binary_rows,
         (int op, const float* a, const int64_t* as, const float* b, const int64_t* bs, float* o, int64_t q0,
          int64_t q1, int64_t M, int64_t C),
         (op, a, as, b, bs, o, q0, q1, M, C)) {
  switch (op) {
    case kAdd: bin_rows<kAdd>(a, as, b, bs, o, q0, q1, M, C); break;
    case kSub: bin_rows<kSub>(a, as, b, bs, o, q0, q1, M, C); break;
    case kMul: bin_rows<kMul>(a, as, b, bs, o, q0, q1, M, C); break;
    case kDiv: bin_rows<kDiv>(a, as, b, bs, o, q0, q1, M, C); break;
    case kMax: bin_rows<kMax>(a, as, b, bs, o, q0, q1, M, C); break;
    case kMin: bin_rows<kMin>(a, as, b, bs, o, q0, q1, M, C); break;
    case kSqDiff: bin_rows<kSqDiff>(a, as, b, bs, o, q0, q1, M, C); break;
    default: bin_rows<kPow>(a, as, b, bs, o, q0, q1, M, C); break;
  }
}

void binary(int op, const float* a, const int64_t* as, const float* b, const int64_t* bs, float* out, int64_t R,
            int64_t M, int64_t C) {
  // x[rows, C] op v[C] with short rows (bias, BN scale over NHWC): repeat v into a pattern
  // of ~1K floats and run long vector loops over the flat array instead of C-long rows.
  const bool aFull = as[2] == 1 && as[1] == C && (R == 1 || as[0] == M * C);
  const bool bFull = bs[2] == 1 && bs[1] == C && (R == 1 || bs[0] == M * C);
  const bool aVec = as[0] == 0 && as[1] == 0 && as[2] == 1, bVec = bs[0] == 0 && bs[1] == 0 && bs[2] == 1;
  if (C < 256 && R * M > 1 && ((aFull && bVec) || (aVec && bFull))) {
    const int64_t reps = std::max<int64_t>(1, 1024 / C), L = reps * C, n = R * M * C;
    std::vector<float> pat((size_t)L);
    const float* v = aVec ? a : b;
    for (int64_t i = 0; i < L; i++) pat[i] = v[i % C];
    const int64_t one[3] = {0, 0, 1};
    parallel_range((n + L - 1) / L, std::max<int64_t>(1, kGrain / L), [&](int64_t s, int64_t e) {
      for (int64_t blk = s; blk < e; blk++) {
        const int64_t off = blk * L, len = std::min(L, n - off);
        if (aVec) binary_rows(op, pat.data(), one, b + off, one, out + off, 0, 1, 1, len);
        else binary_rows(op, a + off, one, pat.data(), one, out + off, 0, 1, 1, len);
      }
    });
    return;
  }
  if (R * M == 1 && C > kGrain && as[2] <= 1 && bs[2] <= 1) {
    // One long row: split it so both threads get work.
    parallel_range(C, kGrain, [&](int64_t s, int64_t e) {
      binary_rows(op, a + s * as[2], as, b + s * bs[2], bs, out + s, 0, 1, 1, e - s);
    });
    return;
  }
  parallel_range(R * M, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, C)),
                 [&](int64_t s, int64_t e) { binary_rows(op, a, as, b, bs, out, s, e, M, C); });
}

// ---------------------------------------------------------------- unary
template <int OP>
static inline __attribute__((always_inline)) float un(float x, float alpha) {
  if (OP == kRelu) return x < 0.f ? 0.f : x;  // NaN passes through, as in tfjs
  if (OP == kRelu6) return x < 0.f ? 0.f : (x > 6.f ? 6.f : x);
  if (OP == kStep) return x > 0.f ? 1.f : (x == x ? alpha : x);
  if (OP == kNeg) return -x;
  if (OP == kExp) return std::exp(x);
  if (OP == kLog) return std::log(x);
  if (OP == kSqrt) return std::sqrt(x);
  if (OP == kRsqrt) return 1.f / std::sqrt(x);
  if (OP == kSquare) return x * x;
  if (OP == kAbs) return std::fabs(x);
  if (OP == kSigmoid) return 1.f / (1.f + std::exp(-x));
  if (OP == kTanh) return std::tanh(x);
  if (OP == kElu) return x >= 0.f ? x : std::exp(x) - 1.f;
  if (OP == kLeakyRelu) return x < 0.f ? alpha * x : x;
  if (OP == kReciprocal) return 1.f / x;
  if (OP == kLog1p) return std::log1p(x);
  if (OP == kSoftplus) return x > 20.f ? x : std::log1p(std::exp(x));
  if (OP == kRound) return std::nearbyint(x);  // half to even, as tfjs
  if (OP == kFloor) return std::floor(x);
  if (OP == kCeil) return std::ceil(x);
  return x;
}

#define QK_UN_CASE(OPC) \
  case OPC: for (int64_t i = s; i < e; i++) y[i] = un<OPC>(x[i], alpha); break;

QK_MULTI(void, unary_range, (int op, const float* x, float* y, int64_t s, int64_t e, float alpha),
         (op, x, y, s, e, alpha)) {
  switch (op) {
    QK_UN_CASE(kRelu) QK_UN_CASE(kRelu6) QK_UN_CASE(kStep) QK_UN_CASE(kNeg) QK_UN_CASE(kExp) QK_UN_CASE(kLog)
    QK_UN_CASE(kSqrt) QK_UN_CASE(kRsqrt) QK_UN_CASE(kSquare) QK_UN_CASE(kAbs) QK_UN_CASE(kSigmoid)
    QK_UN_CASE(kTanh) QK_UN_CASE(kElu) QK_UN_CASE(kLeakyRelu) QK_UN_CASE(kReciprocal) QK_UN_CASE(kLog1p)
    QK_UN_CASE(kSoftplus) QK_UN_CASE(kRound) QK_UN_CASE(kFloor) QK_UN_CASE(kCeil)
    default: std::memmove(y + s, x + s, sizeof(float) * (e - s)); break;
  }
}

void unary(int op, const float* x, float* y, int64_t n, float alpha) {
  parallel_range(n, kGrain, [&](int64_t s, int64_t e) { unary_range(op, x, y, s, e, alpha); });
}

// ---------------------------------------------------------------- reductions
QK_MULTI(void, reduce_rows,
         (int op, const float* x, float* out, int64_t mid, int64_t inner, int64_t o0, int64_t o1, int64_t i0,
          int64_t i1),
         (op, x, out, mid, inner, o0, o1, i0, i1)) {
  const bool isMax = op == kMaxR, isMin = op == kMinR;
  for (int64_t o = o0; o < o1; o++) {
    const float* xo = x + o * mid * inner;
    float* out_o = out + o * inner;
    if (inner == 1) {
      // Contiguous: 8 partial accumulators let the compiler vectorize the sum.
      if (isMax || isMin) {
        float m = mid ? xo[0] : (isMax ? -INFINITY : INFINITY);
        for (int64_t k = 1; k < mid; k++) m = isMax ? (xo[k] > m || xo[k] != xo[k] ? xo[k] : m)
                                                  : (xo[k] < m || xo[k] != xo[k] ? xo[k] : m);
        out_o[0] = m;
      } else {
        float acc[16] = {};
        int64_t k = 0;
        for (; k + 16 <= mid; k += 16)
          for (int j = 0; j < 16; j++) acc[j] += xo[k + j];
        float sum = 0.f;
        for (; k < mid; k++) sum += xo[k];
        for (int j = 0; j < 16; j++) sum += acc[j];
        out_o[0] = op == kMean ? sum / (float)mid : sum;
      }
      continue;
    }
    for (int64_t i = i0; i < i1; i++) out_o[i] = (isMax || isMin) ? xo[i] : 0.f;
    for (int64_t k = (isMax || isMin) ? 1 : 0; k < mid; k++) {
      const float* xr = xo + k * inner;
      if (isMax)
        for (int64_t i = i0; i < i1; i++) out_o[i] = xr[i] > out_o[i] ? xr[i] : out_o[i];
      else if (isMin)
        for (int64_t i = i0; i < i1; i++) out_o[i] = xr[i] < out_o[i] ? xr[i] : out_o[i];
      else
        for (int64_t i = i0; i < i1; i++) out_o[i] += xr[i];
    }
    if (op == kMean) {
      const float inv = 1.f / (float)mid;
      for (int64_t i = i0; i < i1; i++) out_o[i] *= inv;
    }
  }
}

void reduce(int op, const float* x, float* out, int64_t outer, int64_t mid, int64_t inner) {
  if (outer == 1 && inner > 1 && inner < 1024 && mid >= 2048) {
    // Leading axis, few columns (batch-norm statistics over N*H*W of NHWC): split the rows
    // into fixed chunks (partial results merged in order, independent of the thread count).
    const int64_t rowsPer = 512, chunks = (mid + rowsPer - 1) / rowsPer;
    std::vector<float> part((size_t)(chunks * inner));
    const int pop = op == kMean ? kSum : op;
    ThreadPool::get().parallel_for(chunks, [&](int64_t k) {
      const int64_t r0 = k * rowsPer, r1 = std::min(mid, r0 + rowsPer);
      reduce_rows(pop, x + r0 * inner, &part[k * inner], r1 - r0, inner, 0, 1, 0, inner);
    });
    for (int64_t i = 0; i < inner; i++) out[i] = part[i];
    for (int64_t k = 1; k < chunks; k++) {
      const float* pk = &part[k * inner];
      if (op == kMaxR) for (int64_t i = 0; i < inner; i++) out[i] = pk[i] > out[i] || pk[i] != pk[i] ? pk[i] : out[i];
      else if (op == kMinR) for (int64_t i = 0; i < inner; i++) out[i] = pk[i] < out[i] || pk[i] != pk[i] ? pk[i] : out[i];
      else for (int64_t i = 0; i < inner; i++) out[i] += pk[i];
    }
    if (op == kMean)
      for (int64_t i = 0; i < inner; i++) out[i] /= (float)mid;
    return;
  }
  if (outer == 1 && inner > 1) {
    // Reducing the leading axis over many columns: split the columns.
    parallel_range(inner, std::max<int64_t>(16, kGrain / std::max<int64_t>(1, mid)), [&](int64_t s, int64_t e) {
      reduce_rows(op, x, out, mid, inner, 0, 1, s, e);
    });
    return;
  }
  if (outer == 1 && inner == 1 && mid > 4 * kGrain && op != kMaxR && op != kMinR) {
    const int T = ThreadPool::get().size();
    std::vector<float> part(T, 0.f);
    ThreadPool::get().run_per_thread([&](int t) {
      int64_t s = mid * t / T, e = mid * (t + 1) / T;
      if (s < e) reduce_rows(kSum, x + s, &part[t], e - s, 1, 0, 1, 0, 1);
    });
    float sum = 0.f;
    for (float v : part) sum += v;
    out[0] = op == kMean ? sum / (float)mid : sum;
    return;
  }
  parallel_range(outer, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, mid * inner)), [&](int64_t s, int64_t e) {
    reduce_rows(op, x, out, mid, inner, s, e, 0, inner);
  });
}

// ---------------------------------------------------------------- batch norm, softmax, bias+act
void batch_norm(const float* x, const float* mean, int64_t nmean, const float* var, int64_t nvar,
                const float* offset, int64_t noff, const float* scale, int64_t nscale, float eps, float* y,
                int64_t n, int64_t C) {
  // Fold into y = x * mul + add per channel (as tfjs: (x - mean) * scale * rsqrt(var + eps) + offset).
  std::vector<float> mul(C), add(C);
  for (int64_t c = 0; c < C; c++) {
    const float m = mean[nmean == 1 ? 0 : c], v = var[nvar == 1 ? 0 : c];
    const float s = scale ? scale[nscale == 1 ? 0 : c] : 1.f, o = offset ? offset[noff == 1 ? 0 : c] : 0.f;
    const float inv = s / std::sqrt(v + eps);
    mul[c] = inv;
    add[c] = o - m * inv;
  }
  channel_affine(x, mul.data(), add.data(), y, n / C, C, false);
}

void softmax(const float* x, float* y, int64_t R, int64_t C) {
  parallel_range(R, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, C)), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; r++) {
      const float* xr = x + r * C;
      float* yr = y + r * C;
      float m = -INFINITY;
      for (int64_t c = 0; c < C; c++) m = xr[c] > m ? xr[c] : m;
      float sum = 0.f;
      for (int64_t c = 0; c < C; c++) {
        yr[c] = std::exp(xr[c] - m);
        sum += yr[c];
      }
      const float inv = 1.f / sum;
      for (int64_t c = 0; c < C; c++) yr[c] *= inv;
    }
  });
}

QK_MULTI(void, bias_act_rows,
         (float* c, int64_t r0, int64_t r1, int64_t N, const float* bias, int act, float alpha, const float* prelu,
          int64_t nprelu),
         (c, r0, r1, N, bias, act, alpha, prelu, nprelu)) {
  for (int64_t r = r0; r < r1; r++) {
    float* cr = c + r * N;
    if (bias)
      for (int64_t j = 0; j < N; j++) cr[j] += bias[j];
    switch (act) {
      case 1: for (int64_t j = 0; j < N; j++) cr[j] = cr[j] < 0.f ? 0.f : cr[j]; break;
      case 2: for (int64_t j = 0; j < N; j++) cr[j] = cr[j] < 0.f ? 0.f : (cr[j] > 6.f ? 6.f : cr[j]); break;
      case 3: for (int64_t j = 0; j < N; j++) cr[j] = cr[j] >= 0.f ? cr[j] : std::exp(cr[j]) - 1.f; break;
      case 4: for (int64_t j = 0; j < N; j++) cr[j] = cr[j] < 0.f ? alpha * cr[j] : cr[j]; break;
      case 5: for (int64_t j = 0; j < N; j++) cr[j] = 1.f / (1.f + std::exp(-cr[j])); break;
      case 6:
        for (int64_t j = 0; j < N; j++) cr[j] = cr[j] < 0.f ? prelu[nprelu == 1 ? 0 : j] * cr[j] : cr[j];
        break;
      default: break;
    }
  }
}

void bias_act(float* c, int64_t M, int64_t N, const float* bias, int act, float alpha, const float* prelu,
              int64_t nprelu) {
  if (!bias && act == 0) return;
  parallel_range(M, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, N)), [&](int64_t s, int64_t e) {
    bias_act_rows(c, s, e, N, bias, act, alpha, prelu, nprelu);
  });
}

// ---------------------------------------------------------------- fake quantization
// Per-thread partial min/max (T rows of nch) reduced into mn/mx.
static void merge_min_max(const std::vector<float>& pmn, const std::vector<float>& pmx, int T, int64_t nch, float* mn,
                          float* mx) {
  for (int64_t c = 0; c < nch; c++) {
    float lo = INFINITY, hi = -INFINITY;
    for (int t = 0; t < T; t++) {
      lo = std::min(lo, pmn[t * nch + c]);
      hi = std::max(hi, pmx[t * nch + c]);
    }
    mn[c] = lo;
    mx[c] = hi;
  }
}

// q = clamp(round_half_even(x * (1/s)) + zp, qmin, qmax); y = (q - zp) * s.
// x times the float32 reciprocal, as PyTorch's fake_quantize_* (and src/quant/fakequant.ts) compute it, so that
// ties round the same way on every backend.
QK_MULTI(void, fq_range,
         (const float* x, float* y, const float* scale, const float* zp, int64_t nch, int64_t inner, float qmin,
          float qmax, int64_t s, int64_t e, float* mn, float* mx),
         (x, y, scale, zp, nch, inner, qmin, qmax, s, e, mn, mx)) {
  int64_t i = s;
  while (i < e) {
    const int64_t ch = (i / inner) % nch;
    const int64_t end = std::min(e, (i / inner + 1) * inner);
    const float sc = scale[ch], z = zp[ch], inv = 1.0f / sc;
    float lo = mn ? mn[ch] : 0.f, hi = mx ? mx[ch] : 0.f;
    for (int64_t j = i; j < end; j++) {
      const float v = x[j];
      float q = std::nearbyint(v * inv) + z;
      q = q < qmin ? qmin : (q > qmax ? qmax : q);
      y[j] = (q - z) * sc;
      lo = v < lo ? v : lo;
      hi = v > hi ? v : hi;
    }
    if (mn) {
      mn[ch] = lo;
      mx[ch] = hi;
    }
    i = end;
  }
}

void fake_quant(const float* x, float* y, int64_t n, const float* scale, const float* zp, int64_t nch,
                int64_t inner, float qmin, float qmax, float* mn, float* mx) {
  const int T = ThreadPool::get().size();
  if (!mn) {
    parallel_range(n, kGrain, [&](int64_t s, int64_t e) {
      fq_range(x, y, scale, zp, nch, inner, qmin, qmax, s, e, nullptr, nullptr);
    });
    return;
  }
  // Fused observation: per-thread running min/max, merged afterwards.
  std::vector<float> pmn((size_t)T * nch, INFINITY), pmx((size_t)T * nch, -INFINITY);
  ThreadPool::get().run_per_thread([&](int t) {
    int64_t s = n * t / T, e = n * (t + 1) / T;
    if (s < e) fq_range(x, y, scale, zp, nch, inner, qmin, qmax, s, e, &pmn[t * nch], &pmx[t * nch]);
  });
  merge_min_max(pmn, pmx, T, nch, mn, mx);
}

// Straight-through estimator for x (dx = dy inside the clamp range), LSQ gradients for the
// scale (round(x/s) - x/s inside, qmin - zp / qmax - zp outside) and the zero point
// (-s outside, 0 inside), summed per channel.
QK_MULTI(void, fq_grad_range,
         (const float* dy, const float* x, float* dx, const float* scale, const float* zp, int64_t nch,
          int64_t inner, float qmin, float qmax, int64_t s, int64_t e, double* ds, double* dz),
         (dy, x, dx, scale, zp, nch, inner, qmin, qmax, s, e, ds, dz)) {
  int64_t i = s;
  while (i < e) {
    const int64_t ch = (i / inner) % nch;
    const int64_t end = std::min(e, (i / inner + 1) * inner);
    const float sc = scale[ch], z = zp[ch], inv = 1.0f / sc;
    float accs = 0.f, accz = 0.f;
    for (int64_t j = i; j < end; j++) {
      const float g = dy[j];
      const float t = x[j] * inv;
      const float r = std::nearbyint(t);
      const float q = r + z;
      const bool below = q < qmin, above = q > qmax;
      dx[j] = (below || above) ? 0.f : g;
      const float dsv = below ? (qmin - z) : above ? (qmax - z) : (r - t);
      accs += g * dsv;
      accz += (below || above) ? -g * sc : 0.f;
    }
    ds[ch] += accs;
    dz[ch] += accz;
    i = end;
  }
}

void fake_quant_grad(const float* dy, const float* x, float* dx, int64_t n, const float* scale, const float* zp,
                     int64_t nch, int64_t inner, float qmin, float qmax, float* dscale, float* dzp) {
  const int T = ThreadPool::get().size();
  // Per-thread partial sums in double, chunked by a fixed size so the result does not
  // depend on scheduling.
  std::vector<double> ps((size_t)T * nch, 0.0), pz((size_t)T * nch, 0.0);
  ThreadPool::get().run_per_thread([&](int t) {
    int64_t s = n * t / T, e = n * (t + 1) / T;
    for (int64_t b = s; b < e; b += 4096)
      fq_grad_range(dy, x, dx, scale, zp, nch, inner, qmin, qmax, b, std::min(e, b + 4096), &ps[t * nch],
                    &pz[t * nch]);
  });
  for (int64_t c = 0; c < nch; c++) {
    double a = 0, z = 0;
    for (int t = 0; t < T; t++) {
      a += ps[t * nch + c];
      z += pz[t * nch + c];
    }
    if (dscale) dscale[c] = (float)a;
    if (dzp) dzp[c] = (float)z;
  }
}

QK_MULTI(void, minmax_range,
         (const float* x, int64_t nch, int64_t inner, int64_t s, int64_t e, float* mn, float* mx),
         (x, nch, inner, s, e, mn, mx)) {
  int64_t i = s;
  while (i < e) {
    const int64_t ch = (i / inner) % nch;
    const int64_t end = std::min(e, (i / inner + 1) * inner);
    float lo = mn[ch], hi = mx[ch];
    for (int64_t j = i; j < end; j++) {
      lo = x[j] < lo ? x[j] : lo;
      hi = x[j] > hi ? x[j] : hi;
    }
    mn[ch] = lo;
    mx[ch] = hi;
    i = end;
  }
}

void min_max(const float* x, int64_t n, int64_t nch, int64_t inner, float* mn, float* mx) {
  const int T = ThreadPool::get().size();
  std::vector<float> pmn((size_t)T * nch, INFINITY), pmx((size_t)T * nch, -INFINITY);
  ThreadPool::get().run_per_thread([&](int t) {
    int64_t s = n * t / T, e = n * (t + 1) / T;
    if (s < e) minmax_range(x, nch, inner, s, e, &pmn[t * nch], &pmx[t * nch]);
  });
  merge_min_max(pmn, pmx, T, nch, mn, mx);
}

}  // namespace qk

namespace qk {

// ---------------------------------------------------------------- transpose
// out = x permuted; 4-byte elements. Dims that stay adjacent are merged first, so NCHW <->
// NHWC becomes a batched 2-D transpose, done in cache-sized tiles.
void transpose(const uint32_t* x, uint32_t* out, const int64_t* shape, const int* perm, int rank) {
  // merge input dims i, i+1 when perm keeps them adjacent and in order
  std::vector<int64_t> dims;
  std::vector<int> p;
  {
    std::vector<int64_t> sh(shape, shape + rank);
    std::vector<int> pm(perm, perm + rank);
    // drop size-1 dims
    std::vector<int> keep;
    for (int i = 0; i < rank; i++)
      if (sh[i] != 1) keep.push_back(i);
    std::vector<int> newIndex(rank, -1);
    for (size_t j = 0; j < keep.size(); j++) newIndex[keep[j]] = (int)j;
    std::vector<int64_t> s2;
    for (int k : keep) s2.push_back(sh[k]);
    std::vector<int> p2;
    for (int i = 0; i < rank; i++)
      if (newIndex[pm[i]] >= 0) p2.push_back(newIndex[pm[i]]);
    // merge runs in the output order that are consecutive input dims
    std::vector<std::vector<int>> groups;
    for (int d : p2) {
      if (!groups.empty() && groups.back().back() + 1 == d) groups.back().push_back(d);
      else groups.push_back({d});
    }
    // groups are in output order; number them by input order
    std::vector<int> order(groups.size());
    for (size_t g = 0; g < groups.size(); g++) order[g] = (int)g;
    std::sort(order.begin(), order.end(), [&](int a, int b) { return groups[a][0] < groups[b][0]; });
    std::vector<int> rankOf(groups.size());
    for (size_t r = 0; r < order.size(); r++) rankOf[order[r]] = (int)r;
    dims.resize(groups.size());
    for (size_t g = 0; g < groups.size(); g++) {
      int64_t n = 1;
      for (int d : groups[g]) n *= s2[d];
      dims[rankOf[g]] = n;
    }
    p.resize(groups.size());
    for (size_t g = 0; g < groups.size(); g++) p[g] = rankOf[g];
  }
  const int r = (int)dims.size();
  int64_t total = 1;
  for (int64_t d : dims) total *= d;
  if (r <= 1) {
    std::memcpy(out, x, sizeof(uint32_t) * total);
    return;
  }
  if ((r == 2 && p[0] == 1) || (r == 3 && p[0] == 0 && p[1] == 2 && p[2] == 1)) {
    const int64_t B = r == 3 ? dims[0] : 1, R = dims[r - 2], C = dims[r - 1];
    constexpr int64_t T = 32;
    const int64_t tilesR = (R + T - 1) / T;
    parallel_range(B * tilesR, 4, [&](int64_t s, int64_t e) {
      for (int64_t q = s; q < e; q++) {
        const int64_t b = q / tilesR, r0 = (q % tilesR) * T, r1 = std::min(R, r0 + T);
        const uint32_t* xb = x + b * R * C;
        uint32_t* ob = out + b * R * C;
        for (int64_t c0 = 0; c0 < C; c0 += T) {
          const int64_t c1 = std::min(C, c0 + T);
          // Contiguous writes; the tile's rows (at most 32 x 128 B) stay in L1 for the reads.
          for (int64_t j = c0; j < c1; j++)
            for (int64_t i = r0; i < r1; i++) ob[j * R + i] = xb[i * C + j];
        }
      }
    });
    return;
  }
  // General: walk the output in order, gather from the input.
  std::vector<int64_t> istride(r), ostride(r);
  istride[r - 1] = 1;
  for (int i = r - 2; i >= 0; i--) istride[i] = istride[i + 1] * dims[i + 1];
  std::vector<int64_t> odims(r), gstride(r);
  for (int i = 0; i < r; i++) {
    odims[i] = dims[p[i]];
    gstride[i] = istride[p[i]];
  }
  const int64_t inner = odims[r - 1], ginner = gstride[r - 1];
  const int64_t rows = total / inner;
  parallel_range(rows, 64, [&](int64_t s, int64_t e) {
    std::vector<int64_t> idx(r, 0);
    int64_t rem = s;
    for (int i = r - 2; i >= 0; i--) {
      idx[i] = rem % odims[i];
      rem /= odims[i];
    }
    for (int64_t row = s; row < e; row++) {
      int64_t src = 0;
      for (int i = 0; i < r - 1; i++) src += idx[i] * gstride[i];
      uint32_t* o = out + row * inner;
      for (int64_t j = 0; j < inner; j++) o[j] = x[src + j * ginner];
      for (int i = r - 2; i >= 0; i--) {
        if (++idx[i] < odims[i]) break;
        idx[i] = 0;
      }
    }
  });
}

// ---------------------------------------------------------------- comparisons, logic, select
template <int OP>
static inline __attribute__((always_inline)) uint8_t cmp(float a, float b) {
  if (OP == 0) return a > b;
  if (OP == 1) return a >= b;
  if (OP == 2) return a < b;
  if (OP == 3) return a <= b;
  if (OP == 4) return a == b;
  return a != b;
}

template <int OP>
static inline __attribute__((always_inline)) void cmp_rows(const float* a, const int64_t* as, const float* b,
                                                           const int64_t* bs, uint8_t* o, int64_t q0, int64_t q1,
                                                           int64_t M, int64_t C) {
  int64_t r = q0 / M, m = q0 % M;
  for (int64_t q = q0; q < q1; q++, ++m == M ? (m = 0, ++r) : 0) {
    const float* ar = a + r * as[0] + m * as[1];
    const float* br = b + r * bs[0] + m * bs[1];
    uint8_t* orow = o + q * C;
    if (as[2] && bs[2])
      for (int64_t c = 0; c < C; c++) orow[c] = cmp<OP>(ar[c], br[c]);
    else if (as[2])
      for (int64_t c = 0; c < C; c++) orow[c] = cmp<OP>(ar[c], br[0]);
    else if (bs[2])
      for (int64_t c = 0; c < C; c++) orow[c] = cmp<OP>(ar[0], br[c]);
    else
      for (int64_t c = 0; c < C; c++) orow[c] = cmp<OP>(ar[0], br[0]);
  }
}

QK_MULTI(void, compare_rows,
         (int op, const float* a, const int64_t* as, const float* b, const int64_t* bs, uint8_t* o, int64_t q0,
          int64_t q1, int64_t M, int64_t C),
         (op, a, as, b, bs, o, q0, q1, M, C)) {
  switch (op) {
    case 0: cmp_rows<0>(a, as, b, bs, o, q0, q1, M, C); break;
    case 1: cmp_rows<1>(a, as, b, bs, o, q0, q1, M, C); break;
    case 2: cmp_rows<2>(a, as, b, bs, o, q0, q1, M, C); break;
    case 3: cmp_rows<3>(a, as, b, bs, o, q0, q1, M, C); break;
    case 4: cmp_rows<4>(a, as, b, bs, o, q0, q1, M, C); break;
    default: cmp_rows<5>(a, as, b, bs, o, q0, q1, M, C); break;
  }
}

void compare(int op, const float* a, const int64_t* as, const float* b, const int64_t* bs, uint8_t* out, int64_t R,
             int64_t M, int64_t C) {
  parallel_range(R * M, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, C)),
                 [&](int64_t s, int64_t e) { compare_rows(op, a, as, b, bs, out, s, e, M, C); });
}

QK_MULTI(void, logical_range, (int op, const uint8_t* a, const uint8_t* b, uint8_t* o, int64_t s, int64_t e),
         (op, a, b, o, s, e)) {
  if (op == 0)
    for (int64_t i = s; i < e; i++) o[i] = a[i] & b[i];
  else if (op == 1)
    for (int64_t i = s; i < e; i++) o[i] = a[i] | b[i];
  else
    for (int64_t i = s; i < e; i++) o[i] = !a[i];
}

void logical(int op, const uint8_t* a, const uint8_t* b, uint8_t* out, int64_t n) {
  parallel_range(n, kGrain, [&](int64_t s, int64_t e) { logical_range(op, a, b, out, s, e); });
}

QK_MULTI(void, select_range, (const uint8_t* c, const float* t, const float* e_, float* o, int64_t s, int64_t e),
         (c, t, e_, o, s, e)) {
  for (int64_t i = s; i < e; i++) o[i] = c[i] ? t[i] : e_[i];
}

void select(const uint8_t* cond, const float* t, const float* e, float* out, int64_t n) {
  parallel_range(n, kGrain, [&](int64_t s, int64_t en) { select_range(cond, t, e, out, s, en); });
}

QK_MULTI(void, clip_range, (const float* x, float* y, int64_t s, int64_t e, float lo, float hi), (x, y, s, e, lo, hi)) {
  for (int64_t i = s; i < e; i++) {
    const float v = x[i];
    y[i] = v < lo ? lo : (v > hi ? hi : v);
  }
}

void clip(const float* x, float* y, int64_t n, float lo, float hi) {
  parallel_range(n, kGrain, [&](int64_t s, int64_t e) { clip_range(x, y, s, e, lo, hi); });
}

}  // namespace qk

namespace qk {

// ---------------------------------------------------------------- batch norm, training mode
// Per-channel work on x[R, C] (NHWC: R = N*H*W) runs over the flat array in blocks of L =
// lcm(C, 16) elements (C itself when C >= 64), with each per-channel parameter repeated into
// an L-long pattern: no per-element channel index, and the loops vectorize for C = 3 or 6.
// Reductions go by fixed chunks of rows (a multiple of L / C), summed in double (float within a
// few blocks) and merged in chunk order: results do not depend on the thread count.
static constexpr int64_t kBnChunkRows = 1024;

static int64_t bn_block(int64_t C) {
  if (C >= 64) return C;
  int64_t g = 16, c = C;
  while (c) std::swap(g %= c, c);  // gcd(16, C)
  return C * 16 / g;
}

template <class T>
static std::vector<T> bn_pattern(const std::vector<T>& v, int64_t L) {
  std::vector<T> p((size_t)L);
  for (int64_t j = 0; j < L; j++) p[j] = v[j % v.size()];
  return p;
}

// Calls f(r0, r1) over the fixed row chunks in parallel, then merges each chunk's L-long partial
// sums (nsum arrays, chunk order) into per-channel totals out[s][c].
template <class F>
static void bn_chunk_sums(int64_t R, int64_t C, int64_t L, int nsum, std::vector<double>* out, F&& f) {
  const int64_t chunks = (R + kBnChunkRows - 1) / kBnChunkRows;
  std::vector<double> part((size_t)(chunks * nsum * L), 0.0);
  ThreadPool::get().parallel_for(chunks, [&](int64_t k) {
    f(k * kBnChunkRows, std::min(R, (k + 1) * kBnChunkRows), &part[k * nsum * L]);
  });
  for (int s = 0; s < nsum; s++) out[s].assign((size_t)C, 0.0);
  for (int64_t k = 0; k < chunks; k++)
    for (int s = 0; s < nsum; s++)
      for (int64_t j = 0; j < L; j++) out[s][j % C] += part[(k * nsum + s) * L + j];
}

// Runs f(e0, e1) over element ranges of whole row blocks (L elements; the last may be short).
template <class F>
static void bn_rows_parallel(int64_t R, int64_t C, int64_t L, F&& f) {
  const int64_t n = R * C, blocks = (n + L - 1) / L;
  parallel_range(blocks, std::max<int64_t>(1, kGrain / L),
                 [&](int64_t s, int64_t e) { f(s * L, std::min(n, e * L)); });
}

// Float sums over up to kBnFloatBlocks blocks of L, then added to the double totals: the float
// loops vectorize twice as wide and keep the chunk's sums exact to ~1e-7.
static constexpr int64_t kBnFloatBlocks = 32;

// s1[j] += x - shift, s2[j] += (x - shift)^2 over elements [e0, e1) (e0 a multiple of L); f1, f2:
// L floats of scratch.
QK_MULTI(void, bn_moment_sums,
         (const float* __restrict x, int64_t e0, int64_t e1, int64_t L, const float* __restrict shift,
          float* __restrict f1, float* __restrict f2, double* __restrict s1, double* __restrict s2),
         (x, e0, e1, L, shift, f1, f2, s1, s2)) {
  for (int64_t i0 = e0; i0 < e1; i0 += kBnFloatBlocks * L) {
    for (int64_t j = 0; j < L; j++) f1[j] = f2[j] = 0.f;
    for (int64_t i = i0; i < std::min(e1, i0 + kBnFloatBlocks * L); i += L) {
      const int64_t m = std::min(L, e1 - i);
      const float* xi = x + i;
      for (int64_t j = 0; j < m; j++) {
        const float d = xi[j] - shift[j];
        f1[j] += d;
        f2[j] += d * d;
      }
    }
    for (int64_t j = 0; j < L; j++) {
      s1[j] += f1[j];
      s2[j] += f2[j];
    }
  }
}

// y = x * mul + add over elements [e0, e1) (patterns of L); relu: then un<kRelu> (the Relu kernel's bits).
QK_MULTI(void, affine_range,
         (const float* __restrict x, const float* __restrict mul, const float* __restrict add, float* __restrict y,
          int64_t e0, int64_t e1, int64_t L, bool relu),
         (x, mul, add, y, e0, e1, L, relu)) {
  for (int64_t i = e0; i < e1; i += L) {
    const int64_t m = std::min(L, e1 - i);
    if (relu)
      for (int64_t j = 0; j < m; j++) y[i + j] = un<kRelu>(x[i + j] * mul[j] + add[j], 0.f);
    else
      for (int64_t j = 0; j < m; j++) y[i + j] = x[i + j] * mul[j] + add[j];
  }
}

void channel_affine(const float* x, const float* mul, const float* add, float* y, int64_t R, int64_t C, bool relu) {
  const int64_t L = bn_block(C);
  const std::vector<float> mp = bn_pattern(std::vector<float>(mul, mul + C), L),
                           ap = bn_pattern(std::vector<float>(add, add + C), L);
  bn_rows_parallel(R, C, L, [&](int64_t e0, int64_t e1) { affine_range(x, mp.data(), ap.data(), y, e0, e1, L, relu); });
}

void batch_norm_train(const float* x, int64_t R, int64_t C, const float* scale, const float* offset, float eps,
                      float* y, float* mean, float* var, float* invstd) {
  // One pass: sums of (x - shift) and its square, shifted by the first row so that a mean far
  // from zero does not cancel the variance away.
  const int64_t L = bn_block(C);
  const std::vector<float> first(x, x + C), shift = bn_pattern(first, L);
  std::vector<double> sums[2];
  bn_chunk_sums(R, C, L, 2, sums, [&](int64_t r0, int64_t r1, double* acc) {
    std::vector<float> f((size_t)(2 * L));
    bn_moment_sums(x, r0 * C, r1 * C, L, shift.data(), f.data(), f.data() + L, acc, acc + L);
  });
  std::vector<float> mul(C), add(C);
  for (int64_t c = 0; c < C; c++) {
    const double d = sums[0][c] / (double)R, v = std::max(0.0, sums[1][c] / (double)R - d * d);
    const float is = (float)(1.0 / std::sqrt(v + (double)eps));
    mean[c] = (float)((double)first[c] + d);
    var[c] = (float)v;
    invstd[c] = is;
    mul[c] = is * (scale ? scale[c] : 1.f);
    add[c] = (offset ? offset[c] : 0.f) - mean[c] * mul[c];
  }
  if (y) channel_affine(x, mul.data(), add.data(), y, R, C, false);
}

// ry (a fused Relu; ry = relu(bn), else null): the gradient reaching the batch norm is tfjs's Relu gradient
// g = dy * step(ry), step(relu(s)) being step(s) for every s (-0 and NaN included). The product is exact (step is
// 0, 1 or NaN), so an add contracted with it rounds as the unfused path's separate multiply and add.
// s1[j] += g, s2[j] += g * (x - mean) over elements [e0, e1) (float partials as above).
QK_MULTI(void, bn_grad_sums,
         (const float* __restrict dy, const float* __restrict ry, const float* __restrict x,
          const float* __restrict mean, int64_t e0, int64_t e1, int64_t L, float* __restrict f1, float* __restrict f2,
          double* __restrict s1, double* __restrict s2),
         (dy, ry, x, mean, e0, e1, L, f1, f2, s1, s2)) {
  for (int64_t i0 = e0; i0 < e1; i0 += kBnFloatBlocks * L) {
    for (int64_t j = 0; j < L; j++) f1[j] = f2[j] = 0.f;
    for (int64_t i = i0; i < std::min(e1, i0 + kBnFloatBlocks * L); i += L) {
      const int64_t m = std::min(L, e1 - i);
      if (ry)
        for (int64_t j = 0; j < m; j++) {
          const float g = dy[i + j] * un<kStep>(ry[i + j], 0.f);
          f1[j] += g;
          f2[j] += g * (x[i + j] - mean[j]);
        }
      else
        for (int64_t j = 0; j < m; j++) {
          f1[j] += dy[i + j];
          f2[j] += dy[i + j] * (x[i + j] - mean[j]);
        }
    }
    for (int64_t j = 0; j < L; j++) {
      s1[j] += f1[j];
      s2[j] += f2[j];
    }
  }
}

// dx = kg * g + kx * x + k0 over elements [e0, e1), g as in bn_grad_sums.
QK_MULTI(void, bn_grad_dx,
         (const float* __restrict dy, const float* __restrict ry, const float* __restrict x,
          const float* __restrict kg, const float* __restrict kx, const float* __restrict k0, float* __restrict dx,
          int64_t e0, int64_t e1, int64_t L),
         (dy, ry, x, kg, kx, k0, dx, e0, e1, L)) {
  for (int64_t i = e0; i < e1; i += L) {
    const int64_t m = std::min(L, e1 - i);
    if (ry)
      for (int64_t j = 0; j < m; j++) dx[i + j] = kg[j] * (dy[i + j] * un<kStep>(ry[i + j], 0.f)) + kx[j] * x[i + j] + k0[j];
    else
      for (int64_t j = 0; j < m; j++) dx[i + j] = kg[j] * dy[i + j] + kx[j] * x[i + j] + k0[j];
  }
}

void batch_norm_train_grad(const float* dy, const float* ry, const float* x, int64_t R, int64_t C, const float* mean,
                           const float* invstd, const float* scale, float* dx, float* dscale, float* doffset) {
  const int64_t L = bn_block(C);
  const std::vector<float> mp = bn_pattern(std::vector<float>(mean, mean + C), L);
  std::vector<double> sums[2];
  bn_chunk_sums(R, C, L, 2, sums, [&](int64_t r0, int64_t r1, double* acc) {
    std::vector<float> f((size_t)(2 * L));
    bn_grad_sums(dy, ry, x, mp.data(), r0 * C, r1 * C, L, f.data(), f.data() + L, acc, acc + L);
  });
  // dx = s*is * (dy - mean(dy) - xhat * mean(dy * xhat)), xhat = (x - mean) * is, folded into
  // kg * dy + kx * x + k0 per channel.
  std::vector<float> kg(C), kx(C), k0(C);
  for (int64_t c = 0; c < C; c++) {
    const double is = invstd[c], sdy = sums[0][c], sdyx = sums[1][c] * is;  // sum(dy), sum(dy * xhat)
    if (doffset) doffset[c] = (float)sdy;
    if (dscale) dscale[c] = (float)sdyx;
    const double k1 = (scale ? scale[c] : 1.f) * is, k3 = k1 * sdyx / (double)R * is;
    kg[c] = (float)k1;
    kx[c] = (float)-k3;
    k0[c] = (float)(-k1 * sdy / (double)R + k3 * mean[c]);
  }
  const std::vector<float> pg = bn_pattern(kg, L), px = bn_pattern(kx, L), p0 = bn_pattern(k0, L);
  bn_rows_parallel(R, C, L, [&](int64_t e0, int64_t e1) {
    bn_grad_dx(dy, ry, x, pg.data(), px.data(), p0.data(), dx, e0, e1, L);
  });
}

}  // namespace qk
