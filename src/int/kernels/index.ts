// The built-in integer kernels, registered on first use of the engine (explicitly, not as an import side effect).
import { type IntKernel, getIntKernel, registerIntKernel } from '../registry.js';
import { arithKernels } from './arith.js';
import { contribKernels } from './contrib.js';
import { convKernels } from './conv.js';
import { matmulKernels } from './matmul.js';
import { poolKernels } from './pool.js';
import { qgemmKernels } from './qgemm.js';
import { quantizeKernels } from './quantize.js';
import { requantizeKernels } from './requantize.js';
import { shapeKernels } from './shape.js';

export const BUILTIN_INT_KERNELS: readonly IntKernel[] = [
  ...quantizeKernels, ...convKernels, ...matmulKernels, ...contribKernels, ...poolKernels, ...shapeKernels, ...requantizeKernels,
  ...qgemmKernels, ...arithKernels,
];

let registered = false;

/** Register every built-in kernel not already registered (a kernel registered earlier by the user wins). */
export function registerBuiltinIntKernels(): void {
  if (registered) return;
  registered = true;
  for (const k of BUILTIN_INT_KERNELS) if (!getIntKernel(k.op, k.domain)) registerIntKernel(k);
}
