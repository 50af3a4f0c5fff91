import type { AuditEvent } from './event.ts';

/*
 * The delivery loops' two ports (where events come from, where each sink's cursor is kept) and
 * their retry schedule; the loops themselves are in delivery.ts.
 */

/** The durable audit log as the delivery loops read it. */
export interface AuditEventSource {
  /** Events with `seq > afterSeq`, ascending, at most `limit` of them (fewer or none at the head). */
  readAfter(afterSeq: number, limit: number): Promise<AuditEvent[]>;
}

/** Each sink's last acknowledged seq, persisted so a restart resumes where delivery stopped. */
export interface SinkCursorStore {
  /** 0 when the sink has never acknowledged anything. */
  get(sink: string): Promise<number>;
  set(sink: string, seq: number): Promise<void>;
}

export interface BackoffSettings {
  /** Delay after the first failure; doubles per consecutive failure up to `maxMs`. */
  baseMs: number;
  maxMs: number;
  /** Fraction of the delay that is randomised away (0 = none, 1 = full jitter). Default 0.5. */
  jitter?: number;
  /** Source of randomness in [0, 1); injectable so tests are deterministic. */
  random?: () => number;
}

/** The wait before retry number `failures` (1-based): exponential, capped, jittered. */
export function backoffDelay(failures: number, settings: BackoffSettings): number {
  const exp = settings.baseMs * 2 ** Math.min(Math.max(failures - 1, 0), 30);
  const capped = Math.min(settings.maxMs, exp);
  const jitter = Math.min(Math.max(settings.jitter ?? 0.5, 0), 1);
  const random = (settings.random ?? Math.random)();
  return Math.max(0, Math.round(capped * (1 - jitter * random)));
}

/** Cursors kept in memory: for tests and single-process tools; production backs them with the database. */
export function createMemoryCursorStore(initial: Record<string, number> = {}): SinkCursorStore & { snapshot(): Record<string, number> } {
  const cursors = new Map(Object.entries(initial));
  return {
    get: async (sink) => cursors.get(sink) ?? 0,
    set: async (sink, seq) => {
      cursors.set(sink, seq);
    },
    snapshot: () => Object.fromEntries(cursors),
  };
}

/**
 * A sink's failure may say how long the receiver asked it to wait (an HTTP Retry-After): the error
 * carries `retryAfterMs`. The wait is then the longer of that and the backoff, never past `maxMs`:
 * a busy collector is not hit again before it asked, and a wrong or hostile hint cannot stop the
 * stream for longer than any other failure does.
 */
export function retryDelay(err: unknown, failures: number, settings: BackoffSettings): number {
  const hint = (err as { retryAfterMs?: unknown } | null)?.retryAfterMs;
  const asked = typeof hint === 'number' && Number.isFinite(hint) && hint > 0 ? Math.min(hint, settings.maxMs) : 0;
  return Math.max(backoffDelay(failures, settings), asked);
}
