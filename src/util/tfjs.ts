// tfjs-core setup shared by training, PTQ and tests.
// tfjs-core's Node bundle (dist/tf-core.node.js) has no gradient functions: they live only in its ESM build, which
// Node cannot load as is (extensionless imports). We load that build's register_all_gradients.js through a small
// resolve hook. Its gradients go into tfjs's global gradient registry, used by the one global engine, so they
// serve the ops of the Node bundle too.
import * as tf from '@tensorflow/tfjs-core';
import { register } from 'node:module';

let loading: Promise<void> | undefined;

/** Registers tfjs-core's gradients once (idempotent; a no-op when something else already registered them). */
export function registerGradients(): Promise<void> {
  if (tf.getGradient('Sum') !== undefined) return Promise.resolve();
  loading ??= (async () => {
    register(new URL('./tfjs-resolve-hook.js', import.meta.url));
    await import('@tensorflow/tfjs-core/dist/register_all_gradients.js');
    if (tf.getGradient('Sum') === undefined) throw new Error('registerGradients: tfjs-core gradients did not register');
  })();
  return loading;
}

/** Gradients registered and the backend ready. 'cpu' is imported here; other backends must be imported by the caller. */
export async function setupTfjs(opts: { backend?: string } = {}): Promise<void> {
  const backend = opts.backend ?? 'cpu';
  if (backend === 'cpu') await import('@tensorflow/tfjs-backend-cpu');
  await registerGradients();
  if (!(await tf.setBackend(backend))) throw new Error(`setupTfjs: tfjs backend '${backend}' failed to initialize`);
  // The cpu backend prints an advert for tfjs-node on its first tensor; it is noise in logs and test output.
  const b = tf.backend() as unknown as { firstUse?: boolean };
  if (b.firstUse === true) b.firstUse = false;
}
