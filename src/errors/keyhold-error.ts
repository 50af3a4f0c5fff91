import { errorCatalogue, type ErrorCode } from './catalogue.ts';

/** The only error type domain code throws; the HTTP layer maps it to `{ error: { code, message, requestId } }`. */
export class KeyholdError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly details: Readonly<Record<string, unknown>> | undefined;

  constructor(code: ErrorCode, message: string, details?: Record<string, unknown>) {
    super(message);
    this.name = 'KeyholdError';
    this.code = code;
    this.status = errorCatalogue[code].status;
    this.details = details;
  }
}

/** Throws a catalogued error; typed `never` so control flow narrows after it. */
export function fail(code: ErrorCode, message: string, details?: Record<string, unknown>): never {
  throw new KeyholdError(code, message, details);
}

export function isKeyholdError(err: unknown): err is KeyholdError {
  return err instanceof KeyholdError;
}
