{
  "targets": [
    {
      "target_name": "qatkit_native",
      "sources": [
        "native/addon.cc",
        "native/gemm.cc",
        "native/conv.cc",
        "native/ops.cc",
        "native/threadpool.cc",
        "native/int8_gemm.cc",
        "native/int8_ops.cc",
        "native/train_ops.cc"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++14", "-std=gnu++17", "-std=c++14"],
      "cflags_cc": ["-std=c++17", "-O3", "-fno-math-errno", "-fexceptions"],
      "defines": ["NAPI_VERSION=8"],
      "ldflags": ["-pthread"]
    }
  ]
}
