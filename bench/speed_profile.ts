/**
 * Where a model row's training step spends its time, per tfjs kernel (tf.profile).
 *   node dist/bench/speed_profile.js [row-name-substring]
 * Kernels marked * fell back to tfjs's JS cpu kernel at least once.
 */
import * as tf from '@tensorflow/tfjs-core';
import { initBackend } from '../src/backend/index.js';
import { nativeFallbackCounts } from '../src/backend/native_backend.js';
import { modelRows } from './speed_models.js';

await initBackend();
const want = process.argv[2] ?? '';
for (const row of (await modelRows()).filter((r) => r.name.includes(want))) {
  const s = await row.setup();
  for (let i = 0; i < 3; i++) s.run();
  const before = nativeFallbackCounts();
  const t0 = performance.now();
  const info = await tf.profile(() => { s.run(); });
  const wall = performance.now() - t0;
  const after = nativeFallbackCounts();
  const by = new Map<string, { ms: number; n: number }>();
  for (const k of info.kernels) {
    const e = by.get(k.name) ?? { ms: 0, n: 0 };
    e.ms += k.kernelTimeMs as number;
    e.n++;
    by.set(k.name, e);
  }
  const total = [...by.values()].reduce((a, b) => a + b.ms, 0);
  console.log(`\n${row.name}: wall ${wall.toFixed(1)} ms (profiled), kernels ${total.toFixed(1)} ms, ${info.kernels.length} kernel calls`);
  for (const [name, e] of [...by].sort((a, b) => b[1].ms - a[1].ms).slice(0, 25)) {
    const fb = (after.get(name) ?? 0) > (before.get(name) ?? 0) ? '*' : ' ';
    console.log(`  ${(name + fb).padEnd(36)} ${e.ms.toFixed(2).padStart(8)} ms  ${String(e.n).padStart(4)} calls`);
  }
  s.dispose?.();
}
