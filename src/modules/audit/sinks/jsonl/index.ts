import { open, stat, type FileHandle } from 'node:fs/promises';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import type { AuditEvent, AuditSink } from '../../event.ts';
import { readTail, type HeldEvent } from './tail.ts';

export interface JsonlSinkOptions {
  /** Shown in status and logs. */
  name: string;
  path: string;
  /**
   * This node, in the cursor key (default: the host name). The file is local to one node, so its
   * cursor must be too: nodes sharing a database would otherwise resume from each other's position.
   */
  node?: string;
}

/**
 * Appends one JSON object per line to `path`, fsynced once per batch. The file is created 0600.
 *
 * The file is the truth for what it holds: on opening it (at start, and after log rotation) the sink
 * reads the seq of its last complete line and never writes an event at or below it, so a batch
 * offered again (delivery is at least once) adds no duplicate line, and `resumePoint` lets delivery
 * resume from the file rather than from a cursor. A last line torn by a crash or a full disk was
 * never acknowledged: it is cut off (truncated) before anything else is written, so every line is a
 * whole event and the file verifies offline. A file renamed or removed by log rotation is noticed on
 * the next batch and a new one is created; it starts where the old one ended. A failed fsync is final
 * until restart, as it is for the appender (sqlite-appender-rounds.ts).
 */
export function createJsonlSink(opts: JsonlSinkOptions): AuditSink {
  const { name, path } = opts;
  let handle: FileHandle | null = null;
  let inode = -1;
  // The highest seq the file holds, or after rotation to an empty file the highest the old one held.
  let held: number | null = null;
  // The write or read in progress, if any: a retry must not interleave with a write still finishing.
  let running: Promise<unknown> | null = null;
  // Set by a failed fsync, which is final: Linux may drop the pages of a failed writeback while reads still show
  // them, and reports the error once, so a later fsync would succeed over lines that never reached the disk.
  let syncFailed: Error | null = null;

  async function current(): Promise<FileHandle> {
    if (handle) {
      const onDisk = await stat(path).catch(() => null);
      if (onDisk?.ino === inode) return handle;
      await release();
    }
    const existed = await stat(path).then(() => true, () => false);
    const opened = await open(path, 'a+', 0o600);
    try {
      inode = (await opened.stat()).ino;
      if (!existed) await syncDirectory(dirname(path));
      const end = await readTail(opened, path);
      if (end.completeBytes < end.size) {
        await opened.truncate(end.completeBytes);
        await opened.sync();
      }
      if (end.last !== null) held = end.last.seq;
    } catch (err) {
      await opened.close().catch(() => {});
      throw err;
    }
    handle = opened;
    return opened;
  }

  async function release() {
    const h = handle;
    handle = null;
    inode = -1;
    await h?.close().catch(() => {});
  }

  async function write(events: readonly AuditEvent[], signal: AbortSignal) {
    signal.throwIfAborted();
    const h = await current();
    try {
      const fresh = held === null ? events : events.filter((e) => e.seq > held!);
      signal.throwIfAborted();
      if (fresh.length > 0) await h.appendFile(fresh.map((e) => JSON.stringify(e)).join('\n') + '\n', 'utf8');
      // Also when nothing was new: lines an earlier attempt whose write failed left behind are acknowledged now
      // (still dirty, so this fsync writes them). Never after a failed fsync: see syncFailed.
      await h.sync().catch((err: NodeJS.ErrnoException) => {
        syncFailed = new Error(`${path}: an fsync of the audit file failed (${err.code ?? err.message}): lines written before it may never reach the disk, and a later fsync would not say so; the sink writes and acknowledges nothing more until Keyhold is restarted (verify the file offline first, and move it aside if it is damaged)`);
        throw err;
      });
      if (fresh.length > 0) held = fresh[fresh.length - 1]!.seq;
    } catch (err) {
      // Reopen next time: the handle may be the reason (file system gone, descriptor broken).
      await release();
      throw err;
    }
  }

  async function lastInFile(): Promise<HeldEvent | null> {
    const h = await open(path, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return null;
      throw err;
    });
    if (!h) return null;
    try {
      return (await readTail(h, path)).last;
    } finally {
      await h.close();
    }
  }

  /**
   * Runs `work` alone, so a reader never sees a write half done. A write the file system does not
   * answer (a hung mount) cannot be cancelled; delivery times it out and offers the batch again.
   * Queued behind it, every retry would hold its batch in memory for as long as the hang lasts, so
   * while one runs anything else is refused at once, and offered again after the backoff.
   */
  function alone<T>(work: () => Promise<T>): Promise<T> {
    if (syncFailed) return Promise.reject(syncFailed);
    if (running) return Promise.reject(new Error(`${path}: an earlier write or read of the audit file has not finished (is its file system hanging?)`));
    // Cleared before the caller resumes, so its next call is not refused.
    const run = work().finally(() => {
      running = null;
    });
    running = run.catch(() => {});
    return run;
  }

  return {
    name,
    cursorKey: `${name}@${opts.node ?? hostname()}:${path}`,
    deliver: (events, signal) => alone(() => write(events, signal)),
    resumePoint: () => alone(lastInFile),
    async close() {
      await running;
      await release();
    },
  };
}

/** Makes a newly created file's directory entry durable too. */
async function syncDirectory(dir: string) {
  const d = await open(dir, 'r');
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}
