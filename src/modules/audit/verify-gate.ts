import type { Clock } from '../../platform/clock.ts';

/**
 * How long a walk of the chain may answer calls that arrive after it started: the bound on how late
 * a change that leaves the head alone (an event altered in place by someone who dropped the
 * append-only triggers) can go unreported. Ten seconds: far below any response to such an attack,
 * and long enough that a loop of calls costs one walk per ten seconds while the log is quiet.
 */
export const VERIFY_MAX_AGE_MS = 10_000;

interface Walk<R> {
  trusted: string | null;
  result: Promise<R>;
}

/**
 * Keeps the cost of verifying the whole audit chain bounded however often it is asked (any tenant's
 * auditor may ask): at most one walk runs at a time per process; a call that arrives while one runs
 * shares it if it started less than `maxAgeMs` before, else waits for the next walk, which every
 * such call shares; a finished walk answers later calls for as long while the log's fingerprint
 * (head and checkpoints) is unchanged. Every answer comes from a walk that started less than `maxAgeMs` before
 * the call, or after it: a change made earlier than that is always reflected. Failed walks (errors)
 * are not kept. Answers for different trusted keys are never shared.
 * @example
 * const gate = createVerifyGate({ walk: (key) => log.verify({ trustedPublicKey: key }), fingerprint: log.fingerprint, clock });
 * const [a, b] = await Promise.all([gate.verify(key), gate.verify(key)]); // one walk
 */
export function createVerifyGate<R>(deps: {
  walk: (trustedPublicKey: string | null) => Promise<R>;
  /** Cheap to read; changes whenever the log is appended to, checkpointed, or its head rewritten. */
  fingerprint: () => Promise<string>;
  clock: Clock;
  maxAgeMs?: number;
}) {
  const { clock } = deps;
  const maxAgeMs = deps.maxAgeMs ?? VERIFY_MAX_AGE_MS;
  /** The walk under way, and the clock time it started. */
  let running: (Walk<R> & { startedAt: number }) | null = null;
  /** Walks waiting for the running one, at most one per trusted key; each is shared by every call that joins it. */
  const waiting: Walk<R>[] = [];
  let last: { trusted: string | null; fingerprint: string; startedAt: number; result: R } | null = null;
  /** Settles when the last queued walk has: walks run one after another, never side by side. */
  let queue: Promise<unknown> = Promise.resolve();

  // A clock stepped back must not stretch the bound: a negative age is not fresh.
  const fresh = (startedAt: number, now: number) => now - startedAt >= 0 && now - startedAt < maxAgeMs;

  function enqueue(trusted: string | null): Walk<R> {
    const walk: Walk<R> = { trusted, result: null as unknown as Promise<R> };
    walk.result = queue.then(async () => {
      waiting.splice(waiting.indexOf(walk), 1);
      const startedAt = clock.now();
      running = { ...walk, startedAt };
      try {
        // Read before the walk: an append in between makes the key stale, never the answer.
        const fingerprint = await deps.fingerprint();
        const result = await deps.walk(trusted);
        last = { trusted, fingerprint, startedAt, result };
        return result;
      } finally {
        running = null;
      }
    });
    waiting.push(walk);
    queue = walk.result.catch(() => undefined);
    return walk;
  }

  return {
    /** The result of a walk that started less than the bound before this call, or after it. */
    async verify(trustedPublicKey: string | null): Promise<R> {
      const now = clock.now();
      const fingerprint = await deps.fingerprint();
      if (last && last.trusted === trustedPublicKey && last.fingerprint === fingerprint && fresh(last.startedAt, now)) return last.result;
      if (running && running.trusted === trustedPublicKey && fresh(running.startedAt, now)) return running.result;
      return (waiting.find((w) => w.trusted === trustedPublicKey) ?? enqueue(trustedPublicKey)).result;
    },
  };
}

export type VerifyGate<R> = ReturnType<typeof createVerifyGate<R>>;
