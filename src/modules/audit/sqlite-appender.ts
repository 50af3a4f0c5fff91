import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import type { AuditInput } from './audit-log.ts';
import type { ChainSegment } from './chain.ts';
import type { EventMacKey } from './event-mac.ts';
import { createWakeSignal, type AppendReply, type AppendRequest, type EventRow } from './sqlite-appender-protocol.ts';

/** Appends a batch of events recorded at `time` to the chain in one durable transaction; resolves with the commit's segment (it may hold other batches too). */
export interface AuditAppender {
  /** `macKey` is the key the events were recorded under; `keepKey` false (sealed since) makes the worker forget it after this batch. */
  append(time: number, events: readonly AuditInput[], macKey: EventMacKey | null, keepKey?: boolean): Promise<ChainSegment>;
  /** Sealed: the worker forgets the MAC key now. */
  dropKey(): void;
  /**
   * Settles, at once, the appends whose replies have already arrived. A busy event loop would
   * otherwise see them only after every socket that is ready, which holds whole batches of
   * finished requests back; the log calls this each time it records.
   */
  poll(): void;
  close(): Promise<void>;
}

const NO_CONTEXT: Record<string, string> = Object.freeze({}) as Record<string, string>;

/** The wire form of a batch (see AppendRequest). */
export function encodeBatch(time: number, events: readonly AuditInput[]): string {
  const rows: EventRow[] = new Array(events.length);
  for (let i = 0; i < events.length; i++) {
    const e = events[i]!;
    rows[i] = [e.tenantId, e.actor.type, e.actor.id, e.action, e.resource.type, e.resource.id, e.resource.name,
      e.environment ?? null, e.secretVersion ?? null, e.outcome, e.reason ?? null, e.context ?? NO_CONTEXT];
  }
  return JSON.stringify([time, rows]);
}

/**
 * Group commits on SQLite, written by a worker thread over its own connection to the same file.
 * node:sqlite is synchronous: inserting a batch and syncing it would otherwise stop every request
 * on the event loop for the whole commit.
 *
 * Batches stream to the worker as they form (no waiting for the previous one); the worker takes
 * every batch that has arrived into one transaction, syncs it, and replies (sqlite-appender-worker.ts).
 * A caller's promise resolves only after the sync that covers its events, so an acknowledged event
 * is as durable as one written in-thread. The worker starts on the first append and is restarted
 * after it fails.
 */
export function createSqliteAppender(opts: { path: string }): AuditAppender {
  /** `macGeneration`: the MAC key the worker holds (0: none). */
  let current: { worker: Worker; port: MessagePort; wake: ReturnType<typeof createWakeSignal>; macGeneration: number } | null = null;
  /** `worker`: the one the append was sent to, the only one whose end fails it. */
  const waiting = new Map<number, { worker: Worker; resolve: (segment: ChainSegment) => void; reject: (err: Error) => void }>();
  let nextId = 1;

  /**
   * Fails the appends sent to `worker`. Not every waiting one: a worker's 'exit' comes after its
   * 'error', and an append in between already went to its successor, which may well commit it.
   */
  function failAll(worker: Worker, err: Error): void {
    for (const [id, w] of waiting) {
      if (w.worker !== worker) continue;
      waiting.delete(id);
      w.reject(err);
    }
  }

  function settle(reply: AppendReply): void {
    for (const id of reply.ids) {
      const entry = waiting.get(id);
      if (!entry) continue;
      waiting.delete(id);
      if (reply.error !== undefined) entry.reject(new Error(reply.error));
      else entry.resolve(reply.segment);
    }
    // Idle, the worker must not keep the process alive.
    if (waiting.size === 0 && current) {
      current.worker.unref();
      current.port.unref();
    }
  }

  function start(): NonNullable<typeof current> {
    const { port1, port2 } = new MessageChannel();
    const wake = createWakeSignal();
    const worker = new Worker(new URL('./sqlite-appender-worker.ts', import.meta.url), {
      workerData: { path: opts.path, port: port2, wake: wake.buffer },
      transferList: [port2],
    });
    const started = { worker, port: port1, wake, macGeneration: 0 };
    port1.on('message', settle);
    const stopped = (err: Error) => {
      if (current === started) current = null;
      port1.close();
      failAll(worker, err);
    };
    worker.on('error', stopped);
    worker.on('exit', () => stopped(new Error('the audit writer stopped')));
    return started;
  }

  return {
    append(time, events, macKey, keepKey = true) {
      return new Promise<ChainSegment>((resolve, reject) => {
        current ??= start();
        const id = nextId++;
        waiting.set(id, { worker: current.worker, resolve, reject });
        current.worker.ref();
        current.port.ref();
        const generation = macKey?.generation ?? 0;
        if (generation !== current.macGeneration) {
          current.port.postMessage({ macKey: macKey ? macKey.key.export() : null } satisfies AppendRequest);
          current.macGeneration = generation;
        }
        current.port.postMessage({ id, batch: encodeBatch(time, events) } satisfies AppendRequest);
        if (!keepKey && current.macGeneration !== 0) {
          current.port.postMessage({ macKey: null } satisfies AppendRequest);
          current.macGeneration = 0;
        }
        current.wake.notify();
      });
    },

    dropKey() {
      if (!current || current.macGeneration === 0) return;
      current.port.postMessage({ macKey: null } satisfies AppendRequest);
      current.macGeneration = 0;
      current.wake.notify();
    },

    poll() {
      if (!current || waiting.size === 0) return;
      for (let m = receiveMessageOnPort(current.port); m !== undefined; m = receiveMessageOnPort(current.port)) {
        settle(m.message as AppendReply);
      }
    },

    async close() {
      const c = current;
      current = null;
      if (!c) return;
      const exited = new Promise<void>((resolve) => c.worker.once('exit', () => resolve()));
      c.port.postMessage({ close: true } satisfies AppendRequest);
      c.wake.notify();
      const timer = setTimeout(() => void c.worker.terminate(), 5_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
