// Op handlers: IR op -> tfjs ops. tfjs records the gradients, so a handler is only a forward.
import type * as tf from '@tensorflow/tfjs-core';
import type { Node, TensorData } from '../graph/ir.js';

export type Layout = 'nchw' | 'nhwc';

/** What a handler may ask of the running session. */
export interface OpCtx {
  node: Node;
  training: boolean;
  /** layout of the 4-D tensors this handler receives (and must return) */
  layout: Layout;
  /** the value of input i when it is a graph initializer (for shapes, axes): no tensor read-back needed */
  constInput(i: number): TensorData | undefined;
  /** (handlers with fusesRelu) input 0 is the input of a Relu whose output only this node reads: apply relu to it */
  reluInput?: boolean;
  /** (handlers with fusesReluAfter) output 0 feeds a Relu that alone reads it: return relu(output 0) instead */
  reluOutput?: boolean;
  /** services a few ops need (BatchNormalization's running statistics, fake-quant's observers) */
  session: OpServices;
}

export interface OpServices {
  /**
   * BatchNormalization in training: after the step (applyUpdates), running <- running*momentum + stat*scale*(1-momentum)
   * for initializer `name`. Deferred, it stays off the gradient tape.
   */
  scheduleRunningAverage(name: string, stat: tf.Tensor, momentum: number, scale?: number): void;
  /** true once BatchNorm statistics are frozen: training then uses running stats */
  readonly bnFrozen: boolean;
  /** a named service registered by a higher layer (fake-quant lives in quant/transform) */
  service<T>(name: string): T | undefined;
}

/**
 * 'spatial': the handler takes NHWC for 4-D data inputs and returns NHWC (conv, pools, BN).
 * 'elementwise': NHWC is fine when every non-scalar input is 4-D (relu, add, clip...).
 * unset: the handler sees ONNX's NCHW.
 */
export type LayoutSupport = 'spatial' | 'elementwise';

export interface OpHandler {
  op: string;
  domain?: string;
  layout?: LayoutSupport;
  /** 'spatial' ops: which inputs are data (converted to NHWC); default [0] */
  dataInputs?: number[] | 'all';
  /** inputs that are state updated outside the optimizer (BN running stats, observed qparams) */
  buffers?(node: Node): number[];
  /** takes input 0 before a Relu that only it reads (ctx.reluInput), so the pair can run as one pass; the session
   *  then skips the Relu node */
  fusesRelu?: boolean;
  /** returns relu of its output 0 (ctx.reluOutput) when a Relu alone reads it; the session then skips the Relu node */
  fusesReluAfter?: boolean;
  run(ctx: OpCtx, inputs: (tf.Tensor | undefined)[]): tf.Tensor[];
}

const handlers = new Map<string, OpHandler>();
const key = (domain: string | undefined, op: string) => `${domain || ''}::${op}`;

export function registerOp(h: OpHandler): void {
  handlers.set(key(h.domain, h.op), h);
}

export function getOp(domain: string | undefined, op: string): OpHandler | undefined {
  return handlers.get(key(domain, op));
}

export function registeredOps(): string[] {
  return [...handlers.keys()];
}
