// The ONNX codec, normalizer, QDQ and QOperator exports: no node:fs here, so it runs in the browser too.
// File helpers (loadOnnxFile, saveOnnxFile, loadTensorProtoFile) live apart in ./file.js (node only).
export { ProtoError, ProtoReader, ProtoWriter, Wire } from './protobuf.js';
export {
  DTYPE_ARRAY, ONNX_DTYPE, packNibbles, unpackNibbles, readTensorProto, readNamedTensorProto, writeTensorProto,
  type TensorWriteOptions,
} from './tensor.js';
export { readOnnx, writeOnnx, irVersionFor, domainVersion, UnsupportedModelError, type WriteOnnxOptions } from './model.js';
export { normalize, canonicalViolations, CANONICAL_OPSET } from './normalize.js';
export { toQdq, fakeQuantParams, quantizeWeight, fakeQuantValue, roundHalfEven, QDQ_MIN_OPSET, type FakeQuantParams } from './qdq.js';
export {
  INT4_OPSET, type ModelSizes, type QOperatorOptions, formatModelSizes, modelSizes, stripFakeQuant, toQOperator,
} from './qoperator.js';
