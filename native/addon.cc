// N-API surface of the qatkit native backend. Every function works in place on
// Float32Arrays owned by JS (tfjs's cpu-backend storage); nothing is copied.
#include <node_api.h>

#include <malloc.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>
#include <string>

#include "gemm.h"
#include "kernels.h"
#include "threadpool.h"
#include "train_ops.h"

extern "C" {
void qk_gemm_u8s8(int M, int N, int K, const uint8_t* A, int lda, int32_t a_zp, const int8_t* B, int ldb,
                  const int32_t* b_zp, const int32_t* bias, int32_t* C, int ldc);
const char* qk_int8_isa();
const char* qk_int8_packed_isa();
void qk_gemm_u8_packed(int m0, int m1, int N, int K, const uint8_t* A, int lda, const int32_t* a_zp, int nzp,
                       const int16_t* Bp, int32_t* C, int ldc, int transC);
int64_t qk_packed_size(int N, int K);
int qk_pack_b(const int16_t* B, int ldb, int N, int K, uint8_t* blob);
void qk_gemm_u8_blob(int m0, int m1, const uint8_t* A, int lda, const int32_t* a_zp, int nzp, const uint8_t* blob,
                     int32_t* C, int ldc, int transC);
void qk_conv_u8_blob(int p0, int p1, const void* x, int x_signed, int32_t x_zp, const int32_t* geo, const uint8_t* blob,
                     int32_t* C, int ldc);
const char* qk_int8_blob_isa();
}
void qk_register_int8_ops(napi_env env, napi_value exports);  // native/int8_ops.cc

namespace {

struct Args {
  napi_env env;
  size_t argc = 16;
  napi_value argv[16];
  Args(napi_env e, napi_callback_info info) : env(e) {
    napi_get_cb_info(e, info, &argc, argv, nullptr, nullptr);
  }
  napi_value at(size_t i) const {
    if (i >= argc) throw std::runtime_error("missing argument " + std::to_string(i));
    return argv[i];
  }
  bool isNull(size_t i) const {
    if (i >= argc) return true;
    napi_valuetype t;
    napi_typeof(env, argv[i], &t);
    return t == napi_null || t == napi_undefined;
  }
  float* f32(size_t i, size_t* len = nullptr) const {
    if (isNull(i)) {
      if (len) *len = 0;
      return nullptr;
    }
    napi_typedarray_type type;
    size_t n;
    void* data;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, at(i), &type, &n, &data, &ab, &off) != napi_ok || type != napi_float32_array)
      throw std::runtime_error("argument " + std::to_string(i) + " must be a Float32Array");
    if (len) *len = n;
    return static_cast<float*>(data);
  }
  // Any typed array: its data, element count and element size in bytes.
  void* raw(size_t i, size_t* len, int* elemSize) const {
    napi_typedarray_type type;
    void* data;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, at(i), &type, len, &data, &ab, &off) != napi_ok)
      throw std::runtime_error("argument " + std::to_string(i) + " must be a typed array");
    switch (type) {
      case napi_int8_array: case napi_uint8_array: case napi_uint8_clamped_array: *elemSize = 1; break;
      case napi_int16_array: case napi_uint16_array: *elemSize = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: *elemSize = 4; break;
      default: *elemSize = 8; break;
    }
    return data;
  }
  uint8_t* u8(size_t i, size_t* len) const {
    if (isNull(i)) {
      *len = 0;
      return nullptr;
    }
    int es;
    void* p = raw(i, len, &es);
    if (es != 1) throw std::runtime_error("argument " + std::to_string(i) + " must be a Uint8Array");
    return static_cast<uint8_t*>(p);
  }
  const int32_t* i32(size_t i, size_t* len) const {
    napi_typedarray_type type;
    void* data;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, at(i), &type, len, &data, &ab, &off) != napi_ok || type != napi_int32_array)
      throw std::runtime_error("argument " + std::to_string(i) + " must be an Int32Array");
    return static_cast<const int32_t*>(data);
  }
  int64_t i64(size_t i) const {
    double v;
    if (napi_get_value_double(env, at(i), &v) != napi_ok)
      throw std::runtime_error("argument " + std::to_string(i) + " must be a number");
    return (int64_t)v;
  }
  double f64(size_t i) const {
    double v;
    if (napi_get_value_double(env, at(i), &v) != napi_ok)
      throw std::runtime_error("argument " + std::to_string(i) + " must be a number");
    return v;
  }
  bool b(size_t i) const {
    bool v;
    if (napi_get_value_bool(env, at(i), &v) != napi_ok) return i64(i) != 0;
    return v;
  }
};

napi_value undef(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

template <class F>
napi_value guard(napi_env env, F&& f) {
  try {
    return f();
  } catch (const std::exception& e) {
    napi_throw_error(env, nullptr, (std::string("qatkit native: ") + e.what()).c_str());
    return nullptr;
  }
}

void need(float* p, size_t have, int64_t want, const char* what) {
  if (!p || (int64_t)have < want) throw std::runtime_error(std::string(what) + ": buffer too small");
}

napi_value Info(napi_env env, napi_callback_info) {
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_string_utf8(env, qk::isa_name(qk::active_isa()), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "isa", v);
  napi_create_string_utf8(env, qk::isa_name(qk::best_isa()), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "bestIsa", v);
  napi_create_int32(env, qk::ThreadPool::get().size(), &v);
  napi_set_named_property(env, o, "threads", v);
  return o;
}

napi_value SetIsa(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    char buf[32] = {0};
    size_t n;
    napi_get_value_string_utf8(env, a.at(0), buf, sizeof buf, &n);
    std::string s(buf);
    qk::set_isa(s == "avx512" ? qk::Isa::Avx512 : s == "avx2" ? qk::Isa::Avx2 : qk::Isa::Generic);
    napi_value v;
    napi_create_string_utf8(env, qk::isa_name(qk::active_isa()), NAPI_AUTO_LENGTH, &v);
    return v;
  });
}

