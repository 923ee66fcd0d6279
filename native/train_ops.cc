// Training-step kernels (train_ops.h). Every product and sum rounds on its own, as tfjs's ops do:
// no contraction of a*b + c into one FMA, in the portable and the AVX2/AVX-512 builds alike.
#pragma GCC optimize("fp-contract=off")
#include "train_ops.h"

#include <algorithm>
#include <cmath>
#include <vector>

#include "simd.h"
#include "threadpool.h"

namespace qk {

static constexpr int64_t kGrain = 1 << 15;

void sgd_step(const float* p, const float* g, const float* buf, float* p_out, float* buf_out, int64_t n, float lr,
              float wd, float mu, bool nesterov) {
  parallel_range(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      float d = g[i];
      if (wd != 0.f) d = d + p[i] * wd;
      if (mu != 0.f) {
        const float nb = buf[i] * mu + d;
        buf_out[i] = nb;
        d = nesterov ? d + nb * mu : nb;
      }
      p_out[i] = p[i] - d * lr;
    }
  });
}

void adam_step(const float* p, const float* g, const float* m, const float* v, float* p_out, float* m_out,
               float* v_out, int64_t n, const AdamScalars& s) {
  parallel_range(n, kGrain, [&](int64_t i0, int64_t i1) {
    for (int64_t i = i0; i < i1; i++) {
      float gi = g[i];
      if (s.wd != 0.f) gi = gi + p[i] * s.wd;
      const float w = s.decay != 1.f ? p[i] * s.decay : p[i];
      const float m1 = m[i] + (gi - m[i]) * s.one_minus_b1;
      const float v1 = v[i] * s.b2 + gi * gi * s.one_minus_b2;
      m_out[i] = m1;
      v_out[i] = v1;
      const float denom = std::sqrt(v1) / s.bc2_sqrt + s.eps;
      p_out[i] = w - m1 / denom * s.step_size;
    }
  });
}

// Channel-wise ops on x[R, C] walk the flat array in tiles of 16 rows: 16*C floats, a whole number of vectors for any C,
// against s repeated 16 times (ts), so a small C (LeNet's 6) vectorizes as well as a large one.
static constexpr int64_t kTileRows = 16;

static std::vector<float> tiled(const float* s, int64_t C) {
  std::vector<float> t(kTileRows * C);
  for (int64_t j = 0; j < kTileRows * C; j++) t[j] = s[j % C];
  return t;
}

// n elements from a row boundary.
QK_MULTI(void, channel_div_span, (const float* x, const float* ts, float* y, int64_t n, int64_t L), (x, ts, y, n, L)) {
  for (int64_t i = 0; i < n; i += L) {
    const int64_t m = std::min(L, n - i);
    for (int64_t j = 0; j < m; j++) y[i + j] = x[i + j] / ts[j];
  }
}

void channel_div(const float* x, const float* s, float* y, int64_t R, int64_t C) {
  const std::vector<float> ts = tiled(s, C);
  parallel_range(R, std::max<int64_t>(1, kGrain / C), [&](int64_t r0, int64_t r1) {
    channel_div_span(x + r0 * C, ts.data(), y + r0 * C, (r1 - r0) * C, kTileRows * C);
  });
}

// n elements from a row boundary: dx, and the sums of dy*x per tile position into acc[L] (zeroed here).
QK_MULTI(void, channel_div_grad_span,
         (const float* dy, const float* x, const float* ts, float* dx, float* acc, int64_t n, int64_t L),
         (dy, x, ts, dx, acc, n, L)) {
  for (int64_t j = 0; j < L; j++) acc[j] = 0.f;
  for (int64_t i = 0; i < n; i += L) {
    const int64_t m = std::min(L, n - i);
    for (int64_t j = 0; j < m; j++) {
      dx[i + j] = dy[i + j] / ts[j];
      const float p = dy[i + j] * x[i + j];
      acc[j] += p;
    }
  }
}

void channel_div_grad(const float* dy, const float* x, const float* s, float* dx, float* ds, int64_t R, int64_t C) {
  constexpr int64_t kBlock = 256;  // rows per partial sum
  const int64_t L = kTileRows * C, nb = (R + kBlock - 1) / kBlock;
  const std::vector<float> ts = tiled(s, C);
  std::vector<float> part(nb * L);
  parallel_range(nb, std::max<int64_t>(1, kGrain / (kBlock * C)), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++) {
      const int64_t r0 = b * kBlock, r1 = std::min(R, r0 + kBlock);
      channel_div_grad_span(dy + r0 * C, x + r0 * C, ts.data(), dx + r0 * C, &part[b * L], (r1 - r0) * C, L);
    }
  });
  for (int64_t c = 0; c < C; c++) {
    float sum = 0.f;
    for (int64_t b = 0; b < nb; b++)
      for (int64_t t = 0; t < kTileRows; t++) sum += part[b * L + t * C + c];
    ds[c] = -(sum / (s[c] * s[c]));
  }
}

