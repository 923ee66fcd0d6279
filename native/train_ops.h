// Training-step kernels (train_ops.cc) that replace chains of tfjs ops. Each repeats, element by
// element and in the same order, the float32 operations of its tfjs-op twin in
// src/backend/train_kernels.ts; only sums over many elements may add in another order.
// Scalars arrive already rounded to float32 by the caller.
#pragma once
#include <cstdint>

namespace qk {

// SGD (torch.optim.SGD): d = g + wd*p (wd != 0); buf' = mu*buf + d and d = nesterov ? d + mu*buf' : buf'
// (mu != 0; buf/buf_out unused otherwise); p' = p - lr*d.
void sgd_step(const float* p, const float* g, const float* buf, float* p_out, float* buf_out, int64_t n, float lr,
              float wd, float mu, bool nesterov);

// Adam / AdamW (torch.optim.Adam, AdamW): w = decay*p (AdamW, decay = 1 - lr*wd; pass 1 otherwise);
// g += wd*p (Adam's L2, wd != 0); m' = m + (g - m)*(1 - b1); v' = v*b2 + g*g*(1 - b2);
// p' = w - m' / (sqrt(v') / bc2_sqrt + eps) * step_size.
struct AdamScalars {
  float decay, wd, one_minus_b1, b2, one_minus_b2, bc2_sqrt, eps, step_size;
};
void adam_step(const float* p, const float* g, const float* m, const float* v, float* p_out, float* m_out,
               float* v_out, int64_t n, const AdamScalars& s);

// y[r, c] = x[r, c] / s[c] over rows r of x[R, C] (true division, as tfjs's RealDiv).
void channel_div(const float* x, const float* s, float* y, int64_t R, int64_t C);
// Its backward: dx[r, c] = dy[r, c] / s[c]; ds[c] = -(sum_r dy[r, c]*x[r, c]) / (s[c]*s[c]). The sum runs over
// fixed blocks of rows added in order, so it does not depend on the thread count.
void channel_div_grad(const float* dy, const float* x, const float* s, float* dx, float* ds, int64_t R, int64_t C);

// Fake quantization of relu(x) (ops.cc's Relu, then ops.cc's fake_quant): y = (clamp(nearbyint(r * (1/scale)) + zp,
// qmin, qmax) - zp) * scale, r = relu(x); channel of element i: (i / inner) % nch.
void relu_fake_quant(const float* x, float* y, int64_t n, const float* scale, const float* zp, int64_t nch,
                     int64_t inner, float qmin, float qmax);
// Straight-through backward of fake quantization (ops.cc fake_quant_grad without the scale and zero-point sums):
// dx = dy where nearbyint(x * (1/scale)) + zp lies in [qmin, qmax], else 0. relu: the backward of the fake
// quantization of relu(x), the mask taken on relu(x) and the result times step(x) as tfjs's Relu gradient.
void fake_quant_ste_grad(const float* dy, const float* x, float* dx, int64_t n, const float* scale, const float* zp,
                         int64_t nch, int64_t inner, float qmin, float qmax, bool relu);

// ReLU's backward as tfjs's Relu gradient dy * step(x): dy where x > 0, NaN where x is NaN, dy*0 elsewhere.
void relu_grad(const float* dy, const float* x, float* dx, int64_t n);

// y = relu(a + b) for a, b of one shape: tfjs's Add then ops.cc's Relu, in one pass.
void add_relu(const float* a, const float* b, float* y, int64_t n);

// ConvBn's folded weight: y[o, k] = w[o, k] * s[o] over w[O, K] (tfjs's Multiply by s reshaped to [O, 1, ...]).
void fold_weight(const float* w, const float* s, float* y, int64_t O, int64_t K);
// Its backward: dw[o, k] = dy[o, k] * s[o]; ds[o] = sum_k dy[o, k] * w[o, k], each product rounded, added as
// ops.cc's reduce adds a contiguous row (16 striped partial sums, then the tail, then the partials in order), so
// ds has the bits of tf.sum(tf.mul(dy, w), [1, 2, 3]).
void fold_weight_grad(const float* dy, const float* w, const float* s, float* dw, float* ds, int64_t O, int64_t K);

}  // namespace qk
