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
  for (int64_t q = q0; q < q1; q++) {
    const int64_t r = q / M, m = q % M;
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
    QK_UN_CASE(kSoftplus)
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
  if (outer == 1 && inner > 1) {
    // Reducing the leading axis (e.g. batch-norm statistics over N*H*W): split the columns.
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
QK_MULTI(void, bn_rows,
         (const float* x, const float* mul, const float* add, float* y, int64_t r0, int64_t r1, int64_t C),
         (x, mul, add, y, r0, r1, C)) {
  for (int64_t r = r0; r < r1; r++) {
    const float* xr = x + r * C;
    float* yr = y + r * C;
    for (int64_t c = 0; c < C; c++) yr[c] = xr[c] * mul[c] + add[c];
  }
}

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
  const int64_t R = n / C;
  parallel_range(R, std::max<int64_t>(1, kGrain / C),
                 [&](int64_t s, int64_t e) { bn_rows(x, mul.data(), add.data(), y, s, e, C); });
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
// q = clamp(round_half_even(x / s) + zp, qmin, qmax); y = (q - zp) * s.
// Division (not x * (1/s)) so results match a tfjs-op reference bit for bit.
QK_MULTI(void, fq_range,
         (const float* x, float* y, const float* scale, const float* zp, int64_t nch, int64_t inner, float qmin,
          float qmax, int64_t s, int64_t e, float* mn, float* mx),
         (x, y, scale, zp, nch, inner, qmin, qmax, s, e, mn, mx)) {
  int64_t i = s;
  while (i < e) {
    const int64_t ch = (i / inner) % nch;
    const int64_t end = std::min(e, (i / inner + 1) * inner);
    const float sc = scale[ch], z = zp[ch];
    float lo = mn ? mn[ch] : 0.f, hi = mx ? mx[ch] : 0.f;
    for (int64_t j = i; j < end; j++) {
      const float v = x[j];
      float q = std::nearbyint(v / sc) + z;
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
    const float sc = scale[ch], z = zp[ch];
    float accs = 0.f, accz = 0.f;
    for (int64_t j = i; j < end; j++) {
      const float g = dy[j];
      const float t = x[j] / sc;
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

}  // namespace qk
