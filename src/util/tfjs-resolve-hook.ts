// Node module-resolution hook, registered by tfjs.ts. tfjs-core ships its gradients only in its ESM build (dist/*.js),
// whose relative imports have no file extension: Node's ESM loader needs one. This adds '.js' (or '/index.js')
// for imports made from inside @tensorflow/tfjs-core/dist and leaves every other import alone.

interface ResolveContext {
  parentURL?: string;
}
type NextResolve = (specifier: string, context: ResolveContext) => Promise<unknown>;

export async function resolve(specifier: string, context: ResolveContext, next: NextResolve): Promise<unknown> {
  const fromTfjsDist = context.parentURL?.includes('/@tensorflow/tfjs-core/dist/') ?? false;
  if (fromTfjsDist && specifier.startsWith('.') && !/\.[cm]?js$/.test(specifier)) {
    try {
      return await next(`${specifier}.js`, context);
    } catch {
      return next(`${specifier}/index.js`, context);
    }
  }
  return next(specifier, context);
}