napi_value SetThreads(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    qk::ThreadPool::get().resize((int)a.i64(0));
    return undef(env);
  });
}

// matmul(a, b, c, batch, M, N, K, transA, transB, strideA, strideB)
napi_value MatMul(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t na, nb, nc;
    float *A = a.f32(0, &na), *B = a.f32(1, &nb), *C = a.f32(2, &nc);
    const int64_t batch = a.i64(3), M = a.i64(4), N = a.i64(5), K = a.i64(6);
    const bool ta = a.b(7), tb = a.b(8);
    const int64_t sa = a.i64(9), sb = a.i64(10);
    need(A, na, (batch - 1) * sa + M * K, "matmul a");
    need(B, nb, (batch - 1) * sb + K * N, "matmul b");
    need(C, nc, batch * M * N, "matmul c");
    const int64_t lda = ta ? M : K, ldb = tb ? K : N;
    const bool manySmall = batch > 1 && (double)M * N * K < 128.0 * 128 * 128;
    if (manySmall) {
      qk::parallel_range(batch, 1, [&](int64_t s, int64_t e) {
        for (int64_t i = s; i < e; i++)
          qk::sgemm(ta, tb, M, N, K, A + i * sa, lda, B + i * sb, ldb, C + i * M * N, N, false, true);
      });
    } else {
      for (int64_t i = 0; i < batch; i++)
        qk::sgemm(ta, tb, M, N, K, A + i * sa, lda, B + i * sb, ldb, C + i * M * N, N, false);
    }
    return undef(env);
  });
}

// biasAct(c, M, N, bias|null, act, alpha, prelu|null)
napi_value BiasAct(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nc, nbias, np;
    float* C = a.f32(0, &nc);
    const int64_t M = a.i64(1), N = a.i64(2);
    float* bias = a.f32(3, &nbias);
    const int act = (int)a.i64(4);
    const float alpha = (float)a.f64(5);
    float* prelu = a.f32(6, &np);
    need(C, nc, M * N, "biasAct c");
    if (bias && (int64_t)nbias < N) throw std::runtime_error("biasAct: bias must have N elements");
    if (act == 6 && (!prelu || (np != 1 && (int64_t)np < N))) throw std::runtime_error("biasAct: prelu weights");
    qk::bias_act(C, M, N, bias, act, alpha, prelu, (int64_t)np);
    return undef(env);
  });
}

// conv(op, dims Int32Array[15], in0, in1|null, out)
//   dims: B H W CI OH OW CO KH KW sh sw dh dw pt pl
//   op 0 conv fwd(x,w) 1 conv dx(dy,w) 2 conv dw(x,dy) 3 dw fwd 4 dw dx 5 dw dw
//      6 maxpool(x) 7 maxpool grad(dy,x) 8 avgpool(x) 9 avgpool grad(dy)
napi_value Conv(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    const int op = (int)a.i64(0);
    size_t nd;
    const int32_t* v = a.i32(1, &nd);
    if (nd < 15) throw std::runtime_error("conv: dims must have 15 entries");
    qk::Conv2DDims d{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14]};
    size_t n0, n1, no;
    float *i0 = a.f32(2, &n0), *i1 = a.f32(3, &n1), *o = a.f32(4, &no);
    const int64_t xs = d.B * d.H * d.W * d.CI, ys = d.B * d.OH * d.OW * d.CO, ws = d.KH * d.KW * d.CI * d.CO;
    switch (op) {
      case 0: need(i0, n0, xs, "x"); need(i1, n1, ws, "w"); need(o, no, ys, "y"); qk::conv2d_forward(d, i0, i1, o); break;
      case 1: need(i0, n0, ys, "dy"); need(i1, n1, ws, "w"); need(o, no, xs, "dx"); qk::conv2d_backprop_input(d, i0, i1, o); break;
      case 2: need(i0, n0, xs, "x"); need(i1, n1, ys, "dy"); need(o, no, ws, "dw"); qk::conv2d_backprop_filter(d, i0, i1, o); break;
      case 3: need(i0, n0, xs, "x"); need(i1, n1, d.KH * d.KW * d.CO, "w"); need(o, no, ys, "y"); qk::depthwise_forward(d, i0, i1, o); break;
      case 4: need(i0, n0, ys, "dy"); need(i1, n1, d.KH * d.KW * d.CO, "w"); need(o, no, xs, "dx"); qk::depthwise_backprop_input(d, i0, i1, o); break;
      case 5: need(i0, n0, xs, "x"); need(i1, n1, ys, "dy"); need(o, no, d.KH * d.KW * d.CO, "dw"); qk::depthwise_backprop_filter(d, i0, i1, o); break;
      case 6: need(i0, n0, xs, "x"); need(o, no, ys, "y"); qk::max_pool(d, i0, o); break;
      case 7: need(i0, n0, ys, "dy"); need(i1, n1, xs, "x"); need(o, no, xs, "dx"); qk::max_pool_grad(d, i0, i1, o); break;
      case 8: need(i0, n0, xs, "x"); need(o, no, ys, "y"); qk::avg_pool(d, i0, o); break;
      case 9: need(i0, n0, ys, "dy"); need(o, no, xs, "dx"); qk::avg_pool_grad(d, i0, o); break;
      default: throw std::runtime_error("conv: bad op");
    }
    return undef(env);
  });
}

