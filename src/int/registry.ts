// Integer kernels registered by (domain, op), as tfjs registers kernels by name per backend.
import type { Node, TensorData } from '../graph/ir.js';

/** How a QLinear* kernel turns its int32 accumulator into the output integer. */
export type Requant = 'float' | 'fixedpoint' | 'fixedpoint-single';

export const REQUANT_MODES: readonly Requant[] = ['float', 'fixedpoint', 'fixedpoint-single'];

/** Either fixed-point mode (int32 multiplier and shift): the kernels' switch between float and integer arithmetic. */
export const isFixedPoint = (r: Requant): boolean => r !== 'float';

export interface KernelContext {
  node: Node;
  /**
   * 'float': ONNX/ONNX Runtime semantics, float32(acc) * float32 multiplier, round half to even.
   * 'fixedpoint': gemmlowp/TFLite int32 multiplier and shift (see fixedpoint.ts), rounded twice as gemmlowp does.
   * 'fixedpoint-single': the same multiplier and shift, the product rounded once (TFLITE_SINGLE_ROUNDING).
   */
  requant: Requant;
  /** opset version imported for the node's domain (0 when the graph imports none) */
  opset: number;
  /** whether input i is a session constant (initializer, folded, or omitted), so derived data may be cached */
  isConst(i: number): boolean;
  /** per-node cache kept across runs of one session, for data derived from constant inputs */
  cache: Map<string, unknown>;
  /**
   * An output range inside the output dtype's, from a Clip the session folded into this node (kernels with
   * `clampable`): a sub-8-bit grid such as [0, 15] in uint8, or a ReLU at the zero point. Undefined: the dtype's range.
   */
  clamp?: { qmin: number; qmax: number };
}

export interface IntKernel {
  op: string;
  /** '' (default) is ai.onnx */
  domain?: string;
  /** the kernel saturates its first output to ctx.clamp when given, so a following Clip can fold into it */
  clampable?: boolean;
  /** inputs[i] is undefined for an omitted optional input; returns one tensor per node output */
  run(inputs: ReadonlyArray<TensorData | undefined>, ctx: KernelContext): TensorData[];
}

const kernels = new Map<string, IntKernel>();

export function normDomain(domain: string | undefined): string {
  return domain === undefined || domain === 'ai.onnx' ? '' : domain;
}

const key = (domain: string | undefined, op: string): string => `${normDomain(domain)}::${op}`;

/** Register (or replace) the kernel for (domain, op). */
export function registerIntKernel(k: IntKernel): void {
  kernels.set(key(k.domain, k.op), k);
}

export function unregisterIntKernel(op: string, domain?: string): boolean {
  return kernels.delete(key(domain, op));
}

export function getIntKernel(op: string, domain?: string): IntKernel | undefined {
  return kernels.get(key(domain, op));
}

/** 'op' for ai.onnx kernels, 'domain::op' otherwise, sorted. */
export function listIntKernels(): string[] {
  return [...kernels.values()].map((k) => (normDomain(k.domain) ? `${k.domain}::${k.op}` : k.op)).sort();
}
