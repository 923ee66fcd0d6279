/**
 * Speed benchmark: qatkit's active backend (native when built) against PyTorch on the same
 * machine, row by row in the same run (bench/speed_peer.py, /usr/bin/python3, 2 threads).
 *
 *   npx tsc -p . && node dist/bench/speed.js [--reps 10] [--warmup-ms 2000] [--only matmul] [--out rows.json] [--no-peer]
 *
 * Times are medians of --reps runs after >= 3 warm-up runs lasting >= --warmup-ms on each side;
 * ratio = peer_ms / ours_ms (> 1: we are faster). Conv rows compare with the faster of PyTorch's NCHW and channels_last runs.
 * Model rows (training steps) come from bench/speed_models.ts: that is the hook for the zoo.
 * Not a test: nothing here runs in CI.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend/index.js';
import { fakeQuantGradKernel, fakeQuantKernel } from '../src/backend/fakequant_kernels.js';
import { batchNormTrain } from '../src/backend/batchnorm_kernels.js';
import { modelRows } from './speed_models.js';

export interface Row {
  name: string;
  /** peer case names; the fastest one is compared */
  peer: string[];
  /** floating-point operations of one run, for a GFLOP/s column */
  flops?: number;
  /** prepares inputs, returns the timed function (it must finish its work synchronously) */
  setup: () => Promise<{ run: () => void; dispose?: () => void }>;
}

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}

