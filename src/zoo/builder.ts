// A small builder that writes IR graphs (ONNX semantics, NCHW) with seeded, PyTorch-like initialization.
import { emptyGraph, floatTensor, int, ints, float, type Graph, type Node } from '../graph/ir.js';
import { Rng } from '../util/rng.js';

export class GraphBuilder {
  readonly g: Graph;
  private rng: Rng;
  private counts = new Map<string, number>();

  constructor(name: string, seed: number) {
    this.g = emptyGraph(name, 17);
    this.rng = new Rng(seed);
  }

  private fresh(prefix: string): string {
    const k = (this.counts.get(prefix) ?? 0) + 1;
    this.counts.set(prefix, k);
    return `${prefix}${k}`;
  }

  input(name: string, shape: (number | string)[]): string {
    this.g.inputs.push({ name, dtype: 'float32', shape });
    return name;
  }

  output(name: string, shape?: (number | string)[]): void {
    this.g.outputs.push({ name, dtype: 'float32', shape });
  }

  private uniform(dims: number[], bound: number): Float32Array {
    const n = dims.reduce((a, b) => a * b, 1);
    const a = new Float32Array(n);
    for (let i = 0; i < n; i++) a[i] = (this.rng.float() * 2 - 1) * bound;
    return a;
  }

  param(name: string, dims: number[], data: Float32Array): string {
    this.g.initializers.set(name, floatTensor(dims, data));
    return name;
  }

  node(op: string, inputs: string[], attrs: Node['attrs'] = {}, name = this.fresh(op.toLowerCase()), nOut = 1): string[] {
    const outputs = nOut === 1 ? [name] : Array.from({ length: nOut }, (_, i) => `${name}_out${i}`);
    this.g.nodes.push({ name, op, inputs, outputs, attrs });
    return outputs;
  }

  /** Conv with PyTorch's default init (kaiming_uniform a=sqrt(5): U(+-1/sqrt(fan_in))), or kaiming-normal-like fan_out init. */
  conv(x: string, cin: number, cout: number, k: number, opts: { stride?: number; pad?: number; bias?: boolean; init?: 'default' | 'kaiming' } = {}): string {
    const name = this.fresh('conv');
    const fanIn = cin * k * k;
    const bound = opts.init === 'kaiming' ? Math.sqrt(3) * Math.sqrt(2 / (cout * k * k)) : 1 / Math.sqrt(fanIn);
    const w = this.param(`${name}.weight`, [cout, cin, k, k], this.uniform([cout, cin, k, k], bound));
    const inputs = [x, w];
    if (opts.bias ?? true) inputs.push(this.param(`${name}.bias`, [cout], this.uniform([cout], 1 / Math.sqrt(fanIn))));
    const p = opts.pad ?? 0;
    const s = opts.stride ?? 1;
    return this.node('Conv', inputs, { kernel_shape: ints([k, k]), strides: ints([s, s]), pads: ints([p, p, p, p]) }, name)[0];
  }

  bn(x: string, c: number): string {
    const name = this.fresh('bn');
    const ones = new Float32Array(c).fill(1);
    return this.node(
      'BatchNormalization',
      [
        x,
        this.param(`${name}.weight`, [c], ones),
        this.param(`${name}.bias`, [c], new Float32Array(c)),
        this.param(`${name}.running_mean`, [c], new Float32Array(c)),
        this.param(`${name}.running_var`, [c], ones.slice()),
      ],
      { epsilon: float(1e-5), momentum: float(0.9) },
      name,
    )[0];
  }

  relu(x: string): string {
    return this.node('Relu', [x])[0];
  }

  add(a: string, b: string): string {
    return this.node('Add', [a, b])[0];
  }

  maxPool(x: string, k: number, s = k): string {
    return this.node('MaxPool', [x], { kernel_shape: ints([k, k]), strides: ints([s, s]) })[0];
  }

  globalAvgPool(x: string): string {
    return this.node('GlobalAveragePool', [x])[0];
  }

  flatten(x: string): string {
    return this.node('Flatten', [x], { axis: int(1) })[0];
  }

  /** Linear layer as Gemm with transB=1 (PyTorch's weight layout [out, in]). */
  linear(x: string, fin: number, fout: number): string {
    const name = this.fresh('fc');
    const bound = 1 / Math.sqrt(fin);
    const w = this.param(`${name}.weight`, [fout, fin], this.uniform([fout, fin], bound));
    const b = this.param(`${name}.bias`, [fout], this.uniform([fout], bound));
    return this.node('Gemm', [x, w, b], { transB: int(1) }, name)[0];
  }
}
