/**
 * Model rows of bench/speed.ts: one training step (forward, backward, SGD-momentum update)
 * of LeNet-5 (28x28x1, batch 64) and ResNet-8 (32x32x3, batch 32) from src/zoo, float and
 * QAT w4a8 (prepare() with the builtin recipe: per-channel 4-bit weights, 8-bit activations,
 * observers frozen as in the steady state of a QAT run), next to the same step in PyTorch
 * (bench/speed_peer.py cases of the same name; keep the two definitions in step).
 */
import * as tf from '@tensorflow/tfjs-core';
import type { Row } from './speed.js';
import { buildModel } from '../src/zoo/models.js';
import { Session } from '../src/ops/session.js';
import { prepare } from '../src/transform/prepare.js';
import { QuantController } from '../src/transform/controller.js';
import { recipeByName } from '../src/spec/quantspec.js';
import { createOptimizer } from '../src/train/optim.js';
import { softmaxCrossEntropy } from '../src/train/losses.js';

interface ModelCase { name: string; model: string; input: [number, number, number]; batch: number; qat: boolean }

const CASES: ModelCase[] = [
  { name: 'lenet5_train_float', model: 'lenet5', input: [1, 28, 28], batch: 64, qat: false },
  { name: 'lenet5_train_w4a8', model: 'lenet5', input: [1, 28, 28], batch: 64, qat: true },
  { name: 'resnet8_train_float', model: 'resnet8', input: [3, 32, 32], batch: 32, qat: false },
  { name: 'resnet8_train_w4a8', model: 'resnet8', input: [3, 32, 32], batch: 32, qat: true },
];

function row(c: ModelCase): Row {
  return {
    name: c.name,
    peer: [c.name],
    setup: async () => {
      const g = buildModel(c.model, { inputShape: c.input, numClasses: 10, seed: 1 });
      const s = new Session(c.qat ? prepare(g, { recipe: recipeByName('w4a8'), mode: 'qat' }) : g);
      if (c.qat) {
        const ctrl = new QuantController(s);
        // One observing forward pass sets the quantizer ranges, then observers freeze.
        tf.tidy(() => { s.run({ input: tf.randomNormal([c.batch, ...c.input]) }, { training: true }); });
        s.applyUpdates();
        ctrl.observing = false;
      }
      const x = tf.randomNormal([c.batch, ...c.input]);
      const y = tf.tensor1d(Int32Array.from({ length: c.batch }, (_, i) => i % 10), 'int32');
      const params = s.params();
      const opt = createOptimizer(params, { kind: 'sgd', lr: 0.01, momentum: 0.9, weightDecay: 5e-4 });
      const vars = [...params.values()];
      const names = [...params.keys()];
      const run = () => {
        tf.tidy(() => {
          const { value, grads } = tf.variableGrads(() => softmaxCrossEntropy(s.run({ input: x }, { training: true })[0], y), vars);
          const byName = new Map(names.map((n, i) => [n, grads[vars[i].name]]));
          opt.step(byName, 0.01);
          value.dataSync(); // a real loop reads the loss
        });
        s.applyUpdates();
      };
      return { run, dispose: () => { tf.dispose([x, y]); opt.dispose(); s.dispose(); } };
    },
  };
}

export async function modelRows(): Promise<Row[]> {
  return CASES.map(row);
}
