// The benchmark harness: matrices, the method registry, the runner, results files and reports.
export { MatrixError } from './errors.js';
export { expandCells, loadMatrix, matrixHash, resolveMatrixPath, shippedMatrices, validateBudget, validateMatrix, type Cell, type CellConfig, type Matrix, type MethodSpec, type Task } from './matrix.js';
export { canonicalQParams } from '../transform/finalize.js';
export { exportQdqBytes, getMethod, methodNames, registerMethod, type MethodContext, type MethodDef, type MethodResult } from './methods.js';
export { packageRoot, provenance, type Provenance } from './provenance.js';
export { aggregate, chartSpecs, htmlReport, markdownReport, paretoFront, reportPaths, stat, writeReports, type ChartSpec, type Group, type Stat } from './report.js';
export { parseResults, readResults, ResultsFile, type CellRecord, type ParsedResults, type ResultsHeader } from './results.js';
export { floatCacheDir, runBench, type RunOptions, type RunSummary } from './runner.js';
export { packedBytes } from './size.js';
