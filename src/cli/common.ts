// Pieces shared by the CLI commands: loading data and models with clear errors, saving atomically.
import { loadDataset, type Dataset } from '../data/datasets.js';
import type { Graph } from '../graph/ir.js';
import { loadOnnxFile, saveOnnxFile } from '../onnx/file.js';
import { normalize } from '../onnx/normalize.js';
import { QatError } from '../util/errors.js';
import type { FlagSpec } from './args.js';

export const DATA_FLAGS: Record<string, FlagSpec> = {
  data: { type: 'string', help: 'dataset: mnist, fashion-mnist, digits', default: 'mnist' },
  'data-dir': { type: 'string', help: 'folder holding the four IDX files (instead of the default place)' },
  limit: { type: 'number', help: 'use only the first N training examples' },
  'test-limit': { type: 'number', help: 'use only the first N test examples' },
};

export function loadData(flags: Record<string, unknown>): { train: Dataset; test: Dataset } {
  const name = String(flags.data);
  const dir = flags['data-dir'] as string | undefined;
  return {
    train: loadDataset(name, { split: 'train', dir, limit: flags.limit as number | undefined }),
    test: loadDataset(name, { split: 'test', dir, limit: flags['test-limit'] as number | undefined }),
  };
}

/** Load an ONNX model (ours or another exporter's) in the canonical form the executor runs. */
export async function loadModel(path: string): Promise<Graph> {
  return normalize(await loadOnnxFile(path), { file: path });
}

export async function saveModel(path: string, g: Graph): Promise<number> {
  return saveOnnxFile(path, g);
}

/** The model's input must take the dataset's images: [N, C, H, W] against [C, H, W]. */
export function checkFits(g: Graph, ds: Dataset, modelPath: string): void {
  const input = g.inputs.find((i) => !g.initializers.has(i.name));
  if (!input) throw new QatError(`${modelPath}: the model has no graph input`);
  const shape = input.shape ?? [];
  const fixed = shape.slice(1);
  const ok = fixed.length === 3 && fixed.every((d, i) => typeof d !== 'number' || d === ds.shape[i]);
  if (!ok)
    throw new QatError(
      `${modelPath}: input '${input.name}' has shape [${shape.join(', ')}] but dataset '${ds.name}' has images [N, ${ds.shape.join(', ')}]`,
      'use a model built for this dataset (qat train --data ...)',
    );
}

export function need<T>(v: T | undefined, what: string, command: string): T {
  if (v === undefined || v === '') throw new QatError(`qat ${command}: ${what} is required`, `run 'qat ${command} --help'`);
  return v;
}
