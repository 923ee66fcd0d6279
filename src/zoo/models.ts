// The model zoo: builders that return IR graphs. Registered by name so the CLI and benchmarks look them up.
import type { Graph } from '../graph/ir.js';
import { GraphBuilder } from './builder.js';

export interface ModelOptions {
  /** input [C, H, W] */
  inputShape: [number, number, number];
  numClasses: number;
  seed?: number;
}

export type ModelFactory = (o: ModelOptions) => Graph;

const models = new Map<string, { factory: ModelFactory; description: string }>();

export function registerModel(name: string, description: string, factory: ModelFactory): void {
  models.set(name, { factory, description });
}

export function modelNames(): string[] {
  return [...models.keys()];
}

export function buildModel(name: string, o: ModelOptions): Graph {
  const m = models.get(name);
  if (!m) throw new Error(`unknown model '${name}' (known: ${modelNames().join(', ')})`);
  return m.factory(o);
}

function start(name: string, o: ModelOptions): [GraphBuilder, string] {
  const b = new GraphBuilder(name, o.seed ?? 0);
  return [b, b.input('input', ['N', ...o.inputShape])];
}

registerModel('mlp', 'two hidden layers of 256 and 128 with ReLU', (o) => {
  const [b, x] = start('mlp', o);
  const fin = o.inputShape.reduce((p, d) => p * d, 1);
  let h = b.flatten(x);
  h = b.relu(b.linear(h, fin, 256));
  h = b.relu(b.linear(h, 256, 128));
  b.output(b.linear(h, 128, o.numClasses));
  return b.g;
});

registerModel('lenet5', 'LeNet-5 (conv 6, conv 16, fc 120-84) with BatchNorm after each conv, ReLU and max-pooling', (o) => {
  const [b, x] = start('lenet5', o);
  const [c, H, W] = o.inputShape;
  let h = b.maxPool(b.relu(b.bn(b.conv(x, c, 6, 5, { pad: 2, bias: false }), 6)), 2);
  h = b.maxPool(b.relu(b.bn(b.conv(h, 6, 16, 5, { bias: false }), 16)), 2);
  const fh = Math.floor((Math.floor(H / 2) - 4) / 2);
  const fw = Math.floor((Math.floor(W / 2) - 4) / 2);
  h = b.flatten(h);
  h = b.relu(b.linear(h, 16 * fh * fw, 120));
  h = b.relu(b.linear(h, 120, 84));
  b.output(b.linear(h, 84, o.numClasses));
  return b.g;
});

/** ResNet for small images (He et al. 2016, CIFAR variant): 3 stages of `blocks` basic blocks, widths w, 2w, 4w. */
function resnet(name: string, blocks: number, width: number): ModelFactory {
  return (o) => {
    const [b, x] = start(name, o);
    const convBn = (h: string, cin: number, cout: number, k: number, stride: number) =>
      b.bn(b.conv(h, cin, cout, k, { stride, pad: (k - 1) / 2, bias: false, init: 'kaiming' }), cout);
    let h = b.relu(convBn(x, o.inputShape[0], width, 3, 1));
    let cin = width;
    for (let stage = 0; stage < 3; stage++) {
      const cout = width << stage;
      for (let i = 0; i < blocks; i++) {
        const stride = stage > 0 && i === 0 ? 2 : 1;
        const y = convBn(b.relu(convBn(h, cin, cout, 3, stride)), cout, cout, 3, 1);
        const shortcut = stride !== 1 || cin !== cout ? convBn(h, cin, cout, 1, stride) : h;
        h = b.relu(b.add(y, shortcut));
        cin = cout;
      }
    }
    h = b.flatten(b.globalAvgPool(h));
    b.output(b.linear(h, cin, o.numClasses));
    return b.g;
  };
}

registerModel('resnet8', 'ResNet-8: 3 stages of one basic block, widths 16/32/64, BatchNorm, residual adds', resnet('resnet8', 1, 16));
registerModel('resnet20', 'ResNet-20: 3 stages of three basic blocks, widths 16/32/64', resnet('resnet20', 3, 16));
