import { Worker } from 'node:worker_threads';
import type { AuditEvent } from './event.ts';

/** An event as the log hands it over: everything but its place in the chain. */
export type PendingEvent = Omit<AuditEvent, 'seq' | 'prevHash' | 'hash'>;

export interface AppendRequest {
  id: number;
  /** JSON of PendingEvent[]: a string crosses to the worker far cheaper than structured clone of the objects. */
  events: string;
}
export type AppendReply = { id: number; lastSeq: number } | { id: number; error: string };

/** Appends a batch of events to the chain in one durable transaction; resolves with the last seq. */
export interface AuditAppender {
  append(events: PendingEvent[]): Promise<number>;
  close(): Promise<void>;
}

/**
 * Group-commit batches on SQLite, written by a worker thread over its own connection to the same
 * file. node:sqlite is synchronous: inserting a batch and its fsync'ed COMMIT (synchronous=FULL)
 * would otherwise stop every request on the event loop for the whole commit. The caller's promise
 * resolves only once the worker's COMMIT returned, so an acknowledged event is as durable as one
 * written in-thread. The worker starts on the first append and is restarted after it fails.
 */
export function createSqliteAppender(opts: { path: string }): AuditAppender {
  let worker: Worker | null = null;
  const waiting = new Map<number, { resolve: (seq: number) => void; reject: (err: Error) => void }>();
  let nextId = 1;

  function failAll(err: Error): void {
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  }

  function start(): Worker {
    const w = new Worker(new URL('./sqlite-appender-worker.ts', import.meta.url), { workerData: { path: opts.path } });
    w.on('message', (reply: AppendReply) => {
      const entry = waiting.get(reply.id);
      if (!entry) return;
      waiting.delete(reply.id);
      if ('error' in reply) entry.reject(new Error(reply.error));
      else entry.resolve(reply.lastSeq);
      // Idle, the worker must not keep the process alive.
      if (waiting.size === 0) w.unref();
    });
    w.on('error', (err) => {
      if (worker === w) worker = null;
      failAll(err);
    });
    w.on('exit', () => {
      if (worker === w) worker = null;
      failAll(new Error('the audit writer stopped'));
    });
    return w;
  }

  return {
    append(events) {
      return new Promise<number>((resolve, reject) => {
        worker ??= start();
        const id = nextId++;
        waiting.set(id, { resolve, reject });
        worker.ref();
        worker.postMessage({ id, events: JSON.stringify(events) } satisfies AppendRequest);
      });
    },

    async close() {
      const w = worker;
      worker = null;
      if (!w) return;
      const exited = new Promise<void>((resolve) => w.once('exit', () => resolve()));
      w.postMessage({ close: true });
      const timer = setTimeout(() => void w.terminate(), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