static inline float relu(float x) { return x < 0.f ? 0.f : x; }  // NaN and -0 pass, as ops.cc's Relu
static inline float step(float x) { return x > 0.f ? 1.f : (x == x ? 0.f : x); }  // tfjs's Step (alpha 0)

QK_MULTI(void, relu_fq_range,
         (const float* x, float* y, const float* scale, const float* zp, int64_t nch, int64_t inner, float qmin,
          float qmax, int64_t s, int64_t e),
         (x, y, scale, zp, nch, inner, qmin, qmax, s, e)) {
  int64_t i = s;
  while (i < e) {
    const int64_t ch = (i / inner) % nch;
    const int64_t end = std::min(e, (i / inner + 1) * inner);
    const float sc = scale[ch], z = zp[ch], inv = 1.0f / sc;
    for (int64_t j = i; j < end; j++) {
      float q = std::nearbyint(relu(x[j]) * inv) + z;
      q = q < qmin ? qmin : (q > qmax ? qmax : q);
      y[j] = (q - z) * sc;
    }
    i = end;
  }
}

void relu_fake_quant(const float* x, float* y, int64_t n, const float* scale, const float* zp, int64_t nch,
                     int64_t inner, float qmin, float qmax) {
  parallel_range(n, kGrain, [&](int64_t s, int64_t e) { relu_fq_range(x, y, scale, zp, nch, inner, qmin, qmax, s, e); });
}

QK_MULTI(void, fq_ste_grad_range,
         (const float* dy, const float* x, float* dx, const float* scale, const float* zp, int64_t nch, int64_t inner,
          float qmin, float qmax, bool rl, int64_t s, int64_t e),
         (dy, x, dx, scale, zp, nch, inner, qmin, qmax, rl, s, e)) {
  int64_t i = s;
  while (i < e) {
    const int64_t ch = (i / inner) % nch;
    const int64_t end = std::min(e, (i / inner + 1) * inner);
    const float inv = 1.0f / scale[ch], z = zp[ch];
    if (rl) {
      for (int64_t j = i; j < end; j++) {
        const float q = std::nearbyint(relu(x[j]) * inv) + z;
        const float d = (q < qmin || q > qmax) ? 0.f : dy[j];
        dx[j] = d * step(x[j]);
      }
    } else {
      for (int64_t j = i; j < end; j++) {
        const float q = std::nearbyint(x[j] * inv) + z;
        dx[j] = (q < qmin || q > qmax) ? 0.f : dy[j];
      }
    }
    i = end;
  }
}

void fake_quant_ste_grad(const float* dy, const float* x, float* dx, int64_t n, const float* scale, const float* zp,
                         int64_t nch, int64_t inner, float qmin, float qmax, bool relu) {
  parallel_range(n, kGrain, [&](int64_t s, int64_t e) {
    fq_ste_grad_range(dy, x, dx, scale, zp, nch, inner, qmin, qmax, relu, s, e);
  });
}

QK_MULTI(void, relu_grad_range, (const float* dy, const float* x, float* dx, int64_t i0, int64_t i1),
         (dy, x, dx, i0, i1)) {
  for (int64_t i = i0; i < i1; i++) {
    dx[i] = dy[i] * step(x[i]);
  }
}

void relu_grad(const float* dy, const float* x, float* dx, int64_t n) {
  parallel_range(n, kGrain, [&](int64_t i0, int64_t i1) { relu_grad_range(dy, x, dx, i0, i1); });
}

QK_MULTI(void, add_relu_range, (const float* a, const float* b, float* y, int64_t i0, int64_t i1), (a, b, y, i0, i1)) {
  for (int64_t i = i0; i < i1; i++) y[i] = relu(a[i] + b[i]);
}

void add_relu(const float* a, const float* b, float* y, int64_t n) {
  parallel_range(n, kGrain, [&](int64_t i0, int64_t i1) { add_relu_range(a, b, y, i0, i1); });
}

void fold_weight(const float* w, const float* s, float* y, int64_t O, int64_t K) {
  parallel_range(O, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, K)), [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; o++)
      for (int64_t k = 0; k < K; k++) y[o * K + k] = w[o * K + k] * s[o];
  });
}

void fold_weight_grad(const float* dy, const float* w, const float* s, float* dw, float* ds, int64_t O, int64_t K) {
  parallel_range(O, std::max<int64_t>(1, kGrain / std::max<int64_t>(1, K)), [&](int64_t o0, int64_t o1) {
    for (int64_t o = o0; o < o1; o++) {
      const float *g = dy + o * K, *x = w + o * K;
      float acc[16] = {};
      int64_t k = 0;
      for (; k + 16 <= K; k += 16)
        for (int j = 0; j < 16; j++) acc[j] += g[k + j] * x[k + j];
      float sum = 0.f;
      for (; k < K; k++) sum += g[k] * x[k];
      for (int j = 0; j < 16; j++) sum += acc[j];
      ds[o] = sum;
      for (k = 0; k < K; k++) dw[o * K + k] = g[k] * s[o];
    }
  });
}

}  // namespace qk
