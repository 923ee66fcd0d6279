// qatkit's public API. Tensor functions take tfjs tensors; call initBackend() once before any tensor work.
export { initBackend } from './backend/index.js';
export {
  fakeQuant,
  fakeQuantizePerTensorAffine,
  fakeQuantizePerChannelAffine,
  fakeQuantizeLearnablePerTensorAffine,
  fakeQuantizeLearnablePerChannelAffine,
  quantize,
  dequantize,
  qparamsFromRange,
  qparamsFromRanges,
  createObserver,
  registerObserver,
  registerEstimator,
  lsqGradFactor,
} from './quant/index.js';
export * from './spec/quantspec.js';
export * from './graph/ir.js';
export { Session } from './ops/session.js';
export { registerOp, type OpHandler } from './ops/registry.js';
export { prepare, type PrepareOptions } from './transform/prepare.js';
export { QuantController } from './transform/controller.js';
export { foldBatchNorm, foldConvBn } from './transform/fold.js';
export { calibrate, ptq } from './ptq/calibrate.js';
export { trainFloat, qat, evaluateGraph, type Budget } from './pipeline/steps.js';
export { ortEvaluate } from './pipeline/ort.js';
export { readOnnx, writeOnnx } from './onnx/model.js';
export { normalize } from './onnx/normalize.js';
export { toQdq } from './onnx/qdq.js';
export { loadOnnxFile, saveOnnxFile } from './onnx/file.js';
export { loadDataset, registerDataset, type Dataset } from './data/datasets.js';
export { batches } from './data/batches.js';
export { train } from './train/trainer.js';
export { buildModel, registerModel, modelNames } from './zoo/models.js';
