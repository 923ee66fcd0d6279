// Optimizer update kernels (train_ops.h). Plain scalar float code: built without -mfma, so the
// compiler cannot contract a*b + c into one rounding, and every step rounds as tfjs's ops do.
#include "train_ops.h"

#include <cmath>

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

}  // namespace qk
