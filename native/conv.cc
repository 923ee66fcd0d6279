// Convolutions as indirect GEMMs (no im2col buffer for the forward pass), depthwise
// convolutions and pools as direct loops vectorized over channels (NHWC).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "gemm.h"
#include "kernels.h"
#include "simd.h"
#include "threadpool.h"

namespace qk {

namespace {

// Rows of A are output pixels (b, oh, ow); k runs over (kh, kw, ci). Either one pointer
// per tap (CI floats; taps in the padding point at a zero buffer) or, when every window
// lies inside the (possibly zero-padded copy of the) input and dw == 1, one pointer per
// kernel row covering KW*CI contiguous floats.
struct ConvA final : ASource {
  const Conv2DDims& d;
  const float* x;          // input (or padded copy)
  int64_t Hs, Ws;          // its spatial size
  int64_t offH, offW;      // input-coordinate = src-coordinate - off (pad already applied: 0)
  bool wide;
  const float* zeros;
  ConvA(const Conv2DDims& d_, const float* x_, int64_t Hs_, int64_t Ws_, int64_t offH_, int64_t offW_, bool wide_,
        const float* zeros_)
      : d(d_), x(x_), Hs(Hs_), Ws(Ws_), offH(offH_), offW(offW_), wide(wide_), zeros(zeros_) {}
  int64_t run(int64_t k) const override {
    const int64_t u = wide ? d.KW * d.CI : d.CI;
    return u - k % u;
  }
  // Wide, MR | OW: a tile is MR pixels of one output row, sw*CI floats apart.
  int64_t row_stride(int MR) const override { return wide && d.OW % MR == 0 ? d.sw * d.CI : 0; }
  // A tile's pixels are located once; each piece then adds its kernel row (wide: every window
  // is inside, so to the window's corner) or its tap, checked against the borders.
  void tile(int64_t i0, int mr, int MR, const int64_t* pk, int64_t np, const float** out) const override {
    int64_t ih0[kMaxMR], iw0[kMaxMR], b0[kMaxMR];
    int64_t ow = i0 % d.OW, oh = (i0 / d.OW) % d.OH, b = i0 / (d.OW * d.OH);
    for (int r = 0; r < MR; r++) {
      const bool real = r < mr;
      ih0[r] = real ? oh * d.sh - d.pt + offH : ih0[0];
      iw0[r] = real ? ow * d.sw - d.pl + offW : iw0[0];
      b0[r] = real ? b : b0[0];
      if (real && ++ow == d.OW) {
        ow = 0;
        if (++oh == d.OH) {
          oh = 0;
          ++b;
        }
      }
    }
    if (wide) {
      const float* corner[kMaxMR];
      for (int r = 0; r < MR; r++) corner[r] = x + ((b0[r] * Hs + ih0[r]) * Ws + iw0[r]) * d.CI;
      const int64_t u = d.KW * d.CI;
      for (int64_t p = 0; p < np; p++) {
        const int64_t off = pk[p] / u * d.dh * Ws * d.CI + pk[p] % u;
        for (int r = 0; r < MR; r++) out[p * MR + r] = corner[r] + off;
      }
      return;
    }
    for (int64_t p = 0; p < np; p++) {
      const int64_t t = pk[p] / d.CI, ci = pk[p] % d.CI, dh = t / d.KW * d.dh, dw = t % d.KW * d.dw;
      for (int r = 0; r < MR; r++) {
        const int64_t ih = ih0[r] + dh, iw = iw0[r] + dw;
        out[p * MR + r] =
            ih >= 0 && ih < Hs && iw >= 0 && iw < Ws ? x + ((b0[r] * Hs + ih) * Ws + iw) * d.CI + ci : zeros + ci;
      }
    }
  }
};

// A = im2col(x)^T: rows i = taps (kh, kw, ci), k = output pixels (b, oh, ow). Reads a
// copy of x padded so that every window is inside; then along an output row (ow) the
// input advances by sw*CI floats for every tap: one run per output row.
struct Im2colTA final : ASource {
  const Conv2DDims& d;
  const float* xp;
  int64_t Hp, Wp;
  Im2colTA(const Conv2DDims& d_, const float* xp_, int64_t Hp_, int64_t Wp_) : d(d_), xp(xp_), Hp(Hp_), Wp(Wp_) {
    astride = d.sw * d.CI;
  }
  int64_t run(int64_t k) const override { return d.OW - k % d.OW; }
  // A tile of MR rows | CI is MR consecutive input channels of one tap.
  int64_t row_stride(int MR) const override { return d.CI % MR == 0 ? 1 : 0; }
  // A pointer is the tap's offset plus the piece's (output row start) pixel.
  void tile(int64_t i0, int mr, int MR, const int64_t* pk, int64_t np, const float** out) const override {
    int64_t toff[kMaxMR];
    int64_t ci = i0 % d.CI, t = i0 / d.CI;
    for (int r = 0; r < mr; r++) {
      toff[r] = (t / d.KW * d.dh * Wp + t % d.KW * d.dw) * d.CI + ci;
      if (++ci == d.CI) {
        ci = 0;
        ++t;
      }
    }
    for (int r = mr; r < MR; r++) toff[r] = toff[0];
    for (int64_t p = 0; p < np; p++) {
      const int64_t k = pk[p], ow = k % d.OW, oh = (k / d.OW) % d.OH, b = k / (d.OW * d.OH);
      const float* base = xp + ((b * Hp + oh * d.sh) * Wp + ow * d.sw) * d.CI;
      for (int r = 0; r < MR; r++) out[p * MR + r] = base + toff[r];
    }
  }
};

// Working memory of a conv: up to 16 MB from the calling thread's buffers (one per slot,
// kept between calls: batch-parallel tasks pad or unfold one chunk of images at a time),
// larger requests from a buffer of its own, freed with it.
class Scratch {
 public:
  float* get(int slot, size_t n) {
    if (n > ((size_t)4 << 20)) {
      own_[slot].resize(n);
      return own_[slot].data();
    }
    thread_local std::vector<float> keep[2];
    if (keep[slot].size() < n) keep[slot].resize(n);
    return keep[slot].data();
  }

