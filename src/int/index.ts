// The integer engine's public API. Browser-safe: the node-only ONNX test runner is ./onnx_tests.js.
export { type IntSession, type IntSessionOptions, createIntSession, runInt, unsupportedNodes } from './engine.js';
export {
  type IntKernel, type KernelContext, type Requant, REQUANT_MODES, isFixedPoint,
  getIntKernel, listIntKernels, registerIntKernel, unregisterIntKernel,
} from './registry.js';
export {
  type QuantizedMultiplier, multiplierValue, multiplyByQuantizedMultiplier, multiplyByQuantizedMultiplierSingle,
  quantizeMultiplier, quantizeMultipliers, roundingDivideByPOT, saturatingRoundingDoublingHighMul,
} from './fixedpoint.js';
export { type ConvertOptions, convert, integerValues, valueDTypes, withIntegerBiases, withOutputs } from './convert.js';
export {
  PACKED_MAGIC, PACKED_VERSION, bitsNeeded, createPackedSession, isPacked, packBits, packedBreakdown, readPacked, unpackBits, writePacked,
} from './packed.js';
export { BUILTIN_INT_KERNELS, registerBuiltinIntKernels } from './kernels/index.js';
export { setIntWasm } from './kernels/wasm_gemm.js';
export { type IntGemmProvider, type PackedB, intGemmProvider, setIntGemmProvider } from './kernels/gemm.js';
