import type { Clock } from '../../platform/clock.ts';
import { retryDelay, type AuditEventSource, type BackoffSettings, type SinkCursorStore } from './delivery-ports.ts';
import type { AuditEvent, AuditSink } from './event.ts';

export type SinkState = 'stopped' | 'starting' | 'idle' | 'reading' | 'delivering' | 'backoff';

export interface SinkStatus {
  sink: string;
  state: SinkState;
  /** Last seq the sink acknowledged. */
  cursor: number;
  /** Highest seq this process knows exists (from reads and `poke(seq)`). */
  headSeq: number;
  /** Events known to exist that the sink has not acknowledged. */
  lag: number;
  consecutiveFailures: number;
  lastError: string | null;
  lastErrorAt: number | null;
  lastDeliveredAt: number | null;
  /** Events acknowledged since this delivery was created. */
  delivered: number;
}

export interface AuditDelivery {
  /** Starts one loop per sink; a no-op while running. */
  start(): void;
  /** Lets an in-flight batch finish (bounded by the timeout), ends the loops, closes the sinks. */
  stop(): Promise<void>;
  /** New events exist (optionally up to `headSeq`): wakes idle loops. Synchronous and cheap. */
  poke(headSeq?: number): void;
  status(): SinkStatus[];
}

/** What the loops report; a narrow slice of the pino logger. */
export interface DeliveryLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

export interface AuditDeliveryOptions {
  source: AuditEventSource;
  sinks: readonly AuditSink[];
  cursors: SinkCursorStore;
  clock: Clock;
  /** A batch not acknowledged within this time is aborted and counts as a failure. */
  timeoutMs: number;
  batchSize: number;
  backoff: BackoffSettings;
  /** An idle loop re-reads the log this often even without a poke (events written by other nodes). Default 5000. */
  pollMs?: number;
  logger?: DeliveryLogger;
}

const MAX_ERROR_LENGTH = 300;

interface Loop {
  sink: AuditSink;
  /** Where this sink's cursor is stored (`sink.cursorKey`, else its name). */
  key: string;
  status: SinkStatus;
  /** The cursor value last written to the store; differs from status.cursor after a failed write. */
  persisted: number;
  /** Set by poke; an empty read that raced a poke reads again instead of sleeping. */
  poked: boolean;
  wake: (() => void) | null;
  wakeOnPoke: boolean;
  done: Promise<void> | null;
}

/**
 * Streams the durable audit log to every sink, each through its own loop and cursor: read a batch
 * after the cursor, deliver it within `timeoutMs`, then advance and persist the cursor. A failed or
 * timed-out batch is retried with backoff and never skipped, so delivery is at least once: only a
 * batch that was not acknowledged can arrive twice. A sink that can read what it already holds
 * (`resumePoint`, the JSON lines file) resumes from that instead of its stored cursor, once the log
 * proves to hold the same event there (a copy of another log is refused, never resumed). Nothing here
 * blocks or throws into callers.
 *
 * @example
 * const delivery = createAuditDelivery({ source, sinks, cursors, clock, timeoutMs: 10_000, batchSize: 200, backoff: { baseMs: 500, maxMs: 60_000 } });
 * delivery.start();
 * // after each append to the log:
 * delivery.poke(event.seq);
 */