 private:
  std::vector<float> own_[2];
};

// Copies x into a zero-padded buffer (scratch slot 0) in which every window of the conv lies
// inside, writing each element once; returns x itself when no padding is needed.
static const float* padded_input(const Conv2DDims& d, const float* x, Scratch& sc, int64_t& Hp, int64_t& Wp) {
  Hp = std::max<int64_t>((d.OH - 1) * d.sh + (d.KH - 1) * d.dh + 1, 1);
  Wp = std::max<int64_t>((d.OW - 1) * d.sw + (d.KW - 1) * d.dw + 1, 1);
  if (d.pt == 0 && d.pl == 0 && Hp <= d.H && Wp <= d.W) {
    Hp = d.H;
    Wp = d.W;
    return x;
  }
  float* xp = sc.get(0, (size_t)(d.B * Hp * Wp * d.CI));
  const int64_t w0 = std::min(Wp, std::max<int64_t>(0, d.pl)), iw0 = w0 - d.pl;
  const int64_t cnt = std::max<int64_t>(0, std::min(Wp - w0, d.W - iw0));
  for (int64_t bh = 0; bh < d.B * Hp; bh++) {
    const int64_t b = bh / Hp, ih = bh % Hp - d.pt;
    float* row = xp + bh * Wp * d.CI;
    if (ih < 0 || ih >= d.H || cnt == 0) {
      std::memset(row, 0, sizeof(float) * Wp * d.CI);
      continue;
    }
    std::memset(row, 0, sizeof(float) * w0 * d.CI);
    std::memcpy(row + w0 * d.CI, x + ((b * d.H + ih) * d.W + iw0) * d.CI, sizeof(float) * cnt * d.CI);
    std::memset(row + (w0 + cnt) * d.CI, 0, sizeof(float) * (Wp - w0 - cnt) * d.CI);
  }
  return xp;
}

// Batch-parallel convolutions: tasks of whole images, each padded/unfolded in its thread's
// scratch (cache-resident) and multiplied by a single-threaded GEMM. Images per task depend
// on the shape only (never on the thread count), so partial sums merge identically
// everywhere. Returns 0 when the batch is too small to split: callers then run one
// multithreaded GEMM over the whole batch.
static int64_t images_per_task(const Conv2DDims& d, double macs_per_image, double target) {
  const int64_t per = std::max<int64_t>(1, (int64_t)std::ceil(target / std::max(1.0, macs_per_image)));
  return (d.B + per - 1) / per >= 4 ? per : 0;
}

template <class F>
static void for_image_tasks(int64_t B, int64_t per, F&& f) {
  ThreadPool::get().parallel_for((B + per - 1) / per, [&](int64_t t) { f(t, t * per, std::min(B, (t + 1) * per)); });
}

static Conv2DDims images(const Conv2DDims& d, int64_t n) {
  Conv2DDims c = d;
  c.B = n;
  return c;
}

// y = conv(x, w) for the images of d; single_thread: this is one task of a batch-parallel conv.
static void conv_forward_gemm(const Conv2DDims& d, const float* x, const float* w, float* y, bool single_thread) {
  const int64_t M = d.B * d.OH * d.OW, K = d.KH * d.KW * d.CI;
  // Does every window lie inside the input?
  const bool inside = d.pt <= 0 && d.pl <= 0 && (d.OH - 1) * d.sh - d.pt + (d.KH - 1) * d.dh < d.H &&
                      (d.OW - 1) * d.sw - d.pl + (d.KW - 1) * d.dw < d.W;
  std::vector<float> zeros(d.CI, 0.f);
  DenseB bw(w, d.CO, false);
  if (inside && d.dw == 1) {
    ConvA a(d, x, d.H, d.W, 0, 0, true, zeros.data());
    gemm(M, d.CO, K, a, bw, y, d.CO, false, single_thread);
  } else if (d.dw == 1 && (d.CI < 32 || single_thread)) {
    // Few channels (per-tap runs would be short) or one task's images: pad them once.
    Scratch sc;
    int64_t Hp, Wp;
    const float* xp = padded_input(d, x, sc, Hp, Wp);
    ConvA a(d, xp, Hp, Wp, d.pt, d.pl, true, zeros.data());
    gemm(M, d.CO, K, a, bw, y, d.CO, false, single_thread);
  } else {
    ConvA a(d, x, d.H, d.W, 0, 0, false, zeros.data());
    gemm(M, d.CO, K, a, bw, y, d.CO, false, single_thread);
  }
}


// ---------------------------------------------------------------- direct, few output channels
// Stride 1 and few output channels (LeNet's 1 -> 6): a GEMM with N = CO would leave most
// vector lanes idle. Instead the vectors run along output rows: the padded input is made
// channel-planar, xp[b][ci][hp][wp], so that tap (kh, kw, ci) of output row oh is the
// contiguous row xp[b][ci][oh + kh][kw:], and y[b, oh, ow0 + lane, co] accumulates it times
// w[kh, kw, ci, co] (broadcast) for all CO at once. The filter gradient pairs the same rows
// with the rows of dy made planar, dyp[b][co][oh][ow] (scratch the kernel fills).
static bool direct_eligible(const Conv2DDims& d) {
  return d.sh == 1 && d.sw == 1 && d.dh == 1 && d.dw == 1 && d.CO <= 8;
}

// Planar zero-padded copy of x (scratch slot 0): [b][ci][Hp][Wp], Hp = OH + KH - 1, Wp = OW + KW - 1.
static const float* planar_padded(const Conv2DDims& d, const float* x, Scratch& sc, int64_t& Hp, int64_t& Wp) {
  Hp = d.OH + d.KH - 1;
  Wp = d.OW + d.KW - 1;
  float* xp = sc.get(0, (size_t)(d.B * d.CI * Hp * Wp));
  // Columns [w0, w1) come from x (iw = wp - pl); pads may be negative (a transposed conv's).
  const int64_t w0 = std::min(Wp, std::max<int64_t>(0, d.pl)), w1 = std::max(w0, std::min(Wp, d.pl + d.W));
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t ci = 0; ci < d.CI; ci++)
      for (int64_t hp = 0; hp < Hp; hp++) {
        float* o = xp + ((b * d.CI + ci) * Hp + hp) * Wp;
        const int64_t ih = hp - d.pt;
        if (ih < 0 || ih >= d.H) {
          std::memset(o, 0, sizeof(float) * Wp);
          continue;
        }
        const float* src = x + ((b * d.H + ih) * d.W + w0 - d.pl) * d.CI + ci;
        std::memset(o, 0, sizeof(float) * w0);
        for (int64_t wp = w0; wp < w1; wp++) o[wp] = src[(wp - w0) * d.CI];
        std::memset(o + w1, 0, sizeof(float) * (Wp - w1));
      }
  return xp;
}

#if defined(__x86_64__)
// CO_ output channels, NV vectors along the row (ow0 + [0, NV*W)).
#define QK_PLANAR(NAME, TGT, V)                                                                                  \
  template <int CO_, int NV>                                                                                    \
  TGT static void NAME##_fwd(const Conv2DDims& d, const float* xp, int64_t Hp, int64_t Wp, const float* w,       \
                             float* y) {                                                                        \
    constexpr int W = V::W;                                                                                     \
    const int64_t OH = d.OH, OW = d.OW, CI = d.CI, KH = d.KH, KW = d.KW;                                        \
    for (int64_t b = 0, r = 0; b < d.B; b++)                                                                    \
      for (int64_t oh = 0; oh < OH; oh++, r++)                                                                  \
      for (int64_t ow0 = 0; ow0 < OW; ow0 += NV * W) {                                                          \
        typename V::M m[NV];                                                                                    \
        _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) m[v] = V::mask((int)std::min<int64_t>(W, OW - ow0 - v * W)); \
        typename V::T acc[CO_][NV];                                                                             \
        _Pragma("GCC unroll 8") for (int c = 0; c < CO_; c++)                                                   \
          _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) acc[c][v] = V::zero();                           \
        for (int64_t kh = 0; kh < KH; kh++)                                                                     \
          for (int64_t ci = 0; ci < CI; ci++) {                                                                 \
            const float* row = xp + ((b * CI + ci) * Hp + oh + kh) * Wp + ow0;                                  \
            const float* wt = w + (kh * KW * CI + ci) * CO_;                                                    \
            for (int64_t kw = 0; kw < KW; kw++, wt += CI * CO_) {                                               \
              typename V::T xv[NV];                                                                             \
              _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) xv[v] = V::loadm(row + kw + v * W, m[v]);    \
              _Pragma("GCC unroll 8") for (int c = 0; c < CO_; c++) {                                           \
                const typename V::T wb = V::bcast(wt + c);                                                      \
                _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) acc[c][v] = V::fma(xv[v], wb, acc[c][v]);  \
              }                                                                                                 \
            }                                                                                                   \
          }                                                                                                     \
        alignas(64) float t[CO_][NV * W];                                                                       \
        _Pragma("GCC unroll 8") for (int c = 0; c < CO_; c++)                                                   \
          _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) V::store(t[c] + v * W, acc[c][v], W, false);     \
        float* yo = y + (r * OW + ow0) * CO_;                                                                   \
        for (int64_t i = 0; i < std::min<int64_t>(NV * W, OW - ow0); i++)                                       \
          for (int c = 0; c < CO_; c++) yo[i * CO_ + c] = t[c][i];                                              \
      }                                                                                                         \
  }                                                                                                             \
  template <int CO_, int NV>                                                                                    \
  TGT static void NAME##_filter(const Conv2DDims& d, const float* xp, int64_t Hp, int64_t Wp, const float* dy,   \
                                float* dyp, float* dw) {                                                         \
    constexpr int W = V::W;                                                                                      \
    const int64_t OH = d.OH, OW = d.OW, P = OH * OW, CI = d.CI, KW = d.KW;                                       \
    for (int64_t b = 0; b < d.B; b++)                                                                            \
      for (int64_t p = 0; p < P; p++)                                                                            \
        _Pragma("GCC unroll 8") for (int c = 0; c < CO_; c++)                                                    \
          dyp[(b * CO_ + c) * P + p] = dy[(b * P + p) * CO_ + c];                                                \
    for (int64_t t = 0; t < d.KH * KW * CI; t++) {                                                              \
      const int64_t ci = t % CI, kw = t / CI % KW, kh = t / (CI * KW);                                          \
      typename V::T acc[CO_][NV];                                                                               \
      _Pragma("GCC unroll 8") for (int c = 0; c < CO_; c++)                                                     \
        _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) acc[c][v] = V::zero();                             \
      for (int64_t ow0 = 0; ow0 < OW; ow0 += NV * W) {                                                          \
        typename V::M m[NV];                                                                                    \
        _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) m[v] = V::mask((int)std::min<int64_t>(W, OW - ow0 - v * W)); \
        for (int64_t b = 0; b < d.B; b++)                                                                       \
          for (int64_t oh = 0; oh < OH; oh++) {                                                                 \
          const float* row = xp + ((b * CI + ci) * Hp + oh + kh) * Wp + kw + ow0;                               \
          const float* g = dyp + b * CO_ * P + oh * OW + ow0;                                                   \
          typename V::T xv[NV];                                                                                 \
          _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) xv[v] = V::loadm(row + v * W, m[v]);             \
          _Pragma("GCC unroll 8") for (int c = 0; c < CO_; c++)                                                 \
            _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++)                                                \
              acc[c][v] = V::fma(xv[v], V::loadm(g + c * P + v * W, m[v]), acc[c][v]);                          \
        }                                                                                                       \
      }                                                                                                         \
      _Pragma("GCC unroll 8") for (int c = 0; c < CO_; c++) {                                                   \
        alignas(64) float l[NV * W];                                                                            \
        _Pragma("GCC unroll 2") for (int v = 0; v < NV; v++) V::store(l + v * W, acc[c][v], W, false);          \
        float sum = 0.f;                                                                                        \
        for (int i = 0; i < NV * W; i++) sum += l[i];                                                           \
        dw[t * CO_ + c] = sum;                                                                                  \
      }                                                                                                         \
    }                                                                                                           \
  }
