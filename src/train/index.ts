export { decodeCheckpoint, encodeCheckpoint, readCheckpointFile, writeCheckpointFile } from './checkpoint.js';
export { evaluate, type EvalResult } from './eval.js';
export { accuracy, countCorrect, klDistillation, softmaxCrossEntropy } from './losses.js';
export { createOptimizer, registerOptimizer, type Optimizer, type OptimizerConfig, type OptimizerFactory, type OptimizerState } from './optim.js';
export { fromPlain, toPlain, type PlainTensor } from './plain.js';
export { constantLr, cosineLr, registerSchedule, scheduleLr, type ScheduleConfig, type ScheduleFn } from './schedule.js';
export { train, trainConfigHash, type CheckpointOptions, type StepContext, type TrainHooks, type TrainOptions, type TrainResult } from './trainer.js';