export function createAuditDelivery(opts: AuditDeliveryOptions): AuditDelivery {
  const { source, cursors, clock, timeoutMs, batchSize, backoff, logger } = opts;
  const pollMs = opts.pollMs ?? 5000;
  if (!(timeoutMs > 0) || !(batchSize >= 1) || !(backoff.baseMs >= 0) || !(backoff.maxMs >= backoff.baseMs) || !(pollMs > 0)) {
    throw new Error('audit delivery needs timeoutMs > 0, batchSize >= 1, 0 <= backoff.baseMs <= backoff.maxMs and pollMs > 0');
  }
  const keys = new Set<string>();
  const loops: Loop[] = opts.sinks.map((sink) => {
    // Two sinks sharing a cursor would skip each other's events.
    const key = sink.cursorKey ?? sink.name;
    if (keys.has(key)) throw new Error(key === sink.name ? `two audit sinks are named "${key}"; names must be unique` : `two audit sinks share the cursor "${key}"`);
    keys.add(key);
    return {
      sink,
      key,
      status: {
        sink: sink.name,
        state: 'stopped',
        cursor: 0,
        headSeq: 0,
        lag: 0,
        consecutiveFailures: 0,
        lastError: null,
        lastErrorAt: null,
        lastDeliveredAt: null,
        delivered: 0,
      },
      persisted: 0,
      poked: false,
      wake: null,
      wakeOnPoke: false,
      done: null,
    };
  });
  let phase: 'stopped' | 'running' | 'stopping' = 'stopped';

  const running = () => phase === 'running';

  // Idle and backoff waits are unref'd: a background stream must not keep a process alive.
  function wait(loop: Loop, ms: number, wakeOnPoke: boolean): Promise<void> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(), ms);
      timer.unref();
      const finish = () => {
        clearTimeout(timer);
        loop.wake = null;
        loop.wakeOnPoke = false;
        resolve();
      };
      loop.wake = finish;
      loop.wakeOnPoke = wakeOnPoke;
    });
  }

  async function deliverWithTimeout(sink: AuditSink, batch: AuditEvent[]): Promise<void> {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    // The race means even a sink that ignores its signal cannot hold the loop past the timeout.
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const err = new Error(`delivery timed out after ${timeoutMs} ms`);
        controller.abort(err);
        reject(err);
      }, timeoutMs);
    });
    try {
      await Promise.race([Promise.resolve().then(() => sink.deliver(batch, controller.signal)), timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * The events that follow the cursor without a gap. The log has none (seqs are taken under the head's
   * lock), but a row inserted by hand past the head has one before it: delivered, it would move the
   * cursor past every event the server writes until then, and the sink would never get them. It
   * waits instead (verify names it).
   */
  function normalise(batch: AuditEvent[], cursor: number): AuditEvent[] {
    const fresh = batch.filter((e) => e.seq > cursor);
    for (let i = 1; i < fresh.length; i++) {
      if (fresh[i]!.seq <= fresh[i - 1]!.seq) throw new Error('the audit log returned events out of order');
    }
    const gap = fresh.findIndex((e, i) => e.seq !== cursor + 1 + i);
    return gap < 0 ? fresh : fresh.slice(0, gap);
  }

  /** One unit of work; resolves only when it fully succeeded, throws with context otherwise. */
  async function step(loop: Loop): Promise<void> {
    const s = loop.status;
    if (loop.persisted !== s.cursor) await persist(loop);
    loop.poked = false;
    s.state = 'reading';
    let batch: AuditEvent[];
    try {
      batch = normalise(await source.readAfter(s.cursor, batchSize), s.cursor);
    } catch (err) {
      throw new Error(`reading the audit log failed: ${describe(err)}`);
    }
    if (batch.length === 0) {
      if (s.headSeq < s.cursor) s.headSeq = s.cursor;
      s.lag = Math.max(0, s.headSeq - s.cursor);
      recovered(loop);
      if (!loop.poked && running()) {
        s.state = 'idle';
        await wait(loop, pollMs, true);
      }
      return;
    }
    const last = batch[batch.length - 1]!.seq;
    if (s.headSeq < last) s.headSeq = last;
    s.lag = s.headSeq - s.cursor;
    s.state = 'delivering';
    await deliverWithTimeout(loop.sink, batch);
    s.cursor = last;
    s.lag = Math.max(0, s.headSeq - last);
    s.delivered += batch.length;
    s.lastDeliveredAt = clock.now();
    await persist(loop);
    recovered(loop);
  }

  async function persist(loop: Loop): Promise<void> {
    const seq = loop.status.cursor;
    try {
      await cursors.set(loop.key, seq);
    } catch (err) {
      throw new Error(`saving the delivery cursor failed: ${describe(err)}`);
    }
    loop.persisted = seq;
  }

  function recovered(loop: Loop) {
    const s = loop.status;
    if (s.consecutiveFailures === 0) return;
    logger?.info({ sink: s.sink, failures: s.consecutiveFailures, cursor: s.cursor }, 'audit sink recovered');
    s.consecutiveFailures = 0;
  }

  function failed(loop: Loop, err: unknown) {
    const s = loop.status;
    s.consecutiveFailures++;
    s.lastError = describe(err);
    s.lastErrorAt = clock.now();
    // Logged on the first failure of a streak only; status() carries the rest.
    if (s.consecutiveFailures === 1) logger?.warn({ sink: s.sink, cursor: s.cursor, error: s.lastError }, 'audit sink delivery failing');
  }

  /**
   * What a sink says it holds must be this log's: a copy kept across a database restored from a
   * backup, or started afresh, holds events this log does not have (or has others at those seqs).
   * Resuming after it would skip every event of this log up to that seq, without a word.
   */
  async function provedHeld(held: { seq: number; hash: string }): Promise<void> {
    const [at] = await source.readAfter(held.seq - 1, 1).catch((err: unknown) => {
      throw new Error(`reading the audit log failed: ${describe(err)}`);
    });
    if (at?.seq === held.seq && at.hash === held.hash) return;
    const why = at?.seq === held.seq ? `the log's event ${held.seq} is another` : 'the log ends before it';
    throw new Error(`the sink holds event ${held.seq}, but ${why}: its copy is not of this log (a restored or replaced database?); move it aside`);
  }

  async function run(loop: Loop): Promise<void> {
    const s = loop.status;
    s.state = 'starting';
    while (running()) {
      try {
        const stored = await cursors.get(loop.key).catch((err: unknown) => {
          throw new Error(`reading the delivery cursor failed: ${describe(err)}`);
        });
        // A sink that can tell what it already holds is the truth; the stored cursor is the fallback.
        const held = loop.sink.resumePoint ? await loop.sink.resumePoint().catch((err: unknown) => {
          throw new Error(`reading what the sink already holds failed: ${describe(err)}`);
        }) : null;
        if (held !== null) await provedHeld(held);
        const seq = held?.seq ?? stored;
        s.cursor = seq;
        loop.persisted = stored;
        if (s.headSeq < seq) s.headSeq = seq;
        break;
      } catch (err) {
        failed(loop, err);
        s.state = 'backoff';
        await wait(loop, retryDelay(err, s.consecutiveFailures, backoff), false);
      }
    }
    while (running()) {
      try {
        await step(loop);
      } catch (err) {
        failed(loop, err);
        if (!running()) break;
        s.state = 'backoff';
        await wait(loop, retryDelay(err, s.consecutiveFailures, backoff), false);
      }
    }
    s.state = 'stopped';
  }

  return {
    start() {
      if (phase === 'running') return;
      if (phase === 'stopping') throw new Error('audit delivery is stopping; await stop() before starting it again');
      phase = 'running';
      for (const loop of loops) {
        loop.done = run(loop).catch((err: unknown) => {
          // Unreachable by design; kept so a bug surfaces in the status instead of as an unhandled rejection.
          failed(loop, err);
          loop.status.state = 'stopped';
        });
      }
    },
    async stop() {
      if (phase !== 'running') return;
      phase = 'stopping';
      for (const loop of loops) loop.wake?.();
      await Promise.all(loops.map((loop) => loop.done));
      await Promise.all(
        loops.map(async (loop) => {
          loop.done = null;
          if (!loop.sink.close) return;
          let timer: ReturnType<typeof setTimeout> | undefined;
          try {
            await Promise.race([loop.sink.close(), new Promise((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
          } catch (err) {
            logger?.warn({ sink: loop.sink.name, error: describe(err) }, 'closing audit sink failed');
          } finally {
            clearTimeout(timer);
          }
        }),
      );
      phase = 'stopped';
    },
    poke(headSeq) {
      for (const loop of loops) {
        const s = loop.status;
        if (headSeq !== undefined && headSeq > s.headSeq) {
          s.headSeq = headSeq;
          s.lag = headSeq - s.cursor;
        }
        loop.poked = true;
        if (loop.wake && loop.wakeOnPoke) loop.wake();
      }
    },
    status() {
      return loops.map((loop) => ({ ...loop.status }));
    },
  };
}

function describe(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH)}…` : text;
}