QK_PLANAR(planar_zmm, QK_TGT512, Zmm)
QK_PLANAR(planar_ymm, QK_TGT256, Ymm)
#undef QK_PLANAR
#endif

// Portable version of the planar kernels (same loop order).
static void planar_generic_fwd(const Conv2DDims& d, const float* xp, int64_t Hp, int64_t Wp, const float* w,
                               float* y) {
  std::vector<float> acc((size_t)d.OW * d.CO);
  for (int64_t r = 0; r < d.B * d.OH; r++) {
    const int64_t b = r / d.OH, oh = r % d.OH;
    std::fill(acc.begin(), acc.end(), 0.f);
    for (int64_t kh = 0; kh < d.KH; kh++)
      for (int64_t ci = 0; ci < d.CI; ci++)
        for (int64_t kw = 0; kw < d.KW; kw++) {
          const float* row = xp + ((b * d.CI + ci) * Hp + oh + kh) * Wp + kw;
          const float* wt = w + ((kh * d.KW + kw) * d.CI + ci) * d.CO;
          for (int64_t ow = 0; ow < d.OW; ow++)
            for (int64_t c = 0; c < d.CO; c++) acc[ow * d.CO + c] += row[ow] * wt[c];
        }
    std::copy(acc.begin(), acc.end(), y + r * d.OW * d.CO);
  }
}

static void planar_generic_filter(const Conv2DDims& d, const float* xp, int64_t Hp, int64_t Wp, const float* dy,
                                  float* dyp, float* dw) {
  const int64_t P = d.OH * d.OW;
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t p = 0; p < P; p++)
      for (int64_t c = 0; c < d.CO; c++) dyp[(b * d.CO + c) * P + p] = dy[(b * P + p) * d.CO + c];
  for (int64_t t = 0; t < d.KH * d.KW * d.CI; t++) {
    const int64_t ci = t % d.CI, kw = t / d.CI % d.KW, kh = t / (d.CI * d.KW);
    for (int64_t c = 0; c < d.CO; c++) {
      float sum = 0.f;
      for (int64_t r = 0; r < d.B * d.OH; r++) {
        const int64_t b = r / d.OH, oh = r % d.OH;
        const float* row = xp + ((b * d.CI + ci) * Hp + oh + kh) * Wp + kw;
        const float* g = dyp + ((b * d.CO + c) * d.OH + oh) * d.OW;
        for (int64_t ow = 0; ow < d.OW; ow++) sum += row[ow] * g[ow];
      }
      dw[t * d.CO + c] = sum;
    }
  }
}

using PlanarFwd = void (*)(const Conv2DDims&, const float*, int64_t, int64_t, const float*, float*);

// The kernel for d.CO output channels and rows of d.OW on the active ISA (one or two vectors per block).
template <class Fn, class Pick>
static Fn planar_kernel(const Conv2DDims& d, Fn generic, Pick&& pick) {
#if defined(__x86_64__)
  const Isa isa = active_isa();
  if (isa == Isa::Avx512) return pick(std::integral_constant<int, 16>(), d.OW > 16);
  if (isa == Isa::Avx2) return pick(std::integral_constant<int, 8>(), d.OW > 8);
#endif
  (void)d;
  return generic;
}