// binary(op, a, b, out, dims Int32Array[9]: R M C as0 as1 as2 bs0 bs1 bs2)
napi_value Binary(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t na, nb, no, nd;
    const int op = (int)a.i64(0);
    float *A = a.f32(1, &na), *B = a.f32(2, &nb), *O = a.f32(3, &no);
    const int32_t* d = a.i32(4, &nd);
    if (nd < 9) throw std::runtime_error("binary: dims must have 9 entries");
    const int64_t R = d[0], M = d[1], C = d[2];
    const int64_t as[3] = {d[3], d[4], d[5]}, bs[3] = {d[6], d[7], d[8]};
    if (as[2] > 1 || bs[2] > 1) throw std::runtime_error("binary: inner stride must be 0 or 1");
    auto span = [&](const int64_t* s) { return R * M * C == 0 ? 0 : (R - 1) * s[0] + (M - 1) * s[1] + (C - 1) * s[2] + 1; };
    need(A, na, span(as), "binary a");
    need(B, nb, span(bs), "binary b");
    need(O, no, R * M * C, "binary out");
    qk::binary(op, A, as, B, bs, O, R, M, C);
    return undef(env);
  });
}

// unary(op, x, y, alpha)
napi_value Unary(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, ny;
    const int op = (int)a.i64(0);
    float *X = a.f32(1, &nx), *Y = a.f32(2, &ny);
    need(Y, ny, (int64_t)nx, "unary out");
    qk::unary(op, X, Y, (int64_t)nx, (float)a.f64(3));
    return undef(env);
  });
}

// reduce(op, x, out, outer, mid, inner)
napi_value Reduce(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, no;
    const int op = (int)a.i64(0);
    float *X = a.f32(1, &nx), *O = a.f32(2, &no);
    const int64_t outer = a.i64(3), mid = a.i64(4), inner = a.i64(5);
    need(X, nx, outer * mid * inner, "reduce x");
    need(O, no, outer * inner, "reduce out");
    qk::reduce(op, X, O, outer, mid, inner);
    return undef(env);
  });
}

// batchNorm(x, mean, var, offset|null, scale|null, eps, y, C)
napi_value BatchNorm(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, nm, nv, no, ns, ny;
    float *X = a.f32(0, &nx), *Mn = a.f32(1, &nm), *V = a.f32(2, &nv), *Of = a.f32(3, &no), *S = a.f32(4, &ns);
    const float eps = (float)a.f64(5);
    float* Y = a.f32(6, &ny);
    const int64_t C = a.i64(7);
    need(Y, ny, (int64_t)nx, "batchNorm y");
    auto ok = [&](float* p, size_t n) { return !p || n == 1 || (int64_t)n == C; };
    if (!Mn || !V || !ok(Mn, nm) || !ok(V, nv) || !ok(Of, no) || !ok(S, ns) || C <= 0 || nx % C)
      throw std::runtime_error("batchNorm: parameters must have 1 or C elements");
    qk::batch_norm(X, Mn, nm, V, nv, Of, no, S, ns, eps, Y, (int64_t)nx, C);
    return undef(env);
  });
}

// softmax(x, y, R, C)
napi_value Softmax(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, ny;
    float *X = a.f32(0, &nx), *Y = a.f32(1, &ny);
    const int64_t R = a.i64(2), C = a.i64(3);
    need(X, nx, R * C, "softmax x");
    need(Y, ny, R * C, "softmax y");
    qk::softmax(X, Y, R, C);
    return undef(env);
  });
}

// fakeQuant(x, y, scale, zp, nch, inner, qmin, qmax, mn|null, mx|null)
napi_value FakeQuant(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, ny, ns, nz, nmn, nmx;
    float *X = a.f32(0, &nx), *Y = a.f32(1, &ny), *S = a.f32(2, &ns), *Z = a.f32(3, &nz);
    const int64_t nch = a.i64(4), inner = a.i64(5);
    float *Mn = a.f32(8, &nmn), *Mx = a.f32(9, &nmx);
    need(Y, ny, (int64_t)nx, "fakeQuant y");
    need(S, ns, nch, "fakeQuant scale");
    need(Z, nz, nch, "fakeQuant zeroPoint");
    if (Mn) { need(Mn, nmn, nch, "fakeQuant min"); need(Mx, nmx, nch, "fakeQuant max"); }
    if (inner <= 0 || nch <= 0) throw std::runtime_error("fakeQuant: bad channel layout");
    qk::fake_quant(X, Y, (int64_t)nx, S, Z, nch, inner, (float)a.f64(6), (float)a.f64(7), Mn, Mx);
    return undef(env);
  });
}

// fakeQuantGrad(dy, x, dx, scale, zp, nch, inner, qmin, qmax, dscale|null, dzp|null)
napi_value FakeQuantGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t ng, nx, nd, ns, nz, nds, ndz;
    float *G = a.f32(0, &ng), *X = a.f32(1, &nx), *D = a.f32(2, &nd), *S = a.f32(3, &ns), *Z = a.f32(4, &nz);
    const int64_t nch = a.i64(5), inner = a.i64(6);
    float *DS = a.f32(9, &nds), *DZ = a.f32(10, &ndz);
    need(G, ng, (int64_t)nx, "fakeQuantGrad dy");
    need(D, nd, (int64_t)nx, "fakeQuantGrad dx");
    need(S, ns, nch, "fakeQuantGrad scale");
    need(Z, nz, nch, "fakeQuantGrad zeroPoint");
    if (DS) need(DS, nds, nch, "fakeQuantGrad dscale");
    if (DZ) need(DZ, ndz, nch, "fakeQuantGrad dzp");
    if (inner <= 0 || nch <= 0) throw std::runtime_error("fakeQuantGrad: bad channel layout");
    qk::fake_quant_grad(G, X, D, (int64_t)nx, S, Z, nch, inner, (float)a.f64(7), (float)a.f64(8), DS, DZ);
    return undef(env);
  });
}

