/**
 * How far apart two backends' training can be expected to stay: the demo's first float epoch (MNIST, LeNet-5, seed 0,
 * batch 64, lr 0.05) on the native backend, on wasm, and on native again with ONE initial weight nudged by one ulp.
 * Prints each run's mean loss over the first `--steps` steps and over the whole epoch, relative to the native run.
 *
 *   npx tsc -p . && node dist/bench/epoch_parity.js [--limit 60000] [--steps 10]
 *
 * Measured here: over 10 steps wasm is 1.4e-6 from native and the nudged run 3e-8; over the full 938-step epoch the
 * one-ulp nudge alone moves the epoch loss by 1.4e-2, wasm is 3e-3 away: SGD amplifies any float32 difference, so no
 * two implementations that are not bit-identical agree to 1e-4 over a whole epoch (test/backend_parity.test.ts
 * asserts 1e-4 over 10 steps).
 * Not a test (about 1.5 minutes).
 */
import { initBackend } from '../src/backend/index.js';
import { loadDataset } from '../src/data/datasets.js';
import { trainFloat } from '../src/pipeline/steps.js';
import { buildModel } from '../src/zoo/models.js';

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(name);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function run(backend: 'native' | 'wasm', limit: number, steps: number, nudge: boolean): Promise<{ short: number; epoch: number }> {
  await initBackend(backend);
  const g = buildModel('lenet5', { inputShape: [1, 28, 28], numClasses: 10, seed: 0 });
  if (nudge) {
    const w = g.initializers.get('conv1.weight')!.data as Float32Array;
    new Uint32Array(w.buffer, w.byteOffset, w.length)[0] += 1; // the next float32 up
  }
  const budget = { epochs: 1, batchSize: 64, lr: 0.05, seed: 0 };
  const short = (await trainFloat(g, loadDataset('mnist', { split: 'train', limit: steps * 64 }), budget)).result.epochLosses[0];
  const epoch = (await trainFloat(g, loadDataset('mnist', { split: 'train', limit }), budget)).result.epochLosses[0];
  return { short, epoch };
}

const limit = arg('--limit', 60000), steps = arg('--steps', 10);
const ref = await run('native', limit, steps, false);
const rel = (a: number, b: number) => (Math.abs(a - b) / Math.abs(b)).toExponential(1);
console.log(`run                          loss ${steps} steps   rel       loss epoch (${Math.ceil(limit / 64)} steps)   rel`);
for (const [name, backend, nudge] of [['native', 'native', false], ['wasm', 'wasm', false], ['native, 1 ulp nudge', 'native', true]] as const) {
  const r = name === 'native' ? ref : await run(backend, limit, steps, nudge);
  console.log(`${name.padEnd(28)} ${r.short.toFixed(9)}  ${rel(r.short, ref.short).padEnd(8)}  ${r.epoch.toFixed(9)}                ${rel(r.epoch, ref.epoch)}`);
}