#define QK_PLANAR_TABLE(KIND)                                                                                   \
  [&](auto lanes, bool two) {                                                                                   \
    using F = decltype(&planar_generic_##KIND);                                                                 \
    static const F z1[] = {planar_zmm_##KIND<1, 1>, planar_zmm_##KIND<2, 1>, planar_zmm_##KIND<3, 1>,           \
                           planar_zmm_##KIND<4, 1>, planar_zmm_##KIND<5, 1>, planar_zmm_##KIND<6, 1>,           \
                           planar_zmm_##KIND<7, 1>, planar_zmm_##KIND<8, 1>};                                   \
    static const F z2[] = {planar_zmm_##KIND<1, 2>, planar_zmm_##KIND<2, 2>, planar_zmm_##KIND<3, 2>,           \
                           planar_zmm_##KIND<4, 2>, planar_zmm_##KIND<5, 2>, planar_zmm_##KIND<6, 2>,           \
                           planar_zmm_##KIND<7, 2>, planar_zmm_##KIND<8, 2>};                                   \
    static const F y1[] = {planar_ymm_##KIND<1, 1>, planar_ymm_##KIND<2, 1>, planar_ymm_##KIND<3, 1>,           \
                           planar_ymm_##KIND<4, 1>, planar_ymm_##KIND<5, 1>, planar_ymm_##KIND<6, 1>,           \
                           planar_ymm_##KIND<7, 1>, planar_ymm_##KIND<8, 1>};                                   \
    static const F y2[] = {planar_ymm_##KIND<1, 2>, planar_ymm_##KIND<2, 2>, planar_ymm_##KIND<3, 2>,           \
                           planar_ymm_##KIND<4, 2>, planar_ymm_##KIND<5, 2>, planar_ymm_##KIND<6, 2>,           \
                           planar_ymm_##KIND<7, 2>, planar_ymm_##KIND<8, 2>};                                   \
    return (decltype(lanes)::value == 16 ? (two ? z2 : z1) : (two ? y2 : y1))[d.CO - 1];                       \
  }

// y of the images of d.
static void direct_forward_images(const Conv2DDims& d, const float* x, const float* w, float* y) {
  Scratch sc;
  int64_t Hp, Wp;
  const float* xp = planar_padded(d, x, sc, Hp, Wp);
  planar_kernel(d, &planar_generic_fwd, QK_PLANAR_TABLE(fwd))(d, xp, Hp, Wp, w, y);
}

// Filter gradient [KH, KW, CI, CO] of the images of d (dy: theirs).
static void direct_filter_images(const Conv2DDims& d, const float* x, const float* dy, float* dw) {
  Scratch sc;
  int64_t Hp, Wp;
  const float* xp = planar_padded(d, x, sc, Hp, Wp);
  float* dyp = sc.get(1, (size_t)(d.B * d.OH * d.OW * d.CO));
  planar_kernel(d, &planar_generic_filter, QK_PLANAR_TABLE(filter))(d, xp, Hp, Wp, dy, dyp, dw);
}
#undef QK_PLANAR_TABLE

// ---------------------------------------------------------------- direct, 3-wide kernel rows
// KW = 3, CO = 16 or 32 on AVX-512 (at 64 the GEMM's 8x32 tiles already reuse loads), stride 1; the
// forward also with stride 2 along rows, and 1x1 stride-2 shortcuts (K = CI is too short for GEMM
// tiles). As a GEMM over taps, CO = 16 leaves B one vector wide: every FMA needs its own broadcast
// of x. Here R consecutive output pixels of a row share the input: x[oh + kh, ow0 + j, ci]
// (broadcast once) times w[kh, kw, ci] adds to output pixel ow0 + j - kw for each kw, and the
// 3*NV weight vectors of (kh, ci) serve all R pixels: about 0.4 loads per FMA instead of 1. Sums
// run over (kh, ci, kw) per pixel: no order depends on tasks. (Strided filter gradients stay
// GEMMs: with half the FMAs per broadcast they measured slower.)
static bool rows3_eligible(const Conv2DDims& d, bool filter) {
#if defined(__x86_64__)
  return active_isa() == Isa::Avx512 && (filter ? d.sh == 1 && d.sw == 1 : d.sw <= 2) && d.dh == 1 && d.dw == 1 &&
         (d.KW == 3 || (!filter && d.KW == 1 && d.sw == 2)) && (d.CO == 16 || d.CO == 32);
#else
  (void)d, (void)filter;
  return false;
#endif
}

#if defined(__x86_64__)
// R output pixels (NV vectors of channels each, ys floats apart in y) of a conv with KW_ taps per
// kernel row and stride SW along it, from the padded input xr (kernel row kh at + kh*rs, CI floats
// per pixel): input pixel j feeds output (j - kw) / SW for the kw with SW | j - kw.
template <int NV, int KW_, int SW, int R>
QK_TGT512 static void rowconv_block(const float* xr, int64_t rs, int64_t CI, int64_t KH, const float* w, float* y,
                                    int64_t ys) {
  constexpr int CO = NV * 16;
  __m512 acc[R][NV];
  _Pragma("GCC unroll 16") for (int o = 0; o < R; o++)
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[o][v] = Zmm::zero();
  for (int64_t kh = 0; kh < KH; kh++, xr += rs)
    for (int64_t ci = 0; ci < CI; ci++) {
      const float* wt = w + (kh * KW_ * CI + ci) * CO;
      __m512 wv[KW_][NV];
      _Pragma("GCC unroll 3") for (int kw = 0; kw < KW_; kw++)
        _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) wv[kw][v] = Zmm::load(wt + kw * CI * CO + v * 16);
      _Pragma("GCC unroll 40") for (int j = 0; j < (R - 1) * SW + KW_; j++) {
        const __m512 xb = Zmm::bcast(xr + j * CI + ci);
        _Pragma("GCC unroll 3") for (int kw = 0; kw < KW_; kw++) {
          const int o = (j - kw) / SW;
          if (j >= kw && (j - kw) % SW == 0 && o < R)
            _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[o][v] = Zmm::fma(xb, wv[kw][v], acc[o][v]);
        }
      }
    }
  _Pragma("GCC unroll 16") for (int o = 0; o < R; o++)
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) _mm512_storeu_ps(y + o * ys + v * 16, acc[o][v]);
}

// One output row of OW pixels: blocks of RM (as many accumulators as fit), then a tail of 8, 4, 2, 1.
template <int NV, int KW_, int SW>
static void rowconv_row(const float* xr, int64_t rs, int64_t CI, int64_t KH, const float* w, float* y, int64_t ys,
                        int64_t OW) {
  constexpr int RM = 16 / NV;
  int64_t o = 0;
  auto block = [&](auto r) {
    rowconv_block<NV, KW_, SW, decltype(r)::value>(xr + o * SW * CI, rs, CI, KH, w, y + o * ys, ys);
    o += decltype(r)::value;
  };
  while (o + RM <= OW) block(std::integral_constant<int, RM>());
  if (RM > 8 && o + 8 <= OW) block(std::integral_constant<int, (RM > 8 ? 8 : 1)>());
  if (RM > 4 && o + 4 <= OW) block(std::integral_constant<int, (RM > 4 ? 4 : 1)>());
  if (RM > 2 && o + 2 <= OW) block(std::integral_constant<int, 2>());
  if (o < OW) block(std::integral_constant<int, 1>());
}

using RowConv = void (*)(const float*, int64_t, int64_t, int64_t, const float*, float*, int64_t, int64_t);
// The row kernel for 16 * nv output channels, kw taps per kernel row and stride sw (nv, sw <= 2, kw <= 3).
static RowConv rowconv(int64_t nv, int64_t kw, int64_t sw) {
  static const RowConv table[2][2][3] = {
      {{rowconv_row<1, 1, 1>, rowconv_row<1, 2, 1>, rowconv_row<1, 3, 1>},
       {rowconv_row<1, 1, 2>, rowconv_row<1, 2, 2>, rowconv_row<1, 3, 2>}},
      {{rowconv_row<2, 1, 1>, rowconv_row<2, 2, 1>, rowconv_row<2, 3, 1>},
       {rowconv_row<2, 1, 2>, rowconv_row<2, 2, 2>, rowconv_row<2, 3, 2>}}};
  return table[nv - 1][sw - 1][kw - 1];
}
#endif

#if defined(__x86_64__)
// Filter gradient: acc[kw][c] (tap (kh, kw), channel ci0 + c) += x[oh + kh, ow0 + j, ci0 + c] * dy[oh, ow0 + j - kw]
// over R output pixels whose dy vectors stay in registers: each broadcast of x feeds 3 FMAs.
template <int NV, int CIB, int R>
QK_TGT512 static inline __attribute__((always_inline)) void rows3_filter_block(const float* xr, int64_t CI,
                                                                              const float* g, __m512 (&acc)[3][CIB][NV]) {
  __m512 gv[R][NV];
  _Pragma("GCC unroll 16") for (int o = 0; o < R; o++)
    _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) gv[o][v] = Zmm::load(g + (o * NV + v) * 16);
  _Pragma("GCC unroll 18") for (int j = 0; j < R + 2; j++)
    _Pragma("GCC unroll 4") for (int c = 0; c < CIB; c++) {
      const __m512 xb = Zmm::bcast(xr + j * CI + c);
      _Pragma("GCC unroll 3") for (int kw = 0; kw < 3; kw++) {
        const int o = j - kw;
        if (o >= 0 && o < R)
          _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[kw][c][v] = Zmm::fma(xb, gv[o][v], acc[kw][c][v]);
      }
    }
}

// dw of kernel row kh, input channels [ci0, ci0 + CIB), over the images of d (xp: padded input).
template <int NV, int CIB>
QK_TGT512 static void rows3_filter_taps(const Conv2DDims& d, const float* xp, int64_t Hp, int64_t Wp, const float* dy,
                                        int64_t kh, int64_t ci0, float* dw) {
  constexpr int CO = NV * 16, RM = NV == 1 ? 8 : 6;
  const int64_t CI = d.CI, OW = d.OW;
  __m512 acc[3][CIB][NV];
  _Pragma("GCC unroll 3") for (int kw = 0; kw < 3; kw++)
    _Pragma("GCC unroll 4") for (int c = 0; c < CIB; c++)
      _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++) acc[kw][c][v] = Zmm::zero();
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t oh = 0; oh < d.OH; oh++) {
      const float* xr = xp + ((b * Hp + oh + kh) * Wp) * CI + ci0;
      const float* g = dy + (b * d.OH + oh) * OW * CO;
      int64_t o = 0;
      for (; o + RM <= OW; o += RM) rows3_filter_block<NV, CIB, RM>(xr + o * CI, CI, g + o * CO, acc);
      if (o + 4 <= OW) rows3_filter_block<NV, CIB, 4>(xr + o * CI, CI, g + o * CO, acc), o += 4;
      if (o + 2 <= OW) rows3_filter_block<NV, CIB, 2>(xr + o * CI, CI, g + o * CO, acc), o += 2;
      if (o < OW) rows3_filter_block<NV, CIB, 1>(xr + o * CI, CI, g + o * CO, acc);
    }
  _Pragma("GCC unroll 3") for (int kw = 0; kw < 3; kw++)
    _Pragma("GCC unroll 4") for (int c = 0; c < CIB; c++)
      _Pragma("GCC unroll 4") for (int v = 0; v < NV; v++)
        _mm512_storeu_ps(dw + ((kh * 3 + kw) * CI + ci0 + c) * CO + v * 16, acc[kw][c][v]);
}
#endif

