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
  void rows(int64_t i0, int mr, int64_t k, const float** out) const override {
    const int64_t M = d.B * d.OH * d.OW;
    int64_t kh, kw, ci;
    if (wide) {
      kh = k / (d.KW * d.CI);
      ci = k % (d.KW * d.CI);  // offset within the kernel row
      kw = 0;
    } else {
      int64_t t = k / d.CI;
      ci = k % d.CI;
      kh = t / d.KW;
      kw = t % d.KW;
    }
    int64_t i = std::min(i0, M - 1);
    int64_t ow = i % d.OW, oh = (i / d.OW) % d.OH, b = i / (d.OW * d.OH);
    for (int r = 0; r < mr; r++) {
      const int64_t ih = oh * d.sh - d.pt + kh * d.dh + offH;
      const int64_t iw = ow * d.sw - d.pl + kw * d.dw + offW;
      if (ih >= 0 && ih < Hs && iw >= 0 && iw < Ws)
        out[r] = x + ((b * Hs + ih) * Ws + iw) * d.CI + ci;
      else
        out[r] = zeros + ci;
      if (++ow == d.OW) {
        ow = 0;
        if (++oh == d.OH) {
          oh = 0;
          ++b;
        }
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
  void rows(int64_t i0, int mr, int64_t k, const float** out) const override {
    const int64_t M = d.KH * d.KW * d.CI;
    const int64_t ow = k % d.OW, oh = (k / d.OW) % d.OH, b = k / (d.OW * d.OH);
    const float* base = xp + ((b * Hp + oh * d.sh) * Wp + ow * d.sw) * d.CI;
    int64_t i = std::min(i0, M - 1);
    int64_t ci = i % d.CI, t = i / d.CI;
    for (int r = 0; r < mr; r++) {
      const int64_t kh = t / d.KW, kw = t % d.KW;
      out[r] = base + (kh * d.dh * Wp + kw * d.dw) * d.CI + ci;
      if (++ci == d.CI) {
        ci = 0;
        ++t;
      }
    }
  }
};

// Copies x into a zero-padded buffer in which every window of the conv lies inside;
// returns x itself when no padding is needed.
static const float* padded_input(const Conv2DDims& d, const float* x, std::vector<float>& buf, int64_t& Hp,
                                 int64_t& Wp) {
  Hp = std::max<int64_t>((d.OH - 1) * d.sh + (d.KH - 1) * d.dh + 1, 1);
  Wp = std::max<int64_t>((d.OW - 1) * d.sw + (d.KW - 1) * d.dw + 1, 1);
  if (d.pt == 0 && d.pl == 0 && Hp <= d.H && Wp <= d.W) {
    Hp = d.H;
    Wp = d.W;
    return x;
  }
  buf.assign((size_t)(d.B * Hp * Wp * d.CI), 0.f);
  float* xp = buf.data();
  parallel_range(d.B * Hp, 16, [&](int64_t s, int64_t e) {
    for (int64_t bh = s; bh < e; bh++) {
      const int64_t b = bh / Hp, hp = bh % Hp, ih = hp - d.pt;
      if (ih < 0 || ih >= d.H) continue;
      const int64_t w0 = std::max<int64_t>(0, d.pl), iw0 = w0 - d.pl;
      const int64_t cnt = std::min(Wp - w0, d.W - iw0);
      if (cnt > 0)
        std::memcpy(xp + ((b * Hp + hp) * Wp + w0) * d.CI, x + ((b * d.H + ih) * d.W + iw0) * d.CI,
                    sizeof(float) * cnt * d.CI);
    }
  });
  return xp;
}

}  // namespace

void conv2d_forward(const Conv2DDims& d, const float* x, const float* w, float* y) {
  const int64_t M = d.B * d.OH * d.OW, K = d.KH * d.KW * d.CI;
  // Does every window lie inside the input?
  const bool inside = d.pt <= 0 && d.pl <= 0 && (d.OH - 1) * d.sh - d.pt + (d.KH - 1) * d.dh < d.H &&
                      (d.OW - 1) * d.sw - d.pl + (d.KW - 1) * d.dw < d.W;
  std::vector<float> zeros(d.CI, 0.f);
  DenseB bw(w, d.CO, false);
  if (inside && d.dw == 1) {
    ConvA a(d, x, d.H, d.W, 0, 0, true, zeros.data());
    gemm(M, d.CO, K, a, bw, y, d.CO, false);
  } else if (d.dw == 1 && d.CI < 32) {
    // Few channels: per-tap runs would be short, so copy into a zero-padded input once.
    std::vector<float> buf;
    int64_t Hp, Wp;
    const float* xp = padded_input(d, x, buf, Hp, Wp);
    ConvA a(d, xp, Hp, Wp, d.pt, d.pl, true, zeros.data());
    gemm(M, d.CO, K, a, bw, y, d.CO, false);
  } else {
    ConvA a(d, x, d.H, d.W, 0, 0, false, zeros.data());
    gemm(M, d.CO, K, a, bw, y, d.CO, false);
  }
}

void conv2d_backprop_input(const Conv2DDims& d, const float* dy, const float* w, float* dx) {
  const int64_t K = d.KH * d.KW * d.CI;
  if (d.sh == 1 && d.sw == 1) {
    // Stride 1: dx is the correlation of dy with the flipped, transposed filter.
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
  // Strided: col[m, (kh,kw,ci)] = dy[m, :] . w[(kh,kw,ci), :], then gather col into dx.
  const int64_t P = d.OH * d.OW;
  const int64_t imgs = std::max<int64_t>(1, std::min<int64_t>(d.B, (int64_t)(16 << 20) / std::max<int64_t>(1, P * K)));
  std::vector<float> col((size_t)(imgs * P * K));
  for (int64_t b0 = 0; b0 < d.B; b0 += imgs) {
    const int64_t nb = std::min(imgs, d.B - b0);
    sgemm(false, true, nb * P, K, d.CO, dy + b0 * P * d.CO, d.CO, w, d.CO, col.data(), K, false);
    parallel_range(nb * d.H, 4, [&](int64_t s, int64_t e) {
      for (int64_t bh = s; bh < e; bh++) {
        const int64_t bl = bh / d.H, h = bh % d.H;
        float* o = dx + ((b0 + bl) * d.H + h) * d.W * d.CI;
        std::memset(o, 0, sizeof(float) * d.W * d.CI);
        for (int64_t kh = 0; kh < d.KH; kh++) {
          const int64_t th = h + d.pt - kh * d.dh;
          if (th < 0 || th % d.sh) continue;
          const int64_t oh = th / d.sh;
          if (oh >= d.OH) continue;
          for (int64_t w_ = 0; w_ < d.W; w_++) {
            float* ow_ = o + w_ * d.CI;
            for (int64_t kw = 0; kw < d.KW; kw++) {
              const int64_t tw = w_ + d.pl - kw * d.dw;
              if (tw < 0 || tw % d.sw) continue;
              const int64_t owi = tw / d.sw;
              if (owi >= d.OW) continue;
              const float* src = col.data() + ((bl * d.OH + oh) * d.OW + owi) * K + (kh * d.KW + kw) * d.CI;
              for (int64_t ci = 0; ci < d.CI; ci++) ow_[ci] += src[ci];
            }
          }
        }
      }
    });
  }
}

void conv2d_backprop_filter(const Conv2DDims& d, const float* x, const float* dy, float* dw) {
  // dw[(kh,kw,ci), co] = sum over output pixels of im2col(x)^T * dy: A read in place from a
  // padded copy of x, B = dy (rows = pixels) packed.
  const int64_t M = d.KH * d.KW * d.CI, P = d.B * d.OH * d.OW;
  std::vector<float> buf;
  int64_t Hp, Wp;
  const float* xp = padded_input(d, x, buf, Hp, Wp);
  Im2colTA a(d, xp, Hp, Wp);
  DenseB b(dy, d.CO, false);
  gemm(M, d.CO, P, a, b, dw, d.CO, false);
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
QK_MULTI(void, max_pool_rows, (const Conv2DDims& d, const float* x, float* y, int64_t s, int64_t e),
         (d, x, y, s, e)) {
  const float ninf = -std::numeric_limits<float>::infinity();
  for (int64_t bo = s; bo < e; bo++) {
    const int64_t b = bo / d.OH, oh = bo % d.OH;
    for (int64_t ow = 0; ow < d.OW; ow++) {
      float* yo = y + ((b * d.OH + oh) * d.OW + ow) * d.CI;
      for (int64_t c = 0; c < d.CI; c++) yo[c] = ninf;
      for (int64_t kh = 0; kh < d.KH; kh++) {
        const int64_t ih = oh * d.sh - d.pt + kh * d.dh;
        if (ih < 0 || ih >= d.H) continue;
        for (int64_t kw = 0; kw < d.KW; kw++) {
          const int64_t iw = ow * d.sw - d.pl + kw * d.dw;
          if (iw < 0 || iw >= d.W) continue;
          const float* xi = x + ((b * d.H + ih) * d.W + iw) * d.CI;
          for (int64_t c = 0; c < d.CI; c++) yo[c] = xi[c] > yo[c] ? xi[c] : yo[c];
        }
      }
    }
  }
}

void max_pool(const Conv2DDims& d, const float* x, float* y) {
  parallel_range(d.B * d.OH, 2, [&](int64_t s, int64_t e) { max_pool_rows(d, x, y, s, e); });
}

// dx gets each dy at the first maximum of its window in scan order (as tfjs's cpu backend).
void max_pool_grad(const Conv2DDims& d, const float* dy, const float* x, float* dx) {
  std::memset(dx, 0, sizeof(float) * d.B * d.H * d.W * d.CI);
  parallel_range(d.B, 1, [&](int64_t s, int64_t e) {
    std::vector<float> best(d.CI);
    std::vector<int64_t> pos(d.CI);
    for (int64_t b = s; b < e; b++) {
      for (int64_t oh = 0; oh < d.OH; oh++)
        for (int64_t ow = 0; ow < d.OW; ow++) {
          for (int64_t c = 0; c < d.CI; c++) {
            best[c] = -std::numeric_limits<float>::infinity();
            pos[c] = -1;
          }
          for (int64_t kh = 0; kh < d.KH; kh++) {
            const int64_t ih = oh * d.sh - d.pt + kh * d.dh;
            if (ih < 0 || ih >= d.H) continue;
            for (int64_t kw = 0; kw < d.KW; kw++) {
              const int64_t iw = ow * d.sw - d.pl + kw * d.dw;
              if (iw < 0 || iw >= d.W) continue;
              const int64_t p = ((b * d.H + ih) * d.W + iw) * d.CI;
              const float* xi = x + p;
              for (int64_t c = 0; c < d.CI; c++)
                if (xi[c] > best[c]) {
                  best[c] = xi[c];
                  pos[c] = p + c;
                }
            }
          }
          const float* g = dy + ((b * d.OH + oh) * d.OW + ow) * d.CI;
          for (int64_t c = 0; c < d.CI; c++)
            if (pos[c] >= 0) dx[pos[c]] += g[c];
        }
    }
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
