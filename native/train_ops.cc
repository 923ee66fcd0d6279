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

QK_MULTI(void, channel_div_rows, (const float* x, const float* s, float* y, int64_t r0, int64_t r1, int64_t C),
         (x, s, y, r0, r1, C)) {
  for (int64_t r = r0; r < r1; r++)
    for (int64_t c = 0; c < C; c++) y[r * C + c] = x[r * C + c] / s[c];
}

void channel_div(const float* x, const float* s, float* y, int64_t R, int64_t C) {
  parallel_range(R, std::max<int64_t>(1, kGrain / std::max<int64_t>(C, 1)),
                 [&](int64_t r0, int64_t r1) { channel_div_rows(x, s, y, r0, r1, C); });
}

// Rows [r0, r1): dx, and the per-channel sum of dy*x into acc (zeroed here).
QK_MULTI(void, channel_div_grad_rows,
         (const float* dy, const float* x, const float* s, float* dx, float* acc, int64_t r0, int64_t r1, int64_t C),
         (dy, x, s, dx, acc, r0, r1, C)) {
  for (int64_t c = 0; c < C; c++) acc[c] = 0.f;
  for (int64_t r = r0; r < r1; r++)
    for (int64_t c = 0; c < C; c++) {
      const int64_t i = r * C + c;
      dx[i] = dy[i] / s[c];
      const float p = dy[i] * x[i];
      acc[c] += p;
    }
}

void channel_div_grad(const float* dy, const float* x, const float* s, float* dx, float* ds, int64_t R, int64_t C) {
  constexpr int64_t kBlock = 256;  // rows per partial sum
  const int64_t nb = (R + kBlock - 1) / kBlock;
  std::vector<float> part(nb * C);
  parallel_range(nb, std::max<int64_t>(1, kGrain / std::max<int64_t>(kBlock * C, 1)), [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; b++)
      channel_div_grad_rows(dy, x, s, dx, &part[b * C], b * kBlock, std::min(R, (b + 1) * kBlock), C);
  });
  for (int64_t c = 0; c < C; c++) {
    float sum = 0.f;
    for (int64_t b = 0; b < nb; b++) sum += part[b * C + c];
    ds[c] = -(sum / (s[c] * s[c]));
  }
}

QK_MULTI(void, fq_ste_grad_range,
         (const float* dy, const float* x, float* dx, const float* scale, const float* zp, int64_t nch, int64_t inner,
          float qmin, float qmax, int64_t s, int64_t e),
         (dy, x, dx, scale, zp, nch, inner, qmin, qmax, s, e)) {
  int64_t i = s;
  while (i < e) {
    const int64_t ch = (i / inner) % nch;
    const int64_t end = std::min(e, (i / inner + 1) * inner);
    const float inv = 1.0f / scale[ch], z = zp[ch];
    for (int64_t j = i; j < end; j++) {
      const float q = std::nearbyint(x[j] * inv) + z;
      dx[j] = (q < qmin || q > qmax) ? 0.f : dy[j];
    }
    i = end;
  }
}

void fake_quant_ste_grad(const float* dy, const float* x, float* dx, int64_t n, const float* scale, const float* zp,
                         int64_t nch, int64_t inner, float qmin, float qmax) {
  parallel_range(n, kGrain, [&](int64_t s, int64_t e) { fq_ste_grad_range(dy, x, dx, scale, zp, nch, inner, qmin, qmax, s, e); });
}

QK_MULTI(void, relu_grad_range, (const float* dy, const float* x, float* dx, int64_t i0, int64_t i1),
         (dy, x, dx, i0, i1)) {
  for (int64_t i = i0; i < i1; i++) {
    const float step = x[i] > 0.f ? 1.f : (x[i] != x[i] ? x[i] : 0.f);
    dx[i] = dy[i] * step;
  }
}

void relu_grad(const float* dy, const float* x, float* dx, int64_t n) {
  parallel_range(n, kGrain, [&](int64_t i0, int64_t i1) { relu_grad_range(dy, x, dx, i0, i1); });
}

}  // namespace qk