// Filter gradient [KH, 3, CI, CO] of the images of d (rows3_eligible(d, true); dy: theirs).
static void rows3_filter_images(const Conv2DDims& d, const float* x, const float* dy, float* dw) {
#if defined(__x86_64__)
  Scratch sc;
  int64_t Hp, Wp;
  const float* xp = padded_input(d, x, sc, Hp, Wp);
  // Channels per pass: as many accumulators as fit beside the R dy vectors.
  using Taps = void (*)(const Conv2DDims&, const float*, int64_t, int64_t, const float*, int64_t, int64_t, float*);
  int cib = 1;
  Taps f = d.CO == 16 ? rows3_filter_taps<1, 1> : rows3_filter_taps<2, 1>;
  if (d.CO == 16 && d.CI % 4 == 0) cib = 4, f = rows3_filter_taps<1, 4>;
  else if (d.CO == 16 && d.CI % 3 == 0) cib = 3, f = rows3_filter_taps<1, 3>;
  else if (d.CO == 32 && d.CI % 2 == 0) cib = 2, f = rows3_filter_taps<2, 2>;
  for (int64_t kh = 0; kh < d.KH; kh++)
    for (int64_t ci0 = 0; ci0 < d.CI; ci0 += cib) f(d, xp, Hp, Wp, dy, kh, ci0, dw);
#else
  (void)d, (void)x, (void)dy, (void)dw;
#endif
}

// y of the images of d (rows3_eligible(d, false)).
static void rows3_forward_images(const Conv2DDims& d, const float* x, const float* w, float* y) {
#if defined(__x86_64__)
  Scratch sc;
  int64_t Hp, Wp;
  const float* xp = padded_input(d, x, sc, Hp, Wp);
  const RowConv row = rowconv(d.CO / 16, d.KW, d.sw);
  for (int64_t b = 0; b < d.B; b++)
    for (int64_t oh = 0; oh < d.OH; oh++)
      row(xp + (b * Hp + oh * d.sh) * Wp * d.CI, Wp * d.CI, d.CI, d.KH, w, y + (b * d.OH + oh) * d.OW * d.CO, d.CO, d.OW);
#else
  (void)d, (void)x, (void)w, (void)y;
#endif
}

}  // namespace

void conv2d_forward(const Conv2DDims& d, const float* x, const float* w, float* y) {
  const int64_t xs = d.H * d.W * d.CI, ys = d.OH * d.OW * d.CO;
  int64_t per = images_per_task(d, (double)d.OH * d.OW * d.CO * d.KH * d.KW * d.CI, 1 << 20);
  if (direct_eligible(d) || rows3_eligible(d, false)) {
    const auto images_fn = direct_eligible(d) ? direct_forward_images : rows3_forward_images;
    for_image_tasks(d.B, std::max<int64_t>(per, 1), [&](int64_t, int64_t b0, int64_t b1) {
      images_fn(images(d, b1 - b0), x + b0 * xs, w, y + b0 * ys);
    });
    return;
  }
  if (!per) return conv_forward_gemm(d, x, w, y, false);
  for_image_tasks(d.B, per, [&](int64_t, int64_t b0, int64_t b1) {
    conv_forward_gemm(images(d, b1 - b0), x + b0 * xs, w, y + b0 * ys, true);
  });
}

namespace {

// dx of the images of d (zeroed here) += each column of col[p, (kh,kw,ci)] at its tap: with
// dilation 1 the taps of one kernel row cover KW*CI contiguous floats of both.
QK_MULTI(void, col2im_add, (const Conv2DDims& d, const float* col, float* dx), (d, col, dx)) {
  const int64_t K = d.KH * d.KW * d.CI;
  std::memset(dx, 0, sizeof(float) * d.B * d.H * d.W * d.CI);
  for (int64_t p = 0; p < d.B * d.OH * d.OW; p++) {
    const int64_t ow = p % d.OW, oh = p / d.OW % d.OH, b = p / (d.OW * d.OH);
    const float* c = col + p * K;
    const int64_t w0 = ow * d.sw - d.pl;
    for (int64_t kh = 0; kh < d.KH; kh++) {
      const int64_t h = oh * d.sh - d.pt + kh * d.dh;
      if (h < 0 || h >= d.H) continue;
      float* row = dx + (b * d.H + h) * d.W * d.CI;
      const float* ck = c + kh * d.KW * d.CI;
      if (d.dw == 1) {
        const int64_t kw0 = std::max<int64_t>(0, -w0), kw1 = std::min(d.KW, d.W - w0);
        float* o = row + (w0 + kw0) * d.CI;
        const float* src = ck + kw0 * d.CI;
        for (int64_t i = 0; i < (kw1 - kw0) * d.CI; i++) o[i] += src[i];
        continue;
      }
      for (int64_t kw = 0; kw < d.KW; kw++) {
        const int64_t w = w0 + kw * d.dw;
        if (w < 0 || w >= d.W) continue;
        float* o = row + w * d.CI;
        const float* src = ck + kw * d.CI;
        for (int64_t ci = 0; ci < d.CI; ci++) o[ci] += src[ci];
      }
    }
  }
}

// dx for the images of d through col[p, (kh,kw,ci)] = dy[p, :] . wt[:, (kh,kw,ci)] (wt: the
// filter transposed to [CO, KH*KW*CI]).
static void conv_backprop_input_col(const Conv2DDims& d, const float* dy, const float* wt, float* dx,
                                    bool single_thread) {
  const int64_t P = d.OH * d.OW, K = d.KH * d.KW * d.CI;
  Scratch sc;
  float* col = sc.get(1, (size_t)(d.B * P * K));
  sgemm(false, false, d.B * P, K, d.CO, dy, d.CO, wt, K, col, K, false, single_thread);
  if (single_thread) return col2im_add(d, col, dx);
  parallel_range(d.B, 1, [&](int64_t s, int64_t e) {
    col2im_add(images(d, e - s), col + s * P * K, dx + s * d.H * d.W * d.CI);
  });
}

}  // namespace