// minMax(x, nch, inner, mn, mx)
napi_value MinMax(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, nmn, nmx;
    float* X = a.f32(0, &nx);
    const int64_t nch = a.i64(1), inner = a.i64(2);
    float *Mn = a.f32(3, &nmn), *Mx = a.f32(4, &nmx);
    need(Mn, nmn, nch, "minMax min");
    need(Mx, nmx, nch, "minMax max");
    if (inner <= 0 || nch <= 0) throw std::runtime_error("minMax: bad channel layout");
    qk::min_max(X, (int64_t)nx, nch, inner, Mn, Mx);
    return undef(env);
  });
}

// transpose(x, out, shape Int32Array, perm Int32Array): 4-byte elements (float32, int32)
napi_value Transpose(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, no, ns, np;
    int ex, eo;
    void* X = a.raw(0, &nx, &ex);
    void* O = a.raw(1, &no, &eo);
    const int32_t* sh = a.i32(2, &ns);
    const int32_t* pm = a.i32(3, &np);
    if (ex != 4 || eo != 4) throw std::runtime_error("transpose: 4-byte element arrays only");
    if (ns != np || ns > 16) throw std::runtime_error("transpose: shape and perm must match (rank <= 16)");
    int64_t shape[16], total = 1;
    int perm[16];
    bool seen[16] = {false};
    for (size_t i = 0; i < ns; i++) {
      shape[i] = sh[i];
      total *= sh[i];
      perm[i] = pm[i];
      if (pm[i] < 0 || pm[i] >= (int)ns || seen[pm[i]]) throw std::runtime_error("transpose: bad perm");
      seen[pm[i]] = true;
    }
    if ((int64_t)nx < total || (int64_t)no < total) throw std::runtime_error("transpose: buffer too small");
    if (total > 0) qk::transpose((const uint32_t*)X, (uint32_t*)O, shape, perm, (int)ns);
    return undef(env);
  });
}

// compare(op, a, b, out Uint8Array, dims Int32Array[9])
napi_value Compare(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t na, nb, no, nd;
    const int op = (int)a.i64(0);
    float *A = a.f32(1, &na), *B = a.f32(2, &nb);
    uint8_t* O = a.u8(3, &no);
    const int32_t* d = a.i32(4, &nd);
    if (nd < 9) throw std::runtime_error("compare: dims must have 9 entries");
    const int64_t R = d[0], M = d[1], C = d[2];
    const int64_t as[3] = {d[3], d[4], d[5]}, bs[3] = {d[6], d[7], d[8]};
    if (as[2] > 1 || bs[2] > 1) throw std::runtime_error("compare: inner stride must be 0 or 1");
    auto span = [&](const int64_t* s) { return (R - 1) * s[0] + (M - 1) * s[1] + (C - 1) * s[2] + 1; };
    need(A, na, span(as), "compare a");
    need(B, nb, span(bs), "compare b");
    if (!O || (int64_t)no < R * M * C) throw std::runtime_error("compare out: buffer too small");
    qk::compare(op, A, as, B, bs, O, R, M, C);
    return undef(env);
  });
}

// logical(op, a, b|null, out): 0 and, 1 or, 2 not
napi_value Logical(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t na, nb, no;
    const int op = (int)a.i64(0);
    uint8_t *A = a.u8(1, &na), *B = a.u8(2, &nb), *O = a.u8(3, &no);
    if (!A || !O || no < na || (op != 2 && (!B || nb < na))) throw std::runtime_error("logical: buffer too small");
    qk::logical(op, A, B, O, (int64_t)na);
    return undef(env);
  });
}

// select(cond Uint8Array, t, e, out)
napi_value Select(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nc, nt, ne, no;
    uint8_t* Cn = a.u8(0, &nc);
    float *T = a.f32(1, &nt), *E = a.f32(2, &ne), *O = a.f32(3, &no);
    if (!Cn || nc < nt || ne < nt) throw std::runtime_error("select: sizes differ");
    need(O, no, (int64_t)nt, "select out");
    qk::select(Cn, T, E, O, (int64_t)nt);
    return undef(env);
  });
}

// clip(x, y, lo, hi)
napi_value Clip(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, ny;
    float *X = a.f32(0, &nx), *Y = a.f32(1, &ny);
    need(Y, ny, (int64_t)nx, "clip out");
    qk::clip(X, Y, (int64_t)nx, (float)a.f64(2), (float)a.f64(3));
    return undef(env);
  });
}

// batchNormTrain(x, C, scale|null, offset|null, eps, y, mean, var, invstd)
napi_value BatchNormTrain(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, ns, no, ny, nm, nv, ni;
    float* X = a.f32(0, &nx);
    const int64_t C = a.i64(1);
    float *S = a.f32(2, &ns), *Of = a.f32(3, &no);
    const float eps = (float)a.f64(4);
    float *Y = a.f32(5, &ny), *Mn = a.f32(6, &nm), *V = a.f32(7, &nv), *I = a.f32(8, &ni);
    if (C <= 0 || nx % C || nx == 0) throw std::runtime_error("batchNormTrain: x size must be a non-zero multiple of C");
    if ((S && (int64_t)ns < C) || (Of && (int64_t)no < C)) throw std::runtime_error("batchNormTrain: scale/offset need C values");
    if (Y) need(Y, ny, (int64_t)nx, "batchNormTrain y");
    need(Mn, nm, C, "mean");
    need(V, nv, C, "var");
    need(I, ni, C, "invstd");
    qk::batch_norm_train(X, (int64_t)nx / C, C, S, Of, eps, Y, Mn, V, I);
    return undef(env);
  });
}

