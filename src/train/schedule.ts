// Learning-rate schedules: pure functions of the global step, so a resumed run gets the same rates.

export interface ScheduleConfig {
  kind: 'cosine' | 'constant' | (string & {});
  /** linear warmup over the first steps: step s (0-based) gets baseLr * (s + 1) / warmupSteps */
  warmupSteps?: number;
  /** cosine: the rate it decays to (default 0) */
  minLr?: number;
}

const warmup = (step: number, baseLr: number, warmupSteps: number) => (baseLr * (step + 1)) / warmupSteps;

/**
 * Cosine decay from baseLr to minLr over the steps after the warmup (torch's CosineAnnealingLR shape, per step).
 * Step totalSteps would reach minLr exactly; the last step run (totalSteps - 1) is one step short of it.
 */
export function cosineLr(step: number, totalSteps: number, baseLr: number, opts: { warmupSteps?: number; minLr?: number } = {}): number {
  const w = opts.warmupSteps ?? 0;
  const minLr = opts.minLr ?? 0;
  if (step < w) return warmup(step, baseLr, w);
  const progress = Math.min(1, Math.max(0, (step - w) / Math.max(1, totalSteps - w)));
  return minLr + (baseLr - minLr) * 0.5 * (1 + Math.cos(Math.PI * progress));
}

export function constantLr(step: number, baseLr: number, opts: { warmupSteps?: number } = {}): number {
  const w = opts.warmupSteps ?? 0;
  return step < w ? warmup(step, baseLr, w) : baseLr;
}

export type ScheduleFn = (step: number, totalSteps: number, baseLr: number, config: ScheduleConfig) => number;

const registry = new Map<string, ScheduleFn>([
  ['cosine', (s, total, lr, c) => cosineLr(s, total, lr, c)],
  ['constant', (s, _total, lr, c) => constantLr(s, lr, c)],
]);

export function registerSchedule(kind: string, fn: ScheduleFn): void {
  registry.set(kind, fn);
}

/** The rate of `step` (0-based) under `config`. */
export function scheduleLr(config: ScheduleConfig, step: number, totalSteps: number, baseLr: number): number {
  const fn = registry.get(config.kind);
  if (!fn) throw new Error(`scheduleLr: unknown schedule '${config.kind}' (known: ${[...registry.keys()].join(', ')})`);
  return fn(step, totalSteps, baseLr, config);
}
