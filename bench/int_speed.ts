/**
 * Integer inference speed: qatkit's integer engine against onnxruntime-node on the same exported QOperator model
 * (zoo LeNet-5 on 1x28x28 and ResNet-8 on 3x32x32, PTQ-calibrated, convert()ed), batch 1 and 64, one thread each.
 *
 *   npx tsc -p . && node dist/bench/int_speed.js [--reps 15] [--out rows.json] [--models lenet5,resnet8] [--recipes w8a8,w4a4]
 *     [--threads 1] [--profile]   (QATKIT_INT_NATIVE=0: the wasm GEMM instead of the native addon's int8 GEMM)
 * --profile: after each row, our time per node (wall ms per run, kernels wrapped with timers, which slightly slows the
 * row's own measurement).
 *
 * Each sample times enough back-to-back runs to last >= 20 ms, ORT's and ours alternating (both see the same load
 * from the rest of the machine); the table shows medians over --reps samples each after 1 s of warm-up, as process CPU time per run (robust on a shared machine; ORT's worker thread included) and wall time.
 * ratio = ort_ms / ours_ms on CPU time (> 1: we are faster). Our engine runs the converted graph as shipped
 * ('fixedpoint-single' requantization, Clips folded); ORT runs its own float requantization. Calibration uses MNIST
 * when it is installed, else synthetic images: speed does not depend on the data. Not a test: nothing here runs in CI.
 */
import { writeFileSync } from 'node:fs';
import * as ort from 'onnxruntime-node';
import { initBackend } from '../src/backend/index.js';
import { loadAddon } from '../src/backend/native_addon.js';
import { type Dataset, loadDataset } from '../src/data/datasets.js';
import type { Graph, TensorData } from '../src/graph/ir.js';
import { convert } from '../src/int/convert.js';
import { createIntSession } from '../src/int/engine.js';
import { intGemmProvider } from '../src/int/kernels/gemm.js';
import { registerBuiltinIntKernels } from '../src/int/kernels/index.js';
import { getIntKernel, listIntKernels, registerIntKernel } from '../src/int/registry.js';
import '../src/int/native_gemm.js'; // the native addon's int8 GEMM when built (QATKIT_INT_NATIVE=0: wasm)
import { writeOnnx } from '../src/onnx/model.js';
import { ptq } from '../src/ptq/calibrate.js';
import { recipeByName } from '../src/spec/quantspec.js';
import { buildModel } from '../src/zoo/models.js';

export interface IntSpeedRow {
  model: string;
  recipe: string;
  batch: number;
  /** median CPU milliseconds per run */
  ort_ms: number;
  ours_ms: number;
  /** ort_ms / ours_ms */
  ratio: number;
  /** median wall milliseconds per run */
  ort_wall_ms: number;
  ours_wall_ms: number;
  /** share of the float logits equal bit for bit (our fixed-point requantization vs ORT's float one: near-ties differ) */
  logits_equal: number;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

const median = (xs: number[]): number => xs.slice().sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const cpuMs = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
};

/**
 * After warm-up, runs per >= 20 ms sample. Warm-up: at least 3 runs and 1 s (JIT tiers, caches, ORT's first-run
 * allocations; V8's background compilation and the collection of the calibration's garbage take most of a second
 * after a model is built, and their threads count in the process CPU time).
 */
async function calibrate(run: () => unknown): Promise<number> {
  const w0 = performance.now();
  for (let i = 0; i < 3 || performance.now() - w0 < 1000; i++) await run();
  let k = 1;
  for (;;) {
    const t0 = performance.now();
    for (let i = 0; i < k; i++) await run();
    if (performance.now() - t0 >= 20 || k >= 4096) return k;
    k *= 2;
  }
}

/** CPU and wall ms per run over one sample of k runs. */
async function sample(run: () => unknown, k: number): Promise<{ cpu: number; wall: number }> {
  const c0 = cpuMs();
  const t0 = performance.now();
  for (let i = 0; i < k; i++) await run();
  return { wall: (performance.now() - t0) / k, cpu: (cpuMs() - c0) / k };
}

/**
 * Median CPU and wall ms per run of two functions, their samples alternating so that both see the same load from
 * the rest of the machine.
 */
async function timePair(a: () => unknown, b: () => unknown, reps: number): Promise<Array<{ cpu: number; wall: number }>> {
  const ks = [await calibrate(a), await calibrate(b)];
  const samples: Array<Array<{ cpu: number; wall: number }>> = [[], []];
  for (let r = 0; r < reps; r++) for (const [i, run] of [a, b].entries()) samples[i].push(await sample(run, ks[i]));
  return samples.map((xs) => ({ cpu: median(xs.map((x) => x.cpu)), wall: median(xs.map((x) => x.wall)) }));
}

function synthetic(n: number, shape: [number, number, number]): Dataset {
  const per = shape[0] * shape[1] * shape[2];
  const images = Float32Array.from({ length: n * per }, (_, i) => Math.sin(i * 0.37) + 0.5 * Math.cos(i * 0.011 + Math.floor(i / per)));
  return { name: 'synthetic', images, labels: new Int32Array(n), n, shape, numClasses: 10, mean: [0], std: [1] };
}

function calibrationData(shape: [number, number, number]): Dataset {
  if (shape[0] === 1 && shape[1] === 28) {
    try {
      return loadDataset('mnist', { split: 'train', limit: 256 });
    } catch {
      // no MNIST here: synthetic images do for timing
    }
  }
  return synthetic(256, shape);
}

