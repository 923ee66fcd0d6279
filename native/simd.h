// Function multiversioning for plain loops: QK_MULTI defines one body and compiles it
// three times (AVX-512, AVX2+FMA, portable); the body is force-inlined into each
// target-attributed wrapper so the compiler vectorizes it for that ISA. The call
// dispatches on the ISA chosen at run time (gemm.h: active_isa()).
#pragma once
#include "gemm.h"

#if defined(__x86_64__)
#define QK_TARGET_AVX512 __attribute__((target("avx512f,avx512vl,avx512bw,avx512dq,avx2,fma")))
#define QK_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define QK_MULTI(ret, name, params, args)                                                   \
  static inline __attribute__((always_inline)) ret name##_body params;                    \
  QK_TARGET_AVX512 static ret name##_avx512 params { return name##_body args; }           \
  QK_TARGET_AVX2 static ret name##_avx2 params { return name##_body args; }               \
  static ret name##_generic params { return name##_body args; }                          \
  ret name params {                                                                        \
    switch (::qk::active_isa()) {                                                          \
      case ::qk::Isa::Avx512: return name##_avx512 args;                                   \
      case ::qk::Isa::Avx2: return name##_avx2 args;                                       \
      default: return name##_generic args;                                                 \
    }                                                                                      \
  }                                                                                        \
  static inline __attribute__((always_inline)) ret name##_body params
#else
#define QK_MULTI(ret, name, params, args) ret name params
#endif
