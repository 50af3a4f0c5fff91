import { SQLITE_BUSY, sqliteResultCode } from '../db-errors.ts';

const RETRY_MS = 10;

/**
 * Runs `exec('PRAGMA journal_mode = WAL')`, tried again for up to `timeoutMs` while SQLite answers busy. Two
 * connections opening one new file at once (two nodes starting) can find it mid-switch, and SQLite answers that
 * busy at once, without the busy handler the connection's timeout sets up. Any other error, and busy past the
 * timeout, is thrown. Synchronous, as opening the file is: it waits by blocking this thread, at start-up only.
 */
export function enableWal(exec: (sql: string) => void, timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      exec('PRAGMA journal_mode = WAL');
      return;
    } catch (err) {
      if (sqliteResultCode(err) !== SQLITE_BUSY || Date.now() >= deadline) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, RETRY_MS);
    }
  }
}