namespace {

// One axis of an output phase of a strided input gradient: input positions ph, ph + s, ... (size
// of them) receive dy through the taps k0, k0 + s, ... (n of them) only, as a stride-1 correlation
// of dy with those taps flipped, padded by pad (may be negative).
struct PhaseAxis {
  int64_t k0, n, pad, size;
};
static PhaseAxis phase_axis(int64_t ph, int64_t s, int64_t K, int64_t p, int64_t in) {
  const int64_t k0 = ((ph + p) % s + s) % s, n = k0 < K ? (K - k0 + s - 1) / s : 0;
  return {k0, n, n - 1 - (ph + p - k0) / s, (in - ph + s - 1) / s};
}

// Strided, undilated, 16 or 32 input channels on AVX-512 (at most 3 taps of a kernel row per phase).
static bool phases_eligible(const Conv2DDims& d) {
#if defined(__x86_64__)
  return active_isa() == Isa::Avx512 && (d.sh > 1 || d.sw > 1) && d.dh == 1 && d.dw == 1 && (d.CI == 16 || d.CI == 32) &&
         d.KW <= 3 * d.sw;
#else
  (void)d;
  return false;
#endif
}

// dx by output phases (phases_eligible): each the row-blocked stride-1 correlation of dy with the
// taps that reach it (flipped, transposed), stored straight into dx's strided pixels, so no
// zeros are multiplied and no columns gathered; positions no tap reaches are zeroed.
static void backprop_input_phases(const Conv2DDims& d, const float* dy, const float* w, float* dx) {
#if defined(__x86_64__)
  struct Phase {
    int64_t ph, pw;
    PhaseAxis h, v;
    std::vector<float> wf;  // [h.n][v.n][CO][CI]
  };
  std::vector<Phase> phases;
  for (int64_t ph = 0; ph < std::min(d.sh, d.H); ph++)
    for (int64_t pw = 0; pw < std::min(d.sw, d.W); pw++) {
      Phase f{ph, pw, phase_axis(ph, d.sh, d.KH, d.pt, d.H), phase_axis(pw, d.sw, d.KW, d.pl, d.W), {}};
      f.wf.resize((size_t)(f.h.n * f.v.n * d.CO * d.CI));
      for (int64_t a = 0; a < f.h.n; a++)
        for (int64_t c = 0; c < f.v.n; c++)
          for (int64_t ci = 0; ci < d.CI; ci++)
            for (int64_t co = 0; co < d.CO; co++)
              f.wf[(((f.h.n - 1 - a) * f.v.n + (f.v.n - 1 - c)) * d.CO + co) * d.CI + ci] =
                  w[(((f.h.k0 + a * d.sh) * d.KW + f.v.k0 + c * d.sw) * d.CI + ci) * d.CO + co];
      phases.push_back(std::move(f));
    }
  const int64_t ys = d.sw * d.CI, P = d.OH * d.OW;
  const int64_t per = images_per_task(d, (double)P * d.KH * d.KW * d.CI * d.CO, 1 << 20);
  for_image_tasks(d.B, std::max<int64_t>(per, 1), [&](int64_t, int64_t b0, int64_t b1) {
    Scratch sc;
    for (const Phase& f : phases) {
      float* base = dx + ((b0 * d.H + f.ph) * d.W + f.pw) * d.CI;
      if (!f.h.n || !f.v.n) {  // whole rows when no tap reaches them (once, at pw = 0), else pixels
        for (int64_t b = 0; b < b1 - b0; b++)
          for (int64_t i = 0; i < f.h.size; i++) {
            float* row = base + (b * d.H + i * d.sh) * d.W * d.CI;
            if (!f.h.n && f.pw == 0) std::memset(row, 0, sizeof(float) * d.W * d.CI);
            for (int64_t j = 0; f.h.n && j < f.v.size; j++) std::memset(row + j * ys, 0, sizeof(float) * d.CI);
          }
        continue;
      }
      const Conv2DDims t{b1 - b0, d.OH, d.OW, d.CO, f.h.size, f.v.size, d.CI, f.h.n, f.v.n, 1, 1, 1, 1, f.h.pad, f.v.pad};
      int64_t Hp, Wp;
      const float* xp = padded_input(t, dy + b0 * P * d.CO, sc, Hp, Wp);
      const RowConv row = rowconv(d.CI / 16, f.v.n, 1);
      for (int64_t b = 0; b < t.B; b++)
        for (int64_t i = 0; i < f.h.size; i++)
          row(xp + (b * Hp + i) * Wp * d.CO, Wp * d.CO, d.CO, f.h.n, f.wf.data(),
              base + (b * d.H + i * d.sh) * d.W * d.CI, ys, f.v.size);
    }
  });
#else
  (void)d, (void)dy, (void)w, (void)dx;
#endif
}

}  // namespace

void conv2d_backprop_input(const Conv2DDims& d, const float* dy, const float* w, float* dx) {
  // Stride 1 with enough input channels: dx is the correlation of dy with the flipped,
  // transposed filter. Strided with 16 or 32 (AVX-512): the same per output phase. Otherwise
  // (strided, or too few input channels for the GEMM's N) the columns of dy . w^T are gathered.
  if (phases_eligible(d)) return backprop_input_phases(d, dy, w, dx);
  if (d.sh == 1 && d.sw == 1 && d.CI >= 16) {
    std::vector<float> wf((size_t)(d.KH * d.KW * d.CO * d.CI));
    for (int64_t kh = 0; kh < d.KH; kh++)
      for (int64_t kw = 0; kw < d.KW; kw++)
        for (int64_t ci = 0; ci < d.CI; ci++)
          for (int64_t co = 0; co < d.CO; co++)
            wf[(((d.KH - 1 - kh) * d.KW + (d.KW - 1 - kw)) * d.CO + co) * d.CI + ci] =
                w[((kh * d.KW + kw) * d.CI + ci) * d.CO + co];
    Conv2DDims t{d.B, d.OH, d.OW, d.CO, d.H, d.W, d.CI, d.KH, d.KW,
                 1, 1, d.dh, d.dw, (d.KH - 1) * d.dh - d.pt, (d.KW - 1) * d.dw - d.pl};
    conv2d_forward(t, dy, wf.data(), dx);
    return;
  }
  const int64_t P = d.OH * d.OW, K = d.KH * d.KW * d.CI;
  std::vector<float> wt((size_t)(K * d.CO));  // once here, not packed transposed by every task
  for (int64_t k = 0; k < K; k++)
    for (int64_t co = 0; co < d.CO; co++) wt[co * K + k] = w[k * d.CO + co];
  const int64_t per = images_per_task(d, (double)P * K * d.CO, 1 << 20);
  if (!per) {
    // Few images: in blocks whose columns take at most 64 MB.
    const int64_t imgs = std::max<int64_t>(1, std::min<int64_t>(d.B, (int64_t)(16 << 20) / std::max<int64_t>(1, P * K)));
    for (int64_t b0 = 0; b0 < d.B; b0 += imgs) {
      const int64_t nb = std::min(imgs, d.B - b0);
      conv_backprop_input_col(images(d, nb), dy + b0 * P * d.CO, wt.data(), dx + b0 * d.H * d.W * d.CI, false);
    }
    return;
  }
  for_image_tasks(d.B, per, [&](int64_t, int64_t b0, int64_t b1) {
    conv_backprop_input_col(images(d, b1 - b0), dy + b0 * P * d.CO, wt.data(), dx + b0 * d.H * d.W * d.CI, true);
  });
}

void conv2d_backprop_filter(const Conv2DDims& d, const float* x, const float* dy, float* dw) {
  // dw[(kh,kw,ci), co] = sum over output pixels of im2col(x)^T * dy: A read in place from a
  // padded copy of x, B = dy read in place. Split over images (fixed tasks of at least 512
  // output pixels, at most 16 tasks), each task's partial dw summed in task order.
  const int64_t M = d.KH * d.KW * d.CI, P = d.OH * d.OW, MN = M * d.CO;
  const double pix = std::max<double>(512, (double)(d.B * P) / 16);
  int64_t per = images_per_task(d, (double)P, pix);
  const bool direct = direct_eligible(d) || rows3_eligible(d, true);
  auto run = [&](const Conv2DDims& c, const float* xc, const float* dyc, float* out, bool single_thread) {
    if (direct) return (direct_eligible(c) ? direct_filter_images : rows3_filter_images)(c, xc, dyc, out);
    Scratch sc;
    int64_t Hp, Wp;
    const float* xp = padded_input(c, xc, sc, Hp, Wp);
    Im2colTA a(c, xp, Hp, Wp);
    DenseB b(dyc, c.CO, false);
    gemm(M, c.CO, c.B * P, a, b, out, c.CO, false, single_thread);
  };
  if (!per && !direct) return run(d, x, dy, dw, false);
  per = std::max<int64_t>(per, 1);
  const int64_t tasks = (d.B + per - 1) / per;
  std::vector<float> part((size_t)(tasks * MN));
  for_image_tasks(d.B, per, [&](int64_t t, int64_t b0, int64_t b1) {
    run(images(d, b1 - b0), x + b0 * d.H * d.W * d.CI, dy + b0 * P * d.CO, part.data() + t * MN, true);
  });
  parallel_range(MN, 4096, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; i++) dw[i] = part[i];
    for (int64_t t = 1; t < tasks; t++)
      for (int64_t i = s; i < e; i++) dw[i] += part[t * MN + i];
  });
}