// channelAffine(x, mul, add, y, C, relu): relu(y) when relu is true
napi_value ChannelAffine(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, nm, na, ny;
    float *X = a.f32(0, &nx), *Mu = a.f32(1, &nm), *Ad = a.f32(2, &na), *Y = a.f32(3, &ny);
    const int64_t C = a.i64(4);
    if (C <= 0 || nx % C) throw std::runtime_error("channelAffine: x size must be a multiple of C");
    need(Mu, nm, C, "mul");
    need(Ad, na, C, "add");
    need(Y, ny, (int64_t)nx, "y");
    qk::channel_affine(X, Mu, Ad, Y, (int64_t)nx / C, C, a.b(5));
    return undef(env);
  });
}

// batchNormTrainGrad(dy, x, C, mean, invstd, scale|null, dx, dscale, doffset, ry|null): ry = relu(y) of a fused Relu
napi_value BatchNormTrainGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t ng, nx, nm, ni, ns, nd, nds, ndo, nr;
    float *G = a.f32(0, &ng), *X = a.f32(1, &nx);
    const int64_t C = a.i64(2);
    float *Mn = a.f32(3, &nm), *I = a.f32(4, &ni), *S = a.f32(5, &ns), *D = a.f32(6, &nd), *DS = a.f32(7, &nds),
          *DO = a.f32(8, &ndo), *RY = a.f32(9, &nr);
    if (C <= 0 || nx % C || nx == 0) throw std::runtime_error("batchNormTrainGrad: x size must be a non-zero multiple of C");
    need(G, ng, (int64_t)nx, "dy");
    need(D, nd, (int64_t)nx, "dx");
    need(Mn, nm, C, "mean");
    need(I, ni, C, "invstd");
    if (S && (int64_t)ns < C) throw std::runtime_error("batchNormTrainGrad: scale needs C values");
    need(DS, nds, C, "dscale");
    need(DO, ndo, C, "doffset");
    if (RY) need(RY, nr, (int64_t)nx, "ry");
    qk::batch_norm_train_grad(G, RY, X, (int64_t)nx / C, C, Mn, I, S, D, DS, DO);
    return undef(env);
  });
}

// ---- integer engine (src/int): int8 GEMM (native/int8_gemm.cc) --------------------------------------------------

template <class T>
T* typed(const Args& a, size_t i, napi_typedarray_type want, size_t* len, const char* what) {
  napi_typedarray_type type;
  void* data;
  napi_value ab;
  size_t off;
  if (napi_get_typedarray_info(a.env, a.at(i), &type, len, &data, &ab, &off) != napi_ok || type != want)
    throw std::runtime_error(std::string("argument ") + std::to_string(i) + " must be " + what);
  return static_cast<T*>(data);
}

void needLen(size_t have, int64_t want, const char* what) {
  if (want < 0 || (int64_t)have < want) throw std::runtime_error(std::string(what) + ": buffer too small");
}

// A blob from int8PackB for an N x K operand, on this CPU's layout.
void checkBlob(const uint8_t* blob, size_t len, int64_t N, int64_t K) {
  if (len < 64) throw std::runtime_error("packed B: too short");
  const int32_t* h = reinterpret_cast<const int32_t*>(blob);
  if (h[1] != N || h[2] != K) throw std::runtime_error("packed B: packed for another N x K");
  if ((int64_t)len < qk_packed_size(int(N), int(K))) throw std::runtime_error("packed B: too short");
}

// Rows per task: about 64k multiply-adds, whole 6-row blocks.
int64_t rowGrain(int64_t N, int64_t K) {
  int64_t g = 65536 / std::max<int64_t>(1, N * K);
  g = std::max<int64_t>(6, (g + 5) / 6 * 6);
  return g;
}

// int8Gemm(A: Uint8Array [M, K], aZp, B: Int8Array [N, K], bZp: Int32Array [N] | null, bias: Int32Array [N] | null,
//          M, N, K, C: Int32Array [M, N]): C = (A - aZp)(B - bZp)^T + bias, split over the thread pool by rows of A.
napi_value Int8Gemm(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t la, lb, lz = 0, lbias = 0, lc;
    const uint8_t* A = typed<uint8_t>(a, 0, napi_uint8_array, &la, "a Uint8Array");
    const int32_t azp = (int32_t)a.i64(1);
    const int8_t* B = typed<int8_t>(a, 2, napi_int8_array, &lb, "an Int8Array");
    const int32_t* bzp = a.isNull(3) ? nullptr : a.i32(3, &lz);
    const int32_t* bias = a.isNull(4) ? nullptr : a.i32(4, &lbias);
    const int64_t M = a.i64(5), N = a.i64(6), K = a.i64(7);
    int32_t* C = typed<int32_t>(a, 8, napi_int32_array, &lc, "an Int32Array");
    needLen(la, M * K, "A"); needLen(lb, N * K, "B"); needLen(lc, M * N, "C");
    if (bzp) needLen(lz, N, "bZp");
    if (bias) needLen(lbias, N, "bias");
    qk::parallel_range(M, rowGrain(N, K), [&](int64_t m0, int64_t m1) {
      qk_gemm_u8s8(int(m1 - m0), int(N), int(K), A + m0 * K, int(K), azp, B, int(K), bzp, bias, C + m0 * N, int(N));
    });
    return undef(env);
  });
}

