// Registers tfjs-core's gradient configs (the Node bundle of tfjs-core carries none).
import { register } from 'node:module';
import * as tf from '@tensorflow/tfjs-core';

let done: Promise<void> | null = null;

/** Idempotent. After it resolves, tf.grad/tf.grads/optimizers work for every kernel tfjs has a gradient for. */
export function registerAllGradients(): Promise<void> {
  if (done) return done;
  done = (async () => {
    if (tf.getGradient('Conv2D') != null) return; // someone already did it
    register(new URL('./esm_hooks.js', import.meta.url).href);
    await import('@tensorflow/tfjs-core/dist/register_all_gradients.js' as string);
    if (tf.getGradient('Conv2D') == null) throw new Error('qatkit: registering tfjs gradients failed');
  })();
  return done;
}