// ---------------------------------------------------------------- depthwise
// Calls f(x window at the tap, tap index kh*KW+kw) for each kernel tap of output (b, oh, ow) inside the input.
// Force-inlined so each ISA's copy of the caller vectorizes the channel loops in f.
template <class F>
static inline __attribute__((always_inline)) void for_each_tap(const Conv2DDims& d, const float* x, int64_t b, int64_t oh,
                                                               int64_t ow, F&& f) {
  for (int64_t kh = 0; kh < d.KH; kh++) {
    const int64_t ih = oh * d.sh - d.pt + kh * d.dh;
    if (ih < 0 || ih >= d.H) continue;
    for (int64_t kw = 0; kw < d.KW; kw++) {
      const int64_t iw = ow * d.sw - d.pl + kw * d.dw;
      if (iw < 0 || iw >= d.W) continue;
      f(x + ((b * d.H + ih) * d.W + iw) * d.CI, kh * d.KW + kw);
    }
  }
}

QK_MULTI(void, dw_fwd_rows, (const Conv2DDims& d, const float* x, const float* w, float* y, int64_t s, int64_t e),
         (d, x, w, y, s, e)) {
  const int64_t Mul = d.CO / d.CI;
  for (int64_t bo = s; bo < e; bo++) {
    const int64_t b = bo / d.OH, oh = bo % d.OH;
    for (int64_t ow = 0; ow < d.OW; ow++) {
      float* yo = y + ((b * d.OH + oh) * d.OW + ow) * d.CO;
      for (int64_t c = 0; c < d.CO; c++) yo[c] = 0.f;
      for_each_tap(d, x, b, oh, ow, [&](const float* xi, int64_t tap) {
        const float* wk = w + tap * d.CO;
        if (Mul == 1) {
          for (int64_t c = 0; c < d.CI; c++) yo[c] += xi[c] * wk[c];
        } else {
          for (int64_t c = 0; c < d.CI; c++)
            for (int64_t m = 0; m < Mul; m++) yo[c * Mul + m] += xi[c] * wk[c * Mul + m];
        }
      });
    }
  }
}

void depthwise_forward(const Conv2DDims& d, const float* x, const float* w, float* y) {
  parallel_range(d.B * d.OH, 2, [&](int64_t s, int64_t e) { dw_fwd_rows(d, x, w, y, s, e); });
}

QK_MULTI(void, dw_bwd_in_rows,
         (const Conv2DDims& d, const float* dy, const float* w, float* dx, int64_t s, int64_t e),
         (d, dy, w, dx, s, e)) {
  const int64_t Mul = d.CO / d.CI;
  for (int64_t bh = s; bh < e; bh++) {
    const int64_t b = bh / d.H, h = bh % d.H;
    for (int64_t x_ = 0; x_ < d.W; x_++) {
      float* o = dx + ((b * d.H + h) * d.W + x_) * d.CI;
      for (int64_t c = 0; c < d.CI; c++) o[c] = 0.f;
      for (int64_t kh = 0; kh < d.KH; kh++) {
        const int64_t th = h + d.pt - kh * d.dh;
        if (th < 0 || th % d.sh) continue;
        const int64_t oh = th / d.sh;
        if (oh >= d.OH) continue;
        for (int64_t kw = 0; kw < d.KW; kw++) {
          const int64_t tw = x_ + d.pl - kw * d.dw;
          if (tw < 0 || tw % d.sw) continue;
          const int64_t ow = tw / d.sw;
          if (ow >= d.OW) continue;
          const float* g = dy + ((b * d.OH + oh) * d.OW + ow) * d.CO;
          const float* wk = w + (kh * d.KW + kw) * d.CO;
          if (Mul == 1) {
            for (int64_t c = 0; c < d.CI; c++) o[c] += g[c] * wk[c];
          } else {
            for (int64_t c = 0; c < d.CI; c++) {
              float acc = 0.f;
              for (int64_t m = 0; m < Mul; m++) acc += g[c * Mul + m] * wk[c * Mul + m];
              o[c] += acc;
            }
          }
        }
      }
    }
  }
}

void depthwise_backprop_input(const Conv2DDims& d, const float* dy, const float* w, float* dx) {
  parallel_range(d.B * d.H, 2, [&](int64_t s, int64_t e) { dw_bwd_in_rows(d, dy, w, dx, s, e); });
}

QK_MULTI(void, dw_bwd_f_rows,
         (const Conv2DDims& d, const float* x, const float* dy, float* acc, int64_t s, int64_t e),
         (d, x, dy, acc, s, e)) {
  const int64_t Mul = d.CO / d.CI;
  for (int64_t bo = s; bo < e; bo++) {
    const int64_t b = bo / d.OH, oh = bo % d.OH;
    for (int64_t ow = 0; ow < d.OW; ow++) {
      const float* g = dy + ((b * d.OH + oh) * d.OW + ow) * d.CO;
      for_each_tap(d, x, b, oh, ow, [&](const float* xi, int64_t tap) {
        float* a = acc + tap * d.CO;
        if (Mul == 1) {
          for (int64_t c = 0; c < d.CI; c++) a[c] += xi[c] * g[c];
        } else {
          for (int64_t c = 0; c < d.CI; c++)
            for (int64_t m = 0; m < Mul; m++) a[c * Mul + m] += xi[c] * g[c * Mul + m];
        }
      });
    }
  }
}

void depthwise_backprop_filter(const Conv2DDims& d, const float* x, const float* dy, float* dw) {
  const int64_t n = d.KH * d.KW * d.CO, rows = d.B * d.OH;
  const int T = ThreadPool::get().size();
  std::vector<float> part((size_t)(T * n), 0.f);
  ThreadPool::get().run_per_thread([&](int t) {
    int64_t s = rows * t / T, e = rows * (t + 1) / T;
    if (s < e) dw_bwd_f_rows(d, x, dy, part.data() + t * n, s, e);
  });
  for (int64_t i = 0; i < n; i++) {
    float v = 0.f;
    for (int t = 0; t < T; t++) v += part[t * n + i];
    dw[i] = v;
  }
}

// ---------------------------------------------------------------- pools
// Max pooling over output rows [s, e) of (b, oh), vectorized over channels (masked tail) with
// branch-free selects (a compare per element branches unpredictably on activations). Each
// window's first maximum in scan order (tfjs's cpu backend's choice) is tracked as the tap
// index. kMaxFwd: out = y. kMaxGradOwn: the windows do not overlap and output row oh owns input
// rows [oh*sh - pt, (oh+1)*sh - pt) (the first from 0, the last to H): it zeroes them and writes
// dy at each window's maximum (none when no element exceeds -inf). kMaxGradAdd: out (zeroed)
// accumulates.
enum MaxPoolMode { kMaxFwd, kMaxGradOwn, kMaxGradAdd };