// int8GemmPacked(A: Uint8Array [M, lda], lda, aZp: number | Int32Array [1 | M], Bp: Uint8Array (from int8PackB), M, N, K,
//                C: Int32Array, ldc, transC): C[m, n] (or C[n, m] when transC) = sum_k (A[m, k] - aZp) * B[n, k].
napi_value Int8GemmPacked(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t la, lz, lb, lc;
    const uint8_t* A = typed<uint8_t>(a, 0, napi_uint8_array, &la, "a Uint8Array");
    const int64_t lda = a.i64(1);
    napi_valuetype zt;
    napi_typeof(env, a.at(2), &zt);
    int32_t zp1 = 0;
    const int32_t* azp;
    if (zt == napi_number) {  // one zero point for every row
      zp1 = (int32_t)a.i64(2);
      azp = &zp1;
      lz = 1;
    } else {
      azp = a.i32(2, &lz);
    }
    const uint8_t* Bp = typed<uint8_t>(a, 3, napi_uint8_array, &lb, "a Uint8Array (int8PackB)");
    const int64_t M = a.i64(4), N = a.i64(5), K = a.i64(6);
    checkBlob(Bp, lb, N, K);
    int32_t* C = typed<int32_t>(a, 7, napi_int32_array, &lc, "an Int32Array");
    const int64_t ldc = a.i64(8);
    const bool transC = a.b(9);
    if (M <= 0 || N <= 0) return undef(env);
    if (lz != 1) needLen(lz, M, "aZp");
    needLen(la, (M - 1) * lda + K, "A");
    needLen(lc, transC ? (N - 1) * ldc + M : (M - 1) * ldc + N, "C");
    if ((transC ? M : N) > ldc) throw std::runtime_error("ldc too small");
    qk::parallel_range(M, rowGrain(N, K), [&](int64_t m0, int64_t m1) {
      qk_gemm_u8_blob(int(m0), int(m1), A, int(lda), azp, int(lz), Bp, C, int(ldc), transC ? 1 : 0);
    });
    return undef(env);
  });
}

// int8ConvPacked(x: Uint8Array | Int8Array [Cg, IH, IW], xZp (int8 x: + 128), geo: Int32Array [Cg, IH, IW, KH, KW,
//                SH, SW, PH, PW, DH, DW, OH, OW], Bp: Uint8Array (int8PackB of [OC, Cg*KH*KW]), OC, C: Int32Array, ldc):
// C[oc * ldc + p] = the zero-point-shifted 2-D convolution of one image (one group), output positions p = oh * OW + ow.
napi_value Int8ConvPacked(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    napi_typedarray_type type;
    size_t lx, lg, lb, lc;
    void* x;
    napi_value ab;
    size_t off;
    if (napi_get_typedarray_info(env, a.at(0), &type, &lx, &x, &ab, &off) != napi_ok ||
        (type != napi_uint8_array && type != napi_int8_array))
      throw std::runtime_error("argument 0 must be a Uint8Array or an Int8Array");
    const int32_t xzp = (int32_t)a.i64(1);
    const int32_t* geo = a.i32(2, &lg);
    if (lg < 13) throw std::runtime_error("geo needs 13 values");
    const uint8_t* Bp = typed<uint8_t>(a, 3, napi_uint8_array, &lb, "a Uint8Array (int8PackB)");
    const int64_t OC = a.i64(4);
    int32_t* C = typed<int32_t>(a, 5, napi_int32_array, &lc, "an Int32Array");
    const int64_t ldc = a.i64(6);
    for (int i = 0; i < 13; i++)
      if (geo[i] < (i >= 7 && i <= 8 ? 0 : 1)) throw std::runtime_error("bad conv geometry");
    const int64_t Cg = geo[0], IH = geo[1], IW = geo[2], KH = geo[3], KW = geo[4], OH = geo[11], OW = geo[12];
    const int64_t K = Cg * KH * KW, P = OH * OW;
    needLen(lx, Cg * IH * IW, "x");
    checkBlob(Bp, lb, OC, K);
    if (ldc < P) throw std::runtime_error("ldc too small");
    needLen(lc, (OC - 1) * ldc + P, "C");
    const int sgn = type == napi_int8_array ? 1 : 0;
    qk::parallel_range(P, rowGrain(OC, K), [&](int64_t p0, int64_t p1) {
      qk_conv_u8_blob(int(p0), int(p1), x, sgn, xzp, geo, Bp, C, int(ldc));
    });
    return undef(env);
  });
}

// int8PackedSize(N, K): bytes int8PackB needs.
napi_value Int8PackedSize(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    napi_value v;
    napi_create_double(env, (double)qk_packed_size((int)a.i64(0), (int)a.i64(1)), &v);
    return v;
  });
}

// int8PackB(B: Int16Array (zero-point-shifted rows), ldb, N, K, out: Uint8Array [int8PackedSize(N, K)]).
napi_value Int8PackB(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t lb, lo;
    const int16_t* B = typed<int16_t>(a, 0, napi_int16_array, &lb, "an Int16Array");
    const int64_t ldb = a.i64(1), N = a.i64(2), K = a.i64(3);
    uint8_t* out = typed<uint8_t>(a, 4, napi_uint8_array, &lo, "a Uint8Array");
    if (N < 1 || K < 0 || ldb < K) throw std::runtime_error("bad N, K or ldb");
    needLen(lb, (N - 1) * ldb + K, "B");
    needLen(lo, qk_packed_size(int(N), int(K)), "out");
    if (qk_pack_b(B, int(ldb), int(N), int(K), out) != 0) throw std::runtime_error("B has a column spanning more than 256 values");
    return undef(env);
  });
}

