// Quantization primitives and observers: the public surface of src/quant.
export { FLOAT32_EPS, qparamsFromRange, qparamsFromRanges, roundHalfEven, type GridSpec } from './qparams.js';
export {
  dequantize,
  effectiveZeroPoint,
  estimatorNames,
  fakeQuant,
  getEstimator,
  lsqElementGrads,
  lsqGradFactor,
  quantize,
  registerEstimator,
  type Estimator,
  type EstimatorGrads,
  type EstimatorInput,
  type FakeQuantOpts,
} from './fakequant.js';
export {
  fakeQuantizeLearnablePerChannelAffine,
  fakeQuantizeLearnablePerTensorAffine,
  fakeQuantizePerChannelAffine,
  fakeQuantizePerTensorAffine,
} from './torch_api.js';
export {
  HIST_BINS,
  MSE_STEPS,
  createObserver,
  observerKinds,
  registerObserver,
  type Json,
  type Observer,
  type ObserverFactory,
  type ObserverState,
} from './observers.js';