/** Wall ms per node name, summed over runs, while the kernels are wrapped by profileKernels. */
const nodeMs = new Map<string, number>();

/** Wrap every registered integer kernel with a timer (before sessions are created: they keep their kernels). */
function profileKernels(): void {
  registerBuiltinIntKernels();
  for (const id of listIntKernels()) {
    const [domain, op] = id.includes('::') ? id.split('::') : ['', id];
    const k = getIntKernel(op, domain)!;
    registerIntKernel({
      ...k,
      run: (inputs, ctx) => {
        const t0 = performance.now();
        const outs = k.run(inputs, ctx);
        const key = `${ctx.node.name} (${ctx.node.op})`;
        nodeMs.set(key, (nodeMs.get(key) ?? 0) + performance.now() - t0);
        return outs;
      },
    });
  }
}

const MODELS: Record<string, [number, number, number]> = { lenet5: [1, 28, 28], resnet8: [3, 32, 32] };

async function main(): Promise<void> {
  const reps = Number(arg('--reps') ?? 15);
  const models = (arg('--models') ?? 'lenet5,resnet8').split(',');
  const recipes = (arg('--recipes') ?? 'w8a8,w4a4').split(',');
  const out = arg('--out');
  const profile = process.argv.includes('--profile');
  if (profile) profileKernels();
  await initBackend('wasm');
  // the native int8 GEMM's thread pool: 1 (like ORT here) unless --threads says otherwise
  const threads = Number(arg('--threads') ?? 1);
  if (intGemmProvider()) loadAddon().setThreads(threads);
  const engine = intGemmProvider()?.name ?? 'wasm';
  const rows: IntSpeedRow[] = [];
  for (const model of models) {
    const shape = MODELS[model];
    if (!shape) throw new Error(`unknown model '${model}' (known: ${Object.keys(MODELS).join(', ')})`);
    const data = calibrationData(shape);
    const float = buildModel(model, { inputShape: shape, numClasses: 10, seed: 1 });
    for (const recipe of recipes) {
      const g: Graph = convert(ptq(float, recipeByName(recipe), data, { batches: 4, batchSize: 64 }));
      const ortSession = await ort.InferenceSession.create(writeOnnx(g), {
        intraOpNumThreads: 1, interOpNumThreads: 1, graphOptimizationLevel: 'all', logSeverityLevel: 3,
      });
      const ours = createIntSession(g);
      const outName = g.outputs[0].name;
      for (const batch of [1, 64]) {
        const per = shape[0] * shape[1] * shape[2];
        const x = data.n >= batch ? data.images.slice(0, batch * per) : synthetic(batch, shape).images;
        const feed: TensorData = { dtype: 'float32', dims: [batch, ...shape], data: x };
        const ortFeed = { [g.inputs[0].name]: new ort.Tensor('float32', x, [batch, ...shape]) };
        const a = (await ortSession.run(ortFeed))[outName].data as Float32Array;
        const b = ours.run({ [g.inputs[0].name]: feed })[outName].data as Float32Array;
        const [o, q] = await timePair(() => ortSession.run(ortFeed), () => ours.run({ [g.inputs[0].name]: feed }), reps);
        const row: IntSpeedRow = {
          model, recipe, batch, ort_ms: o.cpu, ours_ms: q.cpu, ratio: o.cpu / q.cpu, ort_wall_ms: o.wall, ours_wall_ms: q.wall,
          logits_equal: a.filter((v, i) => v === b[i]).length / a.length,
        };
        rows.push(row);
        console.error(`${model} ${recipe} batch ${batch}: ort ${o.cpu.toFixed(3)} ms, ours ${q.cpu.toFixed(3)} ms`);
        if (profile) {
          const runs = Math.max(10, Math.ceil(200 / q.wall));
          nodeMs.clear();
          for (let i = 0; i < runs; i++) ours.run({ [g.inputs[0].name]: feed });
          for (const [node, ms] of nodeMs) console.error(`  ${(ms / runs).toFixed(4).padStart(9)} ms  ${node}`);
        }
      }
      await ortSession.release();
    }
  }
  const head = ['model', 'recipe', 'batch', 'ort_ms', 'ours_ms', 'ratio', 'ort_wall', 'ours_wall', 'logits equal'];
  const body = rows.map((r) => [r.model, r.recipe, String(r.batch), r.ort_ms.toFixed(3), r.ours_ms.toFixed(3), r.ratio.toFixed(3),
    r.ort_wall_ms.toFixed(3), r.ours_wall_ms.toFixed(3), `${(100 * r.logits_equal).toFixed(1)}%`]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (c: string[]) => '| ' + c.map((s, i) => s.padEnd(w[i])).join(' | ') + ' |';
  console.log(`qatkit integer engine (GEMM: ${engine}, ${intGemmProvider() ? threads : 1} thread) vs onnxruntime-node ${ort.env.versions.common} (1 thread), CPU ms per run, median of ${reps}; ratio = ort/ours`);
  console.log([line(head), '|' + w.map((x) => '-'.repeat(x + 2)).join('|') + '|', ...body.map(line)].join('\n'));
  if (out) writeFileSync(out, JSON.stringify(rows, null, 2) + '\n');
}

await main();