napi_value Int8Info(napi_env env, napi_callback_info) {
  napi_value o, v;
  napi_create_object(env, &o);
  napi_create_string_utf8(env, qk_int8_isa(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "isa", v);
  napi_create_string_utf8(env, qk_int8_blob_isa(), NAPI_AUTO_LENGTH, &v);
  napi_set_named_property(env, o, "packedIsa", v);
  return o;
}

// sgdStep(p, g, buf|null, pOut, bufOut|null, lr, wd, mu, nesterov): one SGD update (train_ops.h).
napi_value SgdStep(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t np, ng, nb, npo, nbo;
    float *P = a.f32(0, &np), *G = a.f32(1, &ng), *B = a.f32(2, &nb), *PO = a.f32(3, &npo), *BO = a.f32(4, &nbo);
    const float mu = (float)a.f64(7);
    need(G, ng, (int64_t)np, "sgdStep g");
    need(PO, npo, (int64_t)np, "sgdStep pOut");
    if (mu != 0.f) { need(B, nb, (int64_t)np, "sgdStep buf"); need(BO, nbo, (int64_t)np, "sgdStep bufOut"); }
    qk::sgd_step(P, G, B, PO, BO, (int64_t)np, (float)a.f64(5), (float)a.f64(6), mu, a.b(8));
    return undef(env);
  });
}

// adamStep(p, g, m, v, pOut, mOut, vOut, decay, wd, 1-b1, b2, 1-b2, bc2Sqrt, eps, stepSize): one Adam update.
napi_value AdamStep(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t n[7];
    float* t[7];
    for (int i = 0; i < 7; i++) t[i] = a.f32(i, &n[i]);
    for (int i = 1; i < 7; i++) need(t[i], n[i], (int64_t)n[0], "adamStep buffer");
    const qk::AdamScalars s{(float)a.f64(7), (float)a.f64(8), (float)a.f64(9), (float)a.f64(10),
                            (float)a.f64(11), (float)a.f64(12), (float)a.f64(13), (float)a.f64(14)};
    qk::adam_step(t[0], t[1], t[2], t[3], t[4], t[5], t[6], (int64_t)n[0], s);
    return undef(env);
  });
}

// channelDiv(x, s, y, C): y = x / s per channel of the last axis (train_ops.h).
napi_value ChannelDiv(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, ns, ny;
    float *X = a.f32(0, &nx), *S = a.f32(1, &ns), *Y = a.f32(2, &ny);
    const int64_t C = a.i64(3);
    if (C <= 0 || nx % C != 0) throw std::runtime_error("channelDiv: bad channel count");
    need(S, ns, C, "channelDiv s");
    need(Y, ny, (int64_t)nx, "channelDiv y");
    qk::channel_div(X, S, Y, (int64_t)nx / C, C);
    return undef(env);
  });
}

// channelDivGrad(dy, x, s, dx, ds, C): channelDiv's backward (train_ops.h).
napi_value ChannelDivGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t ng, nx, ns, nd, nds;
    float *G = a.f32(0, &ng), *X = a.f32(1, &nx), *S = a.f32(2, &ns), *D = a.f32(3, &nd), *DS = a.f32(4, &nds);
    const int64_t C = a.i64(5);
    if (C <= 0 || nx % C != 0) throw std::runtime_error("channelDivGrad: bad channel count");
    need(G, ng, (int64_t)nx, "channelDivGrad dy");
    need(S, ns, C, "channelDivGrad s");
    need(D, nd, (int64_t)nx, "channelDivGrad dx");
    need(DS, nds, C, "channelDivGrad ds");
    qk::channel_div_grad(G, X, S, D, DS, (int64_t)nx / C, C);
    return undef(env);
  });
}

// reluGrad(dy, x, dx): tfjs's Relu gradient in one pass (train_ops.h).
napi_value ReluGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t ng, nx, nd;
    float *G = a.f32(0, &ng), *X = a.f32(1, &nx), *D = a.f32(2, &nd);
    need(G, ng, (int64_t)nx, "reluGrad dy");
    need(D, nd, (int64_t)nx, "reluGrad dx");
    qk::relu_grad(G, X, D, (int64_t)nx);
    return undef(env);
  });
}

// addRelu(a, b, y): y = relu(a + b) in one pass (train_ops.h).
napi_value AddRelu(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t na, nb, ny;
    float *A = a.f32(0, &na), *B = a.f32(1, &nb), *Y = a.f32(2, &ny);
    need(B, nb, (int64_t)na, "addRelu b");
    need(Y, ny, (int64_t)na, "addRelu y");
    qk::add_relu(A, B, Y, (int64_t)na);
    return undef(env);
  });
}

// foldWeight(w, s, y): y[o, k] = w[o, k] * s[o], O = s.length (train_ops.h).
napi_value FoldWeight(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nw, ns, ny;
    float *W = a.f32(0, &nw), *S = a.f32(1, &ns), *Y = a.f32(2, &ny);
    need(Y, ny, (int64_t)nw, "foldWeight y");
    if (ns == 0 || nw % ns) throw std::runtime_error("foldWeight: w's size is not a multiple of s's");
    qk::fold_weight(W, S, Y, (int64_t)ns, (int64_t)(nw / ns));
    return undef(env);
  });
}

