// Optimizers over a Map<string, tf.Variable>, written as PyTorch's (torch.optim.SGD and Adam/AdamW, single-tensor
// code path), so results can be checked against it. Their state is named variables, so a checkpoint can save and
// restore it exactly.
import * as tf from '@tensorflow/tfjs-core';
import { fromPlain, isPlainTensor, sameShape, toPlain, type PlainTensor } from './plain.js';
import { adamScalars, adamSteps, sgdSteps } from '../backend/train_kernels.js';

export interface OptimizerConfig {
  kind: 'sgd' | 'adam' | 'adamw' | (string & {});
  /** base learning rate (the trainer's schedule scales it; step() takes the lr of the step) */
  lr: number;
  /** SGD momentum (default 0) */
  momentum?: number;
  nesterov?: boolean;
  /** L2 penalty added to the gradient (SGD, Adam) or decoupled decay (AdamW); default 0 */
  weightDecay?: number;
  /** Adam only: decay the weights directly (AdamW) instead of through the gradient; 'adamw' sets it */
  decoupled?: boolean;
  /** Adam (beta1, beta2), default [0.9, 0.999] */
  betas?: [number, number];
  /** Adam epsilon, default 1e-8 */
  eps?: number;
  /** params that get no weight decay (biases, BN, quantizer scales): their names, or a test on the name */
  noDecay?: readonly string[] | ((name: string) => boolean);
}

export type OptimizerState = Record<string, PlainTensor>;

export interface Optimizer {
  readonly kind: string;
  /** one update of every param that has a gradient in `grads` (params without one are left alone, as in PyTorch) */
  step(grads: Map<string, tf.Tensor>, lr: number): void;
  state(): OptimizerState;
  load(state: OptimizerState): void;
  /** releases the optimizer's own buffers (not the params) */
  dispose(): void;
}

export type OptimizerFactory = (params: Map<string, tf.Variable>, config: OptimizerConfig) => Optimizer;

const registry = new Map<string, OptimizerFactory>();

export function registerOptimizer(kind: string, factory: OptimizerFactory): void {
  registry.set(kind, factory);
}

export function createOptimizer(params: Map<string, tf.Variable>, config: OptimizerConfig): Optimizer {
  const factory = registry.get(config.kind);
  if (!factory) throw new Error(`createOptimizer: unknown optimizer kind '${config.kind}' (known: ${[...registry.keys()].join(', ')})`);
  return factory(params, config);
}

/** The test "does param `name` get weight decay" from a config. */
export function decayTest(config: OptimizerConfig): (name: string) => boolean {
  const nd = config.noDecay;
  if (!nd) return () => true;
  if (typeof nd === 'function') return (name) => !nd(name);
  const set = new Set(nd);
  return (name) => !set.has(name);
}

/** Named buffers, one per (slot, param), zero-initialized, saved as `${prefix}/${slot}/${param}`. */
class Slots {
  readonly vars = new Map<string, tf.Variable>();

  constructor(
    private prefix: string,
    params: Map<string, tf.Variable>,
    slots: readonly string[],
  ) {
    // tidy frees the zeros tensor; the variable keeps its own reference to the data
    for (const [name, p] of params) for (const s of slots) this.vars.set(this.key(s, name), tf.tidy(() => tf.variable(tf.zerosLike(p), false)));
  }

  key(slot: string, param: string): string {
    return `${this.prefix}/${slot}/${param}`;
  }

  get(slot: string, param: string): tf.Variable {
    return this.vars.get(this.key(slot, param))!;
  }

  state(): OptimizerState {
    const out: OptimizerState = {};
    for (const [k, v] of this.vars) out[k] = toPlain(v);
    return out;
  }

  load(state: OptimizerState): void {
    for (const [k, v] of this.vars) {
      const s = state[k];
      if (!isPlainTensor(s)) throw new Error(`optimizer state: '${k}' is missing`);
      if (!sameShape(s.shape, v.shape)) throw new Error(`optimizer state: '${k}' has shape [${s.shape}], the param has [${v.shape}]`);
      tf.tidy(() => v.assign(fromPlain(s)));
    }
  }

