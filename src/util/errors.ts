// User-facing errors: one clear line for the CLI, plus an optional hint on what to do.

export class QatError extends Error {
  override readonly name = 'QatError';
  /** what the user can do about it (a command, a flag); printed on its own line */
  readonly hint?: string;

  constructor(message: string, hint?: string, options?: { cause?: unknown }) {
    super(message, options);
    if (hint !== undefined) this.hint = hint;
  }
}

export function isQatError(e: unknown): e is QatError {
  return e instanceof QatError;
}

/** The text a CLI prints for an error: message and hint for a QatError, the stack for anything else (a bug). */
export function formatError(e: unknown): string {
  if (e instanceof QatError) return e.hint ? `error: ${e.message}\nhint: ${e.hint}` : `error: ${e.message}`;
  if (e instanceof Error) return `internal error: ${e.stack ?? e.message}`;
  return `internal error: ${String(e)}`;
}