// foldWeightGrad(dy, w, s, dw, ds): its backward (train_ops.h).
napi_value FoldWeightGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t ng, nw, ns, nd, nds;
    float *G = a.f32(0, &ng), *W = a.f32(1, &nw), *S = a.f32(2, &ns), *D = a.f32(3, &nd), *DS = a.f32(4, &nds);
    need(G, ng, (int64_t)nw, "foldWeightGrad dy");
    need(D, nd, (int64_t)nw, "foldWeightGrad dw");
    need(DS, nds, (int64_t)ns, "foldWeightGrad ds");
    if (ns == 0 || nw % ns) throw std::runtime_error("foldWeightGrad: w's size is not a multiple of s's");
    qk::fold_weight_grad(G, W, S, D, DS, (int64_t)ns, (int64_t)(nw / ns));
    return undef(env);
  });
}

// reluFakeQuant(x, y, scale, zp, nch, inner, qmin, qmax): fake quantization of relu(x) (train_ops.h).
napi_value ReluFakeQuant(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t nx, ny, ns, nz;
    float *X = a.f32(0, &nx), *Y = a.f32(1, &ny), *S = a.f32(2, &ns), *Z = a.f32(3, &nz);
    const int64_t nch = a.i64(4), inner = a.i64(5);
    need(Y, ny, (int64_t)nx, "reluFakeQuant y");
    need(S, ns, nch, "reluFakeQuant scale");
    need(Z, nz, nch, "reluFakeQuant zeroPoint");
    if (inner <= 0 || nch <= 0) throw std::runtime_error("reluFakeQuant: bad channel layout");
    qk::relu_fake_quant(X, Y, (int64_t)nx, S, Z, nch, inner, (float)a.f64(6), (float)a.f64(7));
    return undef(env);
  });
}

// fakeQuantSteGrad(dy, x, dx, scale, zp, nch, inner, qmin, qmax, relu): straight-through fake-quant backward
// (train_ops.h).
napi_value FakeQuantSteGrad(napi_env env, napi_callback_info info) {
  Args a(env, info);
  return guard(env, [&] {
    size_t ng, nx, nd, ns, nz;
    float *G = a.f32(0, &ng), *X = a.f32(1, &nx), *D = a.f32(2, &nd), *S = a.f32(3, &ns), *Z = a.f32(4, &nz);
    const int64_t nch = a.i64(5), inner = a.i64(6);
    need(G, ng, (int64_t)nx, "fakeQuantSteGrad dy");
    need(D, nd, (int64_t)nx, "fakeQuantSteGrad dx");
    need(S, ns, nch, "fakeQuantSteGrad scale");
    need(Z, nz, nch, "fakeQuantSteGrad zeroPoint");
    if (inner <= 0 || nch <= 0) throw std::runtime_error("fakeQuantSteGrad: bad channel layout");
    qk::fake_quant_ste_grad(G, X, D, (int64_t)nx, S, Z, nch, inner, (float)a.f64(7), (float)a.f64(8), a.b(9));
    return undef(env);
  });
}

napi_value Init(napi_env env, napi_value exports) {
#if defined(__GLIBC__)
  // Every kernel output is a fresh Float32Array. glibc serves large blocks with mmap, so each
  // output would page-fault on first write (for a 2 MB tensor, ~10x the cost of a simple
  // element-wise kernel). Serve them from the heap instead and keep freed memory for reuse.
  mallopt(M_MMAP_THRESHOLD, 512 << 20);
  mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
  const napi_property_descriptor props[] = {
      {"info", nullptr, Info, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setIsa", nullptr, SetIsa, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"setThreads", nullptr, SetThreads, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"matmul", nullptr, MatMul, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"biasAct", nullptr, BiasAct, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"conv", nullptr, Conv, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"binary", nullptr, Binary, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"unary", nullptr, Unary, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"reduce", nullptr, Reduce, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"batchNorm", nullptr, BatchNorm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"softmax", nullptr, Softmax, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"fakeQuant", nullptr, FakeQuant, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"fakeQuantGrad", nullptr, FakeQuantGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"minMax", nullptr, MinMax, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"transpose", nullptr, Transpose, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"compare", nullptr, Compare, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"logical", nullptr, Logical, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"select", nullptr, Select, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"clip", nullptr, Clip, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"batchNormTrain", nullptr, BatchNormTrain, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"channelAffine", nullptr, ChannelAffine, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"batchNormTrainGrad", nullptr, BatchNormTrainGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8Gemm", nullptr, Int8Gemm, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8GemmPacked", nullptr, Int8GemmPacked, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8ConvPacked", nullptr, Int8ConvPacked, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8PackedSize", nullptr, Int8PackedSize, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8PackB", nullptr, Int8PackB, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"int8Info", nullptr, Int8Info, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"sgdStep", nullptr, SgdStep, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"adamStep", nullptr, AdamStep, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"channelDiv", nullptr, ChannelDiv, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"channelDivGrad", nullptr, ChannelDivGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"reluGrad", nullptr, ReluGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"addRelu", nullptr, AddRelu, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"foldWeight", nullptr, FoldWeight, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"foldWeightGrad", nullptr, FoldWeightGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"fakeQuantSteGrad", nullptr, FakeQuantSteGrad, nullptr, nullptr, nullptr, napi_default, nullptr},
      {"reluFakeQuant", nullptr, ReluFakeQuant, nullptr, nullptr, nullptr, napi_default, nullptr},
  };
  napi_define_properties(env, exports, sizeof(props) / sizeof(props[0]), props);
  qk_register_int8_ops(env, exports);
  return exports;
}

}  // namespace

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