  dispose(): void {
    for (const v of this.vars.values()) v.dispose();
    this.vars.clear();
  }
}

function checkGrad(name: string, p: tf.Variable, g: tf.Tensor): void {
  if (!sameShape(p.shape, g.shape)) throw new Error(`optimizer: gradient of '${name}' has shape [${g.shape}], the param has [${p.shape}]`);
}

export function createSgd(params: Map<string, tf.Variable>, config: OptimizerConfig): Optimizer {
  const mu = config.momentum ?? 0;
  const wd = config.weightDecay ?? 0;
  const nesterov = config.nesterov ?? false;
  if (nesterov && mu <= 0) throw new Error('sgd: nesterov needs momentum > 0');
  const decays = decayTest(config);
  const slots = new Slots('sgd', params, mu !== 0 ? ['momentum'] : []);
  return {
    kind: 'sgd',
    step(grads, lr) {
      tf.tidy(() => {
        const items = [...params].filter(([name]) => grads.has(name)).map(([name, p]) => {
          const g = grads.get(name)!;
          checkGrad(name, p, g);
          return { p, g, buf: mu !== 0 ? slots.get('momentum', name) : undefined, s: { lr, wd: decays(name) ? wd : 0, mu, nesterov } };
        });
        sgdSteps(items).forEach((r, i) => {
          const { p, buf } = items[i];
          if (buf) buf.assign(r.buf!);
          p.assign(r.p);
        });
      });
    },
    state: () => slots.state(),
    load: (s) => slots.load(s),
    dispose: () => slots.dispose(),
  };
}

export function createAdam(params: Map<string, tf.Variable>, config: OptimizerConfig): Optimizer {
  const [b1, b2] = config.betas ?? [0.9, 0.999];
  const eps = config.eps ?? 1e-8;
  const wd = config.weightDecay ?? 0;
  const decoupled = config.decoupled ?? config.kind === 'adamw';
  const decays = decayTest(config);
  const kind = decoupled ? 'adamw' : 'adam';
  const slots = new Slots(kind, params, ['exp_avg', 'exp_avg_sq']);
  // per-param step counts, as PyTorch keeps them (a param without a gradient does not advance)
  const steps = new Map<string, number>([...params.keys()].map((n) => [n, 0]));
  const stepKey = (name: string) => `${kind}/step/${name}`;
  return {
    kind,
    step(grads, lr) {
      tf.tidy(() => {
        const items = [...params].filter(([name]) => grads.has(name)).map(([name, p]) => {
          const g = grads.get(name)!;
          checkGrad(name, p, g);
          const step = steps.get(name)! + 1;
          steps.set(name, step);
          const s = adamScalars({ lr, b1, b2, eps, wd: decays(name) ? wd : 0, decoupled, step });
          return { p, g, m: slots.get('exp_avg', name), v: slots.get('exp_avg_sq', name), s };
        });
        adamSteps(items).forEach((r, i) => {
          const { p, m, v } = items[i];
          m.assign(r.m);
          v.assign(r.v);
          p.assign(r.p);
        });
      });
    },
    state() {
      const out = slots.state();
      for (const [name, t] of steps) out[stepKey(name)] = { dtype: 'int32', shape: [], data: Int32Array.of(t) };
      return out;
    },
    load(s) {
      slots.load(s);
      for (const name of steps.keys()) {
        const t = s[stepKey(name)];
        if (!isPlainTensor(t) || t.data.length !== 1) throw new Error(`optimizer state: '${stepKey(name)}' is missing`);
        steps.set(name, t.data[0]!);
      }
    },
    dispose: () => slots.dispose(),
  };
}

registerOptimizer('sgd', createSgd);
registerOptimizer('adam', createAdam);
registerOptimizer('adamw', (params, config) => createAdam(params, { ...config, decoupled: config.decoupled ?? true }));
