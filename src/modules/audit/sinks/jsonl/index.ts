import { open, stat, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import type { AuditEvent, AuditSink } from '../../event.ts';

export interface JsonlSinkOptions {
  /** Stable name; it keys the delivery cursor. */
  name: string;
  path: string;
}

/**
 * Appends one JSON object per line to `path`, fsynced once per batch. The file is created 0600.
 * A file renamed or removed by log rotation is noticed on the next batch and a new one is created;
 * a line torn by a crash or a full disk is ended before the next batch, so every line that parses
 * is a whole event.
 */
export function createJsonlSink(opts: JsonlSinkOptions): AuditSink {
  const { name, path } = opts;
  let handle: FileHandle | null = null;
  let inode = -1;
  // Batches run one after another: a retry must not interleave with a write still finishing.
  let tail: Promise<unknown> = Promise.resolve();

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
      const lines = events.map((e) => JSON.stringify(e)).join('\n') + '\n';
      const prefix = (await endsMidLine(h)) ? '\n' : '';
      signal.throwIfAborted();
      await h.appendFile(prefix + lines, 'utf8');
      await h.sync();
    } catch (err) {
      // Reopen next time: the handle may be the reason (file system gone, descriptor broken).
      await release();
      throw err;
    }
  }

  return {
    name,
    deliver(events, signal) {
      const run = tail.then(() => write(events, signal));
      tail = run.catch(() => {});
      return run;
    },
    async close() {
      await tail;
      await release();
    },
  };
}

async function endsMidLine(h: FileHandle): Promise<boolean> {
  const { size } = await h.stat();
  if (size === 0) return false;
  const last = Buffer.alloc(1);
  await h.read(last, 0, 1, size - 1);
  return last[0] !== 0x0a;
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
