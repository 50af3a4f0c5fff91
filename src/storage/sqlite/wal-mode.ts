/** SQLite's primary result code for "another connection holds the lock" (extended codes keep it in the low byte). */
const SQLITE_BUSY = 5;
const RETRY_MS = 10;

const isBusy = (err: unknown) => typeof (err as { errcode?: unknown }).errcode === 'number' && ((err as { errcode: number }).errcode & 0xff) === SQLITE_BUSY;

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
      if (!isBusy(err) || Date.now() >= deadline) throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, RETRY_MS);
    }
  }
}
