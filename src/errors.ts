// Error base of nspawn-ts. Every error carries a stable `code` (area-prefixed: SYS_, NL_, DHCP_,
// NFT_, CFG_, ...) that callers and tests branch on; the message says what failed on which object
// in words a user can act on. Context is added once per layer through `cause`.

export class NspawnError extends Error {
  readonly code: string;

  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bad user input (flags, settings files, names, API requests): exit code 1, nothing changed. */
export class ConfigError extends NspawnError {
  constructor(message: string, options?: { cause?: unknown; code?: string }) {
    super(options?.code ?? 'CFG_INVALID', message, options);
  }
}

/** Cleanup that went on after failures: every failure is kept, none stops the others. */
export class TeardownError extends NspawnError {
  readonly errors: readonly unknown[];

  constructor(what: string, errors: readonly unknown[]) {
    const first = errors[0];
    const detail = first instanceof Error ? first.message : String(first);
    super('TEARDOWN_FAILED', `${what}: ${errors.length} step(s) failed; first: ${detail}`, { cause: first });
    this.errors = errors;
  }
}

/** The message of any thrown value, for logs and CLI output. */
export function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