#define QK_MAXPOOL(NAME, TGT, V)                                                                                 \
  TGT static void NAME(const Conv2DDims& d, const float* x, const float* dy, float* out, int64_t s, int64_t e,   \
                       int mode) {                                                                              \
    constexpr int W = V::W;                                                                                     \
    const int64_t row = d.W * d.CI, taps = d.KH * d.KW;                                                         \
    std::vector<int64_t> off((size_t)taps);                                                                     \
    for (int64_t bo = s; bo < e; bo++) {                                                                        \
      const int64_t b = bo / d.OH, oh = bo % d.OH;                                                              \
      if (mode == kMaxGradOwn) {                                                                                \
        const int64_t h0 = oh == 0 ? 0 : std::min(d.H, std::max<int64_t>(0, oh * d.sh - d.pt));                 \
        const int64_t h1 = oh == d.OH - 1 ? d.H : std::min(d.H, std::max<int64_t>(0, (oh + 1) * d.sh - d.pt));  \
        if (h1 > h0) std::memset(out + (b * d.H + h0) * row, 0, sizeof(float) * (h1 - h0) * row);              \
      }                                                                                                         \
      for (int64_t ow = 0; ow < d.OW; ow++) {                                                                   \
        for (int64_t t = 0; t < taps; t++) {                                                                    \
          const int64_t ih = oh * d.sh - d.pt + t / d.KW * d.dh, iw = ow * d.sw - d.pl + t % d.KW * d.dw;       \
          off[t] = ih < 0 || ih >= d.H || iw < 0 || iw >= d.W ? -1 : ((b * d.H + ih) * d.W + iw) * d.CI;        \
        }                                                                                                       \
        const int64_t o = (bo * d.OW + ow) * d.CI;                                                              \
        for (int64_t c0 = 0; c0 < d.CI; c0 += W) {                                                              \
          const int n = (int)std::min<int64_t>(W, d.CI - c0);                                                   \
          const typename V::M m = V::mask(n);                                                                   \
          typename V::T best = V::set1(-std::numeric_limits<float>::infinity()), arg = V::set1(-1.f);           \
          for (int64_t t = 0; t < taps; t++) {                                                                  \
            if (off[t] < 0) continue;                                                                           \
            const typename V::T v = V::loadm(x + off[t] + c0, m);                                               \
            arg = V::sel_gt(v, best, V::set1((float)t), arg);                                                   \
            best = V::sel_gt(v, best, v, best);                                                                 \
          }                                                                                                     \
          if (mode == kMaxFwd) {                                                                                \
            V::store(out + o + c0, best, n, false);                                                             \
            continue;                                                                                           \
          }                                                                                                     \
          const typename V::T g = V::loadm(dy + o + c0, m);                                                     \
          for (int64_t t = 0; t < taps; t++)                                                                    \
            if (off[t] >= 0)                                                                                    \
              V::store(out + off[t] + c0, V::sel_eq(arg, V::set1((float)t), g, V::zero()), n, mode == kMaxGradAdd); \
        }                                                                                                       \
      }                                                                                                         \
    }                                                                                                           \
  }
#if defined(__x86_64__)
QK_MAXPOOL(max_pool_rows_zmm, QK_TGT512, Zmm)
QK_MAXPOOL(max_pool_rows_ymm, QK_TGT256, Ymm)
#endif
QK_MAXPOOL(max_pool_rows_scalar, , Scalar)
#undef QK_MAXPOOL

static void max_pool_rows(const Conv2DDims& d, const float* x, const float* dy, float* out, int64_t s, int64_t e,
                          int mode) {
#if defined(__x86_64__)
  if (active_isa() == Isa::Avx512) return max_pool_rows_zmm(d, x, dy, out, s, e, mode);
  if (active_isa() == Isa::Avx2) return max_pool_rows_ymm(d, x, dy, out, s, e, mode);
#endif
  max_pool_rows_scalar(d, x, dy, out, s, e, mode);
}

void max_pool(const Conv2DDims& d, const float* x, float* y) {
  parallel_range(d.B * d.OH, 2, [&](int64_t s, int64_t e) { max_pool_rows(d, x, nullptr, y, s, e, kMaxFwd); });
}

void max_pool_grad(const Conv2DDims& d, const float* dy, const float* x, float* dx) {
  if (d.sh >= (d.KH - 1) * d.dh + 1 && d.sw >= (d.KW - 1) * d.dw + 1) {
    parallel_range(d.B * d.OH, 8, [&](int64_t s, int64_t e) { max_pool_rows(d, x, dy, dx, s, e, kMaxGradOwn); });
    return;
  }
  const int64_t img = d.H * d.W * d.CI;
  parallel_range(d.B, 1, [&](int64_t s, int64_t e) {
    std::memset(dx + s * img, 0, sizeof(float) * (e - s) * img);
    max_pool_rows(d, x, dy, dx, s * d.OH, e * d.OH, kMaxGradAdd);
  });
}

QK_MULTI(void, avg_pool_rows, (const Conv2DDims& d, const float* x, float* y, int64_t s, int64_t e),
         (d, x, y, s, e)) {
  for (int64_t bo = s; bo < e; bo++) {
    const int64_t b = bo / d.OH, oh = bo % d.OH;
    for (int64_t ow = 0; ow < d.OW; ow++) {
      float* yo = y + ((b * d.OH + oh) * d.OW + ow) * d.CI;
      for (int64_t c = 0; c < d.CI; c++) yo[c] = 0.f;
      int64_t count = 0;
      for (int64_t kh = 0; kh < d.KH; kh++) {
        const int64_t ih = oh * d.sh - d.pt + kh * d.dh;
        if (ih < 0 || ih >= d.H) continue;
        for (int64_t kw = 0; kw < d.KW; kw++) {
          const int64_t iw = ow * d.sw - d.pl + kw * d.dw;
          if (iw < 0 || iw >= d.W) continue;
          const float* xi = x + ((b * d.H + ih) * d.W + iw) * d.CI;
          for (int64_t c = 0; c < d.CI; c++) yo[c] += xi[c];
          count++;
        }
      }
      const float inv = count ? 1.f / (float)count : 0.f;
      for (int64_t c = 0; c < d.CI; c++) yo[c] *= inv;
    }
  }
}

void avg_pool(const Conv2DDims& d, const float* x, float* y) {
  parallel_range(d.B * d.OH, 2, [&](int64_t s, int64_t e) { avg_pool_rows(d, x, y, s, e); });
}

// The true gradient of avg_pool above: each window spreads dy / (its count of valid pixels).
// (tfjs's cpu AvgPoolGrad divides by the full window size, which differs at 'same' borders.)
void avg_pool_grad(const Conv2DDims& d, const float* dy, float* dx) {
  std::memset(dx, 0, sizeof(float) * d.B * d.H * d.W * d.CI);
  parallel_range(d.B, 1, [&](int64_t s, int64_t e) {
    for (int64_t b = s; b < e; b++)
      for (int64_t oh = 0; oh < d.OH; oh++)
        for (int64_t ow = 0; ow < d.OW; ow++) {
          int64_t count = 0;
          for (int64_t kh = 0; kh < d.KH; kh++) {
            const int64_t ih = oh * d.sh - d.pt + kh * d.dh;
            if (ih < 0 || ih >= d.H) continue;
            for (int64_t kw = 0; kw < d.KW; kw++) {
              const int64_t iw = ow * d.sw - d.pl + kw * d.dw;
              if (iw >= 0 && iw < d.W) count++;
            }
          }
          if (!count) continue;
          const float inv = 1.f / (float)count;
          const float* g = dy + ((b * d.OH + oh) * d.OW + ow) * d.CI;
          for (int64_t kh = 0; kh < d.KH; kh++) {
            const int64_t ih = oh * d.sh - d.pt + kh * d.dh;
            if (ih < 0 || ih >= d.H) continue;
            for (int64_t kw = 0; kw < d.KW; kw++) {
              const int64_t iw = ow * d.sw - d.pl + kw * d.dw;
              if (iw < 0 || iw >= d.W) continue;
              float* o = dx + ((b * d.H + ih) * d.W + iw) * d.CI;
              for (int64_t c = 0; c < d.CI; c++) o[c] += g[c] * inv;
            }
          }
        }
  });
}

}  // namespace qk
