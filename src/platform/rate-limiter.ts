import type { Clock } from './clock.ts';

export interface RateLimiter {
  /** Records one attempt for `key`; refused once `limit` attempts fall inside the window. */
  hit(key: string): { allowed: boolean; retryAfterMs: number };
  /** Forgets a key (e.g. after a successful login). */
  reset(key: string): void;
}

/**
 * Sliding-window attempt counter in memory, per process. Keys are caller-chosen
 * ("login:acct:<tenant>:<user>", "login:ip:<addr>"). Keys whose attempts have all left the window
 * are pruned; a live key is never evicted (that would reset its budget), so memory follows the
 * keys attempted within one window.
 *
 * The map is kept in the order of each key's latest attempt (a key is moved to the end when it
 * records one), so the expired keys are always at its front: pruning looks at those alone, and a
 * hit costs O(1) amortized however many keys are live (a full scan per hit once `maxKeys` live keys
 * were reached let a flood of addresses stall every request).
 */
export function createRateLimiter(opts: { limit: number; windowMs: number; clock: Clock; maxKeys?: number }): RateLimiter {
  const { limit, windowMs, clock } = opts;
  const maxKeys = opts.maxKeys ?? 100_000;
  const attempts = new Map<string, number[]>();

  function prune(now: number): void {
    for (const [key, times] of attempts) {
      if (times[times.length - 1]! > now - windowMs) break;
      attempts.delete(key);
    }
  }

  return {
    hit(key) {
      const now = clock.now();
      const recent = (attempts.get(key) ?? []).filter((t) => t > now - windowMs);
      if (recent.length >= limit) {
        attempts.set(key, recent);
        return { allowed: false, retryAfterMs: recent[0]! + windowMs - now };
      }
      recent.push(now);
      attempts.delete(key);
      attempts.set(key, recent);
      if (attempts.size > maxKeys) prune(now);
      return { allowed: true, retryAfterMs: 0 };
    },
    reset(key) {
      attempts.delete(key);
    },
  };
}
