// Compute kernels behind the N-API layer (addon.cc). All tensors are float32, NHWC,
// row-major, and all functions are multithreaded through the pool.
#pragma once
#include <cstdint>

namespace qk {

struct Conv2DDims {
  int64_t B, H, W, CI, OH, OW, CO, KH, KW;
  int64_t sh, sw, dh, dw, pt, pl;  // pads: top/left, may exceed bottom/right (asymmetric)
};

void conv2d_forward(const Conv2DDims& d, const float* x, const float* w, float* y);
void conv2d_backprop_input(const Conv2DDims& d, const float* dy, const float* w, float* dx);
void conv2d_backprop_filter(const Conv2DDims& d, const float* x, const float* dy, float* dw);

// Depthwise: filter [KH, KW, CI, M], CO = CI * M.
void depthwise_forward(const Conv2DDims& d, const float* x, const float* w, float* y);
void depthwise_backprop_input(const Conv2DDims& d, const float* dy, const float* w, float* dx);
void depthwise_backprop_filter(const Conv2DDims& d, const float* x, const float* dy, float* dw);

// Pools: KH, KW = filter, CO = CI.
void max_pool(const Conv2DDims& d, const float* x, float* y);
void max_pool_grad(const Conv2DDims& d, const float* dy, const float* x, float* dx);
void avg_pool(const Conv2DDims& d, const float* x, float* y);
void avg_pool_grad(const Conv2DDims& d, const float* dy, float* dx);

// out[R, M, C] = a op b with element strides as/bs (3 each, last one 0 or 1; 0 = broadcast).
enum BinOp { kAdd, kSub, kMul, kDiv, kMax, kMin, kSqDiff, kPow };
void binary(int op, const float* a, const int64_t* as, const float* b, const int64_t* bs, float* out, int64_t R,
            int64_t M, int64_t C);

enum UnOp { kRelu, kRelu6, kStep, kNeg, kExp, kLog, kSqrt, kRsqrt, kSquare, kAbs, kSigmoid, kTanh, kElu,
            kLeakyRelu, kReciprocal, kLog1p, kSoftplus, kRound, kFloor, kCeil, kIdentity };
void unary(int op, const float* x, float* y, int64_t n, float alpha);

// out[o, i] = reduce_m x[o, m, i]
enum RedOp { kSum, kMaxR, kMinR, kMean };
void reduce(int op, const float* x, float* out, int64_t outer, int64_t mid, int64_t inner);

// y = (x - mean) * scale / sqrt(var + eps) + offset, params of size C (or 1) on the last axis.
void batch_norm(const float* x, const float* mean, int64_t nmean, const float* var, int64_t nvar,
                const float* offset, int64_t noff, const float* scale, int64_t nscale, float eps, float* y,
                int64_t n, int64_t C);

// Softmax over the last axis of [R, C].
void softmax(const float* x, float* y, int64_t R, int64_t C);

// Bias add + activation in place on C[M, N] (bias may be null). act: 0 none, 1 relu, 2 relu6,
// 3 elu, 4 leakyrelu(alpha), 5 sigmoid, 6 prelu (prelu weights of size N or 1).
void bias_act(float* c, int64_t M, int64_t N, const float* bias, int act, float alpha, const float* prelu,
              int64_t nprelu);

// Fake quantization. Channel of element i: (i / inner) % nch (nch = 1: per tensor).
void fake_quant(const float* x, float* y, int64_t n, const float* scale, const float* zp, int64_t nch,
                int64_t inner, float qmin, float qmax, float* mn, float* mx);
void fake_quant_grad(const float* dy, const float* x, float* dx, int64_t n, const float* scale, const float* zp,
                     int64_t nch, int64_t inner, float qmin, float qmax, float* dscale, float* dzp);
void min_max(const float* x, int64_t n, int64_t nch, int64_t inner, float* mn, float* mx);

// Permutes a tensor of 4-byte elements.
void transpose(const uint32_t* x, uint32_t* out, const int64_t* shape, const int* perm, int rank);
// Comparisons (0 >, 1 >=, 2 <, 3 <=, 4 ==, 5 !=) with binary()'s broadcasting, bool (uint8) out.
void compare(int op, const float* a, const int64_t* as, const float* b, const int64_t* bs, uint8_t* out, int64_t R,
             int64_t M, int64_t C);
// 0 and, 1 or, 2 not (b unused) on bool tensors of equal size.
void logical(int op, const uint8_t* a, const uint8_t* b, uint8_t* out, int64_t n);
void select(const uint8_t* cond, const float* t, const float* e, float* out, int64_t n);
void clip(const float* x, float* y, int64_t n, float lo, float hi);

// y[r, c] = x[r, c] * mul[c] + add[c], then relu (as the Relu kernel: NaN and -0 pass) when relu is set
void channel_affine(const float* x, const float* mul, const float* add, float* y, int64_t R, int64_t C, bool relu);
// Training-mode batch norm over the rows of x[R, C]: batch mean, biased variance, 1/sqrt(var+eps);
// y (skipped when null) normalized with them.
void batch_norm_train(const float* x, int64_t R, int64_t C, const float* scale, const float* offset, float eps,
                      float* y, float* mean, float* var, float* invstd);
// Its backward (the batch statistics are functions of x): dx, dscale = sum(dy*xhat), doffset = sum(dy).
// ry: null, or relu(y) when a Relu follows (dy is then the Relu's output gradient; its mask dy * step(ry) is
// applied on the fly, as tfjs's Relu gradient).
void batch_norm_train_grad(const float* dy, const float* ry, const float* x, int64_t R, int64_t C, const float* mean,
                           const float* invstd, const float* scale, float* dx, float* dscale, float* doffset);

}  // namespace qk
