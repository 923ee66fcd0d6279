// Node-only: registers the native addon's int8 GEMM (native/int8_gemm.cc via build/Release/qatkit_native.node,
// loaded by src/backend/native_addon.ts) as the integer engine's GEMM provider. Importing this module is enough;
// without the addon (not built, or built before int8 GEMM existed) nothing is registered and the engine keeps its
// wasm / JS path. QATKIT_INT_NATIVE=0 disables it. Results are identical either way (exact integer products).
import { type NativeAddon, loadAddon } from '../backend/native_addon.js';
import { type IntGemmProvider, setIntGemmProvider } from './kernels/gemm.js';

/** The native provider, or null (with the reason) when the addon or its int8 GEMM is missing. */
export function nativeIntGemmProvider(): { provider: IntGemmProvider | null; why?: string } {
  let addon;
  try {
    addon = loadAddon();
  } catch (e) {
    return { provider: null, why: (e as Error).message };
  }
  const gemm = addon.int8GemmPacked;
  const size = addon.int8PackedSize;
  const pack = addon.int8PackB;
  if (typeof gemm !== 'function' || typeof size !== 'function' || typeof pack !== 'function')
    return { provider: null, why: 'native addon predates its int8 GEMM (rebuild it: node scripts/build-native.mjs)' };
  const conv = addon.int8ConvPacked;
  const isa = addon.int8Info?.().packedIsa ?? 'unknown';
  const provider: IntGemmProvider = {
    name: `native-${isa}`,
    packB: (rows, off, ldb, N, K) => {
      const data = new Uint8Array(size.call(addon, N, K));
      pack.call(addon, rows.subarray(off), ldb, N, K, data);
      return { N, K, data };
    },
    gemmU8: (M, N, K, A, lda, aZp, B, C, ldc, transC) => gemm.call(addon, A, lda, aZp, B.data as Uint8Array, M, N, K, C, ldc, transC),
    conv2dU8: typeof conv === 'function' ? (x, xZp, geo, B, C, ldc) => conv.call(addon, x, xZp, geo, B.data as Uint8Array, B.N, C, ldc) : undefined,
  };
  return { provider: { ...provider, ...fusedOps(addon) } };
}

/** The addon's fused kernels (native/int8_ops.cc) present on this build and CPU. */
function fusedOps(addon: NativeAddon): Partial<IntGemmProvider> {
  const { int8MaxPool: maxPool, int8PlaneSums: sums } = addon;
  const ops: Partial<IntGemmProvider> = {
    maxPool: maxPool && ((x, geo, y) => maxPool.call(addon, x, geo, y)),
    planeSums: sums && ((x, S, out) => sums.call(addon, x, S, out)),
  };
  const { int8ConvPackedSize: cSize, int8ConvPack: cPack, int8QConv: qconv, int8Requant: requant, int8Quantize: quantize, int8QAdd: qadd } = addon;
  if (!addon.int8OpsAvailable?.() || !cSize || !cPack || !qconv || !requant || !quantize || !qadd) return ops;
  return {
    ...ops,
    packConv: (rows, off, ldb, OCg, Cg, KH, KW) => {
      const data = new Uint8Array(cSize.call(addon, OCg, Cg, KH, KW));
      cPack.call(addon, rows.subarray(off), ldb, OCg, Cg, KH, KW, data);
      return { N: OCg, K: Cg * KH * KW, data };
    },
    qconv: (x, xZp, geo, W, rq, y) => qconv.call(addon, x, xZp, geo, W.data as Uint8Array, rq.table, rq.mode, rq.zp, rq.qmin, rq.qmax, y),
    requant: (C, M, N, ldc, rq, y) => requant.call(addon, C, M, N, ldc, rq.table, rq.table.length >> 2, rq.mode, rq.zp, rq.qmin, rq.qmax, y),
    quantize: (x, scale, zp, qmin, qmax, y) => quantize.call(addon, x, scale, zp, qmin, qmax, y),
    qadd: (a, b, spec, y) => qadd.call(addon, a, b, spec, y),
  };
}

/** Register (true) or remove (false) the native provider; returns whether it is now active. */
export function enableNativeIntGemm(on = true): boolean {
  if (!on) {
    setIntGemmProvider(null);
    return false;
  }
  const { provider } = nativeIntGemmProvider();
  if (provider) setIntGemmProvider(provider);
  return provider !== null;
}

if (typeof process !== 'undefined' && process.env.QATKIT_INT_NATIVE !== '0') enableNativeIntGemm(true);
