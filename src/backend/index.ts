/**
 * qatkit compute backends.
 *
 * Usage (once, before any tensor work):
 *   import { initBackend } from './backend/index.js';
 *   const name = await initBackend();        // 'qatkit-native' if the addon loaded, else 'wasm'
 *   await initBackend('wasm');               // force one: 'native' | 'wasm' | 'cpu'
 * The env var QATKIT_BACKEND=native|wasm|cpu overrides the argument.
 *
 * initBackend also registers tfjs-core's gradients (its Node bundle has none, and its ESM
 * gradient files cannot be imported by Node directly: see gradients.ts) and the gradient
 * kernels tfjs-backend-wasm lacks (wasm_kernels.ts). When native was wanted but cannot
 * load, one console warning says why and wasm is used. tfjs's pure-JS 'cpu' backend is a
 * reference, far too slow to train with.
 *
 * 'qatkit-native' (native_backend.ts, C++ in native/, built by scripts/build-native.mjs) is
 * tfjs's cpu backend with its hot kernels replaced; it also has fused kernels with small
 * APIs that work on every backend (falling back to tfjs ops):
 *   fakequant_kernels.ts  fakeQuantWithGrad, fakeQuantKernel/GradKernel/ObserveKernel, minMaxKernel
 *   batchnorm_kernels.ts  batchNormTrain (training-mode BN, one fused forward and backward)
 *   train_kernels.ts      sgdSteps/adamSteps (one kernel for all parameters), channelDiv, addRelu, and the one-pass
 *                         Relu gradient initBackend registers
 * Env: QATKIT_NUM_THREADS (default: all cores), QATKIT_ISA=avx2|generic (default: best),
 * QATKIT_POOL_MB (recycled output buffers, default 256), QATKIT_NATIVE_PATH.
 * Note: tfjs-core's Node bundle also has no chained ops (t.sum(), t.mul()); use tf.sum(t).
 */
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import { registerGradients as registerAllGradients } from '../util/tfjs.js';
import { registerWasmGradKernels } from './wasm_kernels.js';
import { registerTrainGradients } from './train_kernels.js';

export type BackendPreference = 'native' | 'wasm' | 'cpu';
export const NATIVE_BACKEND_NAME = 'qatkit-native';

let warned = false;
let nativeError: string | null = null;

function parsePreference(v: string | undefined): BackendPreference | undefined {
  if (v == null || v === '') return undefined;
  const s = v.trim().toLowerCase();
  if (s === 'native' || s === NATIVE_BACKEND_NAME) return 'native';
  if (s === 'wasm' || s === 'cpu') return s;
  throw new Error(`qatkit: unknown backend '${v}' (expected native, wasm or cpu)`);
}

/** Why the native backend could not load (null if it loaded or was never tried). */
export function nativeLoadError(): string | null {
  return nativeError;
}

async function tryNative(): Promise<string | null> {
  try {
    const m = await import('./native_backend.js');
    const name = await m.registerNativeBackend();
    if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed`);
    nativeError = null;
    return name;
  } catch (e) {
    nativeError = e instanceof Error ? e.message : String(e);
    return null;
  }
}

/** Registers the wasm backend (idempotent) with its missing gradient kernels. */
export async function ensureWasm(): Promise<void> {
  await import('@tensorflow/tfjs-backend-wasm');
  registerWasmGradKernels();
}

/** Selects and initializes the compute backend; returns the active backend's name. */
export async function initBackend(prefer?: BackendPreference): Promise<string> {
  const want = parsePreference(process.env.QATKIT_BACKEND) ?? parsePreference(prefer) ?? 'native';
  await registerAllGradients();
  registerTrainGradients();
  if (want === 'native') {
    const name = await tryNative();
    if (name) return name;
    if (!warned) {
      warned = true;
      console.warn(`qatkit: native backend unavailable (${nativeError}); using the slower wasm backend. ` +
        'Build it with `node scripts/build-native.mjs` (needs g++ and node-gyp).');
    }
  }
  if (want === 'cpu') {
    await tf.setBackend('cpu');
    return tf.getBackend();
  }
  await ensureWasm();
  if (!(await tf.setBackend('wasm'))) throw new Error('qatkit: the wasm backend failed to initialize');
  return tf.getBackend();
}

export { registerGradients as registerAllGradients } from '../util/tfjs.js';
export { registerWasmGradKernels } from './wasm_kernels.js';
export { batchNormTrain, hasBatchNormTrainKernel } from './batchnorm_kernels.js';
export { fakeQuantGradKernel, fakeQuantKernel, fakeQuantObserveKernel, fakeQuantWithGrad, hasFakeQuantKernel,
  minMaxKernel } from './fakequant_kernels.js';
