// QuantController: runs the observers of a prepared graph's quantizers and writes their qparams into the session's
// scale / zero-point variables. Modes: calibrate (observe, float forward), observe+quantize (early QAT), frozen.
import * as tf from '@tensorflow/tfjs-core';
import { attrInt, attrString, QATKIT_DOMAIN, type Graph, type Node } from '../graph/ir.js';
import type { Session } from '../ops/session.js';
import { createObserver, type Observer, type ObserverState } from '../quant/observers.js';
import { validateObserver, type QuantSpec } from '../spec/quantspec.js';
import { QUANT_SERVICE, type QuantHooks } from './qat_ops.js';

interface Entry {
  observer: Observer;
  scale: string;
  zeroPoint: string;
  /** LSQ scales are learned: the observer only initializes them */
  learned: boolean;
  seen: boolean;
}

/** The QuantSpec a FakeQuant (or ConvBn, prefix 'w_') node encodes. */
export function specOf(n: Node, prefix = ''): QuantSpec {
  const axis = attrInt(n, `${prefix}axis`);
  return {
    bits: attrInt(n, `${prefix}bits`, 8),
    signed: attrInt(n, `${prefix}signed`, 0) === 1,
    symmetric: attrInt(n, `${prefix}symmetric`, 0) === 1,
    narrowRange: attrInt(n, `${prefix}narrow`, 0) === 1,
    granularity: axis === undefined ? { kind: 'per_tensor' } : { kind: 'per_channel', axis },
  };
}

export class QuantController implements QuantHooks {
  /** false: quantizers pass values through (PTQ calibration runs the float model) */
  enabled = true;
  /** false: observers frozen, qparams stay as they are */
  observing = true;
  readonly entries = new Map<string, Entry>();

  constructor(private readonly session: Session) {
    const g: Graph = session.graph;
    for (const n of g.nodes) {
      if (n.domain !== QATKIT_DOMAIN) continue;
      if (n.op === 'FakeQuant' && attrInt(n, 'shared', 0) !== 1) this.add(n.name, n, '', n.inputs[1], n.inputs[2]);
      if (n.op === 'ConvBn') this.add(`${n.name}/weight`, n, 'w_', n.inputs[7], n.inputs[8]);
    }
    session.setService(QUANT_SERVICE, this);
  }

  private add(key: string, n: Node, prefix: string, scale: string, zeroPoint: string): void {
    const cfg = validateObserver(JSON.parse(attrString(n, `${prefix}observer`, '"minmax"')), `node '${n.name}' observer`);
    this.entries.set(key, {
      observer: createObserver(cfg, specOf(n, prefix)),
      scale,
      zeroPoint,
      learned: attrString(n, `${prefix}estimator`, 'ste') === 'lsq',
      seen: false,
    });
  }

  observe(key: string, x: tf.Tensor): void {
    if (!this.observing) return;
    const e = this.entries.get(key);
    if (!e) return;
    // a learned scale is initialized from the first observation, then left to the optimizer
    if (e.learned && e.seen) return;
    e.observer.observe(x);
    e.seen = true;
    const { scale, zeroPoint } = e.observer.qparams();
    const sv = this.session.vars.get(e.scale)!;
    const zv = this.session.vars.get(e.zeroPoint)!;
    tf.tidy(() => {
      sv.assign(tf.tensor(scale, sv.shape, 'float32'));
      zv.assign(tf.tensor(zeroPoint, zv.shape, 'float32'));
    });
  }

  /** LSQ scales can be stepped through zero; keep them at least eps, as PyTorch's _LearnableFakeQuantize does. */
  clampLearnedScales(eps = 1.1920928955078125e-7): void {
    for (const e of this.entries.values()) {
      if (!e.learned) continue;
      const v = this.session.vars.get(e.scale)!;
      tf.tidy(() => v.assign(tf.maximum(v, eps)));
    }
  }

  state(): Record<string, ObserverState> {
    return Object.fromEntries([...this.entries].filter(([, e]) => e.seen).map(([k, e]) => [k, e.observer.state()]));
  }

  load(state: Record<string, ObserverState>): void {
    for (const [k, s] of Object.entries(state)) {
      const e = this.entries.get(k);
      if (e) {
        e.observer.load(s);
        e.seen = true;
      }
    }
  }
}
