// Shared utilities with no tensor library. tfjs setup lives in ./tfjs.js: import it directly where tfjs is used.
export { formatError, isQatError, QatError } from './errors.js';
export { writeFileAtomic, writeFileAtomicSync, type FileData } from './fs.js';
export { hashConfig, stableStringify } from './hash.js';
export { createProgress, formatDuration, type Progress, type ProgressOptions, type ProgressStream } from './progress.js';
export { createRng, mixSeed, permutation, Rng, type RngState } from './rng.js';
