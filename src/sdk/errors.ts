/**
 * Codes the SDK raises itself, when there is no server answer to carry: every other code is the
 * server's own (docs/errors.md), passed through unchanged.
 */
export const CLIENT_ERROR_CODES = ['NOT_CONFIGURED', 'INVALID_NAME', 'UNREACHABLE', 'TIMEOUT', 'BAD_RESPONSE', 'CLOSED'] as const;
export type ClientErrorCode = (typeof CLIENT_ERROR_CODES)[number];

/**
 * Every failure of the SDK: a stable `code` (the server's, e.g. `FORBIDDEN`, or one of
 * CLIENT_ERROR_CODES), the HTTP status when the server answered, and its request id. The message
 * never contains a secret value or the token.
 */
export class KeyholdError extends Error {
  readonly code: string;
  /** The HTTP status of the server's answer; null when no answer came (UNREACHABLE, TIMEOUT, ...). */
  readonly status: number | null;
  /** The server's request id, to find the matching audit event and log line. */
  readonly requestId: string | null;

  constructor(code: string, message: string, opts: { status?: number | null; requestId?: string | null } = {}) {
    super(message);
    this.name = 'KeyholdError';
    this.code = code;
    this.status = opts.status ?? null;
    this.requestId = opts.requestId ?? null;
  }
}

/** Type guard for SDK errors, optionally of one code. */
export function isKeyholdError(err: unknown, code?: string): err is KeyholdError {
  return err instanceof KeyholdError && (code === undefined || err.code === code);
}
