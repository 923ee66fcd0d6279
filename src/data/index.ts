export { batches, epochOrder, gatherBatch, numBatches, type Batch, type BatchOptions } from './batches.js';
export {
  datasetNames,
  getDatasetDef,
  loadDataset,
  mnistDataDir,
  registerDataset,
  type Dataset,
  type DatasetDef,
  type LoadOptions,
  type RawData,
  type Split,
} from './datasets.js';
export { encodeIdx, parseIdx, readIdx, readIdxPair, type IdxArray, type IdxDType } from './idx.js';
