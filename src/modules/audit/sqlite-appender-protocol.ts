import type { ChainSegment } from './chain.ts';
import type { AuditEvent } from './event.ts';

/**
 * What the SQLite audit appender (event loop side) and its worker thread say to each other.
 */

/**
 * One event's fields in the order of the chain's canonical form, without seq, id and time (the
 * worker assigns seq and id; time is the batch's): tenant, actor type, actor id, action, resource
 * type, id and name, environment, secret version, outcome, reason, context.
 */
export type EventRow = [
  string | null, AuditEvent['actor']['type'], string, string, string, string | null, string | null,
  string | null, number | null, AuditEvent['outcome'], string | null, Record<string, string>,
];

export type AppendRequest =
  | {
    id: number;
    /**
     * JSON of [time, EventRow[]]: one string crosses to the worker far cheaper than a structured
     * clone of the objects, and arrays without keys are the cheapest JSON to write and to parse.
     */
    batch: string;
  }
  /**
   * The event MAC key (event-mac.ts) for the batches after this message, as raw bytes; null while
   * sealed. Sent when it changes, in order with the batches.
   */
  | { macKey: Uint8Array | null }
  | { close: true };

/** The appends `ids` are durable, written as `segment` (one transaction), or all failed with `error`. */
export type AppendReply = { ids: number[]; segment: ChainSegment; error?: undefined } | { ids: number[]; error: string };

const WAKE = 0;
const SLEEPING = 1;

/**
 * How the event loop wakes the worker without a message handler on the worker's side: a counter
 * in shared memory that the worker waits on (Atomics.wait) when it has nothing to do. The event
 * loop bumps it after each message and calls into the kernel (notify) only while the worker sleeps.
 */
export function createWakeSignal(buffer = new SharedArrayBuffer(8)) {
  const cells = new Int32Array(buffer);
  return {
    buffer,
    /** Event loop side: after posting a message. */
    notify(): void {
      Atomics.add(cells, WAKE, 1);
      if (Atomics.load(cells, SLEEPING) === 1) Atomics.notify(cells, WAKE);
    },
    /** Worker side: the value to hand to `sleep`, read before looking for messages. */
    seen(): number {
      return Atomics.load(cells, WAKE);
    },
    /**
     * Worker side: blocks until `notify` runs after `seen` was read. Sequentially consistent
     * atomics make a lost wake-up impossible: either the notifier sees SLEEPING set, or the
     * waiter sees the counter already moved and returns at once.
     */
    sleep(seen: number): void {
      Atomics.store(cells, SLEEPING, 1);
      Atomics.wait(cells, WAKE, seen);
      Atomics.store(cells, SLEEPING, 0);
    },
  };
}
