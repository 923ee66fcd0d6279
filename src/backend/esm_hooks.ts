// Node ESM resolve hook, installed by gradients.ts through module.register().
// tfjs-core ships its gradient configs only as extensionless ESM (dist/gradients/*.js
// import './x' without '.js'), which Node's ESM resolver rejects. We add the missing
// extension, only for imports made from inside tfjs-core's dist folder.

type Next = (spec: string, ctx: unknown) => Promise<unknown>;

export async function resolve(spec: string, ctx: { parentURL?: string }, next: Next): Promise<unknown> {
  const p = ctx.parentURL;
  if (p && p.includes('/@tensorflow/tfjs-core/dist/') && spec.startsWith('.') && !spec.endsWith('.js')) {
    try {
      return await next(spec + '.js', ctx);
    } catch {
      return next(spec + '/index.js', ctx);
    }
  }
  return next(spec, ctx);
}
