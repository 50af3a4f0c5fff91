import { isKeyholdError, type ErrorCode } from '../errors/index.ts';

/** What a database error means to the caller, for either dialect. */

interface DriverError { code?: unknown; severity?: unknown; errcode?: unknown }

/** A PostgreSQL error of class 22, "data exception" (pg's DatabaseError carries the SQLSTATE and a severity). */
export function isDataException(err: unknown): boolean {
  const e = err as DriverError | null;
  return typeof e?.severity === 'string' && typeof e.code === 'string' && /^22[0-9A-Z]{3}$/.test(e.code);
}

/** A unique-constraint violation (PostgreSQL's 23505, SQLite's "UNIQUE constraint failed"). */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: unknown; message?: unknown } | null;
  if (e?.code === '23505') return true;
  return typeof e?.message === 'string' && /UNIQUE constraint failed/.test(e.message);
}

/** SQLite's primary result codes for another connection holding the lock, and for a table locked within one. */
export const SQLITE_BUSY = 5;
const SQLITE_LOCKED = 6;

/** node:sqlite's primary result code of `err` (extended codes keep it in the low byte); null for any other error. */
export function sqliteResultCode(err: unknown): number | null {
  const e = err as DriverError | null;
  return e?.code === 'ERR_SQLITE_ERROR' && typeof e.errcode === 'number' ? e.errcode & 0xff : null;
}

/**
 * The transaction lost to a concurrent one and was rolled back, and nothing is wrong with the
 * database: PostgreSQL's class 40 (a deadlock, a serialization failure) or a lock not granted within
 * the pool's lock_timeout (55P03), or SQLite still busy or locked after its timeout. Retrying the
 * request is the answer.
 */
export function isTransactionConflict(err: unknown): boolean {
  const e = err as DriverError | null;
  if (typeof e?.severity === 'string' && typeof e.code === 'string') return /^40[0-9A-Z]{3}$/.test(e.code) || e.code === '55P03';
  const sqlite = sqliteResultCode(err);
  return sqlite === SQLITE_BUSY || sqlite === SQLITE_LOCKED;
}

/**
 * PostgreSQL cancelled the statement (57014, query_canceled): it ran past the pool's
 * statement_timeout (KEYHOLD_DB_STATEMENT_TIMEOUT), or an administrator cancelled it. Its
 * transaction is rolled back; the database is slow or the query too broad, so not an instant retry.
 */
export function isStatementTimeout(err: unknown): boolean {
  const e = err as DriverError | null;
  return typeof e?.severity === 'string' && e.code === '57014';
}

/**
 * No PostgreSQL pool connection came free, or a new one opened, within the pool's wait
 * (postgres-dialect.ts, POOL_WAIT_MS): every connection is held (requests stuck inside transactions,
 * a flood) or the database does not answer. Nothing ran; the caller is told DATABASE_TIMEOUT.
 */
export class PoolWaitTimeout extends Error {
  constructor(waitedMs: number) {
    super(`no database connection came free or opened within ${waitedMs} ms (every pool connection is held, or the database does not answer); nothing was done (DATABASE_TIMEOUT)`);
    this.name = 'PoolWaitTimeout';
  }
}

/** The database took too long: a statement cancelled by its timeout, or no pool connection in time. */
export function isDatabaseTimeout(err: unknown): boolean {
  return isStatementTimeout(err) || err instanceof PoolWaitTimeout;
}

/**
 * The catalogued code a failure is recorded under (audit events' `reason`): a Keyhold error's own,
 * a lost transaction or a cancelled statement or pool wait as the caller is told (TRANSACTION_CONFLICT,
 * DATABASE_TIMEOUT), anything else INTERNAL. Never a driver's own code, which is not in the catalogue.
 */
export function failureCode(err: unknown): ErrorCode {
  if (isKeyholdError(err)) return err.code;
  if (isTransactionConflict(err)) return 'TRANSACTION_CONFLICT';
  if (isDatabaseTimeout(err)) return 'DATABASE_TIMEOUT';
  return 'INTERNAL';
}