function median(xs: number[]): number {
  const s = xs.slice().sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median ms of `reps` runs after a warm-up of at least 3 runs and `warmupMs` (V8 tiers up and our step keeps
 *  getting faster for ~100 training steps; PyTorch gets the same warm-up, see bench/speed_peer.py). */
function timeMs(run: () => void, reps: number, warmupMs: number): number {
  const w0 = performance.now();
  for (let i = 0; i < 3 || performance.now() - w0 < warmupMs; i++) run();
  const ts: number[] = [];
  for (let i = 0; i < reps; i++) {
    const t0 = performance.now();
    run();
    ts.push(performance.now() - t0);
  }
  return median(ts);
}

/** Runs an op inside tidy and disposes its outputs (so the timing includes allocation, as for users). */
const op = (f: () => tf.Tensor | tf.Tensor[]) => () => tf.dispose(tf.tidy(f));

function kernelRows(): Row[] {
  const rows: Row[] = [];
  for (const n of [512, 1024]) {
    rows.push({
      name: `matmul_${n}`, peer: [`matmul_${n}`], flops: 2 * n ** 3,
      setup: async () => {
        const a = tf.randomNormal([n, n]), b = tf.randomNormal([n, n]);
        return { run: op(() => tf.matMul(a, b)), dispose: () => tf.dispose([a, b]) };
      },
    });
  }
  const B = 8, H = 56, W = 56, C = 64;
  const convFlops = 2 * B * H * W * C * C * 9;
  const convSetup = async () => {
    const x = tf.randomNormal([B, H, W, C]) as tf.Tensor4D, w = tf.mul(tf.randomNormal([3, 3, C, C]), 0.05) as tf.Tensor4D;
    const dy = tf.randomNormal([B, H, W, C]) as tf.Tensor4D;
    return { x, w, dy, dispose: () => tf.dispose([x, w, dy]) };
  };
  rows.push({
    name: 'conv3x3_fwd', peer: ['conv3x3_fwd', 'conv3x3_fwd_cl'], flops: convFlops,
    setup: async () => { const s = await convSetup(); return { run: op(() => tf.conv2d(s.x, s.w, 1, 'same')), dispose: s.dispose }; },
  });
  rows.push({
    name: 'conv3x3_bwd_input', peer: ['conv3x3_bwd_input', 'conv3x3_bwd_input_cl'], flops: convFlops,
    setup: async () => {
      const s = await convSetup();
      return { run: op(() => tf.engine().runKernel('Conv2DBackpropInput', { dy: s.dy, filter: s.w },
        { inputShape: [B, H, W, C], strides: 1, pad: 'same', dataFormat: 'NHWC' }) as tf.Tensor), dispose: s.dispose };
    },
  });
  rows.push({
    name: 'conv3x3_bwd_filter', peer: ['conv3x3_bwd_filter', 'conv3x3_bwd_filter_cl'], flops: convFlops,
    setup: async () => {
      const s = await convSetup();
      return { run: op(() => tf.engine().runKernel('Conv2DBackpropFilter', { x: s.x, dy: s.dy },
        { filterShape: [3, 3, C, C], strides: 1, pad: 'same', dataFormat: 'NHWC' }) as tf.Tensor), dispose: s.dispose };
    },
  });
  // Training-mode batch norm forward + backward on a ResNet-sized NHWC activation: the fused
  // kernels (batchNormTrain) and, for comparison, the same thing composed from tfjs ops.
  const bnShape = [32, 32, 32, 16];
  const bnSetup = async () => {
    const x = tf.randomNormal(bnShape), dy = tf.randomNormal(bnShape), g = tf.ones([16]), b = tf.zeros([16]);
    return { x, dy, g, b, dispose: () => tf.dispose([x, dy, g, b]) };
  };
  const bnRow = (name: string, f: (x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => tf.Tensor): Row => ({
    name, peer: ['bn_train_fwdbwd', 'bn_train_fwdbwd_cl'],
    setup: async () => {
      const t = await bnSetup();
      // dy handed to the backward pass, as PyTorch's torch.autograd.grad(y, inputs, dy) (no extra mul/sum passes)
      return { run: op(() => tf.grads((x: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => f(x, g, b))([t.x, t.g, t.b], t.dy)), dispose: t.dispose };
    },
  });
  rows.push(bnRow('bn_train_fwdbwd_fused', (x, g, b) => batchNormTrain(x, g, b, 1e-5).y));
  rows.push(bnRow('bn_train_fwdbwd_tfjs_ops', (x, g, b) => {
    const { mean, variance } = tf.moments(x, [0, 1, 2]);
    return tf.add(tf.mul(tf.sub(x, mean), tf.mul(tf.rsqrt(tf.add(variance, 1e-5)), g)), b);
  }));
  const N = 1 << 20;
  const fqSetup = async () => {
    const x = tf.randomNormal([N]), dy = tf.randomNormal([N]), s = tf.scalar(0.05), z = tf.scalar(3);
    return { x, dy, s, z, dispose: () => tf.dispose([x, dy, s, z]) };
  };
  rows.push({
    name: 'fakequant_fwd_1M', peer: ['fakequant_fwd_1M'],
    setup: async () => { const t = await fqSetup(); return { run: op(() => fakeQuantKernel(t.x, t.s, t.z, -128, 127)), dispose: t.dispose }; },
  });
  rows.push({
    name: 'fakequant_fwdbwd_1M', peer: ['fakequant_fwdbwd_1M'],
    setup: async () => {
      const t = await fqSetup();
      return {
        run: op(() => {
          const y = fakeQuantKernel(t.x, t.s, t.z, -128, 127);
          const g = fakeQuantGradKernel(t.dy, t.x, t.s, t.z, -128, 127);
          return [y, g.dx, g.dScale, g.dZeroPoint];
        }),
        dispose: t.dispose,
      };
    },
  });
  return rows;
}

class Peer {
  private pending: ((v: number | null) => void)[] = [];
  private proc;
  constructor() {
    const script = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'speed_peer.py');
    this.proc = spawn('/usr/bin/python3', [script, '--serve', '--threads', '2'], { stdio: ['pipe', 'pipe', 'inherit'] });
    createInterface({ input: this.proc.stdout! }).on('line', (line) => {
      const r = JSON.parse(line) as { ms: number | null };
      this.pending.shift()?.(r.ms);
    });
  }
  time(name: string, reps: number, warmupMs: number): Promise<number | null> {
    return new Promise((resolve) => {
      this.pending.push(resolve);
      this.proc.stdin!.write(`${name} ${reps} ${warmupMs}\n`);
    });
  }
  close(): void {
    this.proc.stdin!.end();
  }
}

async function main(): Promise<void> {
  const reps = Number(arg('--reps') ?? 10);
  const warmupMs = Number(arg('--warmup-ms') ?? 2000);
  const only = arg('--only');
  const out = arg('--out');
  const backend = await initBackend();
  const rows = [...kernelRows(), ...(await modelRows())].filter((r) => !only || r.name.includes(only));
  const peer = process.argv.includes('--no-peer') ? null : new Peer();
  // wait until PyTorch has loaded and built its cases: its start-up must not share the cores with our first row
  await peer?.time('__ready__', 0, 0);
  const results: { name: string; ours_ms: number; peer_ms: number | null; ratio: number | null; peer_case?: string; gflops?: number }[] = [];
  console.log(`backend ${backend}, ${reps} reps (median) after >= ${warmupMs} ms of warm-up each, peer: PyTorch ${peer ? '(2 threads)' : 'skipped'}`);
  console.log('row                         ours_ms    peer_ms   ratio  ours_GFLOP/s  peer_case');
  for (const row of rows) {
    const s = await row.setup();
    const ours = timeMs(s.run, reps, warmupMs);
    s.dispose?.();
    let best: number | null = null, bestCase: string | undefined;
    if (peer) {
      for (const p of row.peer) {
        const ms = await peer.time(p, reps, warmupMs);
        if (ms != null && (best == null || ms < best)) { best = ms; bestCase = p; }
      }
    }
    const r = { name: row.name, ours_ms: ours, peer_ms: best, ratio: best == null ? null : best / ours, peer_case: bestCase,
      gflops: row.flops ? row.flops / ours / 1e6 : undefined };
    results.push(r);
    console.log(`${row.name.padEnd(26)} ${ours.toFixed(3).padStart(8)} ${(best?.toFixed(3) ?? '-').padStart(10)} ` +
      `${(r.ratio?.toFixed(2) ?? '-').padStart(7)} ${(r.gflops?.toFixed(1) ?? '').padStart(13)}  ${bestCase ?? ''}`);
  }
  peer?.close();
  if (out) writeFileSync(out, JSON.stringify(results.map(({ name, ours_ms, peer_ms, ratio }) => ({ name, ours_ms, peer_ms, ratio })), null, 2));
}

await main();
