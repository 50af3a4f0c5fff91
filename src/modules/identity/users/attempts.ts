import { fail } from '../../../errors/index.ts';
import type { Clock } from '../../../platform/clock.ts';
import { createRateLimiter, type RateLimiter } from '../../../platform/rate-limiter.ts';

export interface Budget {
  limit: number;
  windowMs: number;
}

/**
 * Attempt budgets. Each key counts attempts, not just failures, and is charged before any check
 * runs, so a burst of concurrent guesses cannot outrun it; a success forgives the key.
 */
export interface AttemptLimits {
  /**
   * Logins per tenant + username from one source address (known or not, so the answer says nothing
   * about existence). Keyed by address too, so guessing from one place cannot lock the account's
   * owner out from another; a success there forgives it.
   */
  account: Budget;
  /**
   * Logins per tenant + username from every address together: the ceiling on guessing spread over
   * many addresses. Never forgiven by a success (one login must not buy a guesser more attempts).
   */
  accountTotal: Budget;
  /** Logins per source address (an IPv6 client's /64: platform/addresses.ts `addressBlock`). */
  ip: Budget;
  /**
   * Per signed-in user: second-factor codes (step-up, TOTP confirm), and apart from them, with a count
   * of their own, current-password checks (password change). A success forgives only its own count.
   */
  factor: Budget;
}

export const DEFAULT_ATTEMPT_LIMITS: AttemptLimits = {
  account: { limit: 5, windowMs: 15 * 60_000 },
  accountTotal: { limit: 30, windowMs: 15 * 60_000 },
  ip: { limit: 30, windowMs: 15 * 60_000 },
  factor: { limit: 5, windowMs: 15 * 60_000 },
};

export interface AttemptGuard {
  /** Charges one attempt to `key`, or throws RATE_LIMITED (with the seconds to wait for Retry-After). */
  spend(key: string): void;
  forgive(key: string): void;
}

function guard(limiter: RateLimiter, refusal = 'too many attempts; wait before trying again'): AttemptGuard {
  return {
    spend(key) {
      const { allowed, retryAfterMs } = limiter.hit(key);
      if (!allowed) {
        fail('RATE_LIMITED', refusal, { retryAfterSeconds: Math.max(1, Math.ceil(retryAfterMs / 1000)) });
      }
    },
    forgive: (key) => limiter.reset(key),
  };
}

/** One attempt budget as a guard (`refusal`: the RATE_LIMITED message), for attempts outside sign-in (unseal submissions). */
export function createAttemptGuard(budget: Budget, clock: Clock, refusal?: string): AttemptGuard {
  return guard(createRateLimiter({ ...budget, clock }), refusal);
}

export function createAttemptGuards(limits: AttemptLimits, clock: Clock): Record<keyof AttemptLimits, AttemptGuard> {
  return {
    account: guard(createRateLimiter({ ...limits.account, clock })),
    accountTotal: guard(createRateLimiter({ ...limits.accountTotal, clock })),
    ip: guard(createRateLimiter({ ...limits.ip, clock })),
    factor: guard(createRateLimiter({ ...limits.factor, clock })),
  };
}
