// Phase-2 placeholder: the native addon is not built yet.
export async function registerNativeBackend(): Promise<string> {
  throw new Error('native addon not built yet');
}
