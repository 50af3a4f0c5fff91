import type { RotationPoliciesTable } from '../../storage/schema.ts';
import { scheduleProblem } from './schedule.ts';
import type { Trigger } from './types.ts';

/**
 * How a failed scheduler-driven rotation is tried again: after 1, 2, 4 ... minutes, at most an hour
 * apart, six attempts in all (about an hour of retries); then Keyhold gives up and says so.
 */
export const RETRY_LIMITS = { baseMs: 60_000, capMs: 3_600_000, maxAttempts: 6 } as const;

/** Triggers nobody watches as they run: their failures are retried. A person's manual or incident rotation is not. */
export const RETRIED_TRIGGERS: ReadonlySet<string> = new Set<Trigger>(['schedule', 'expiry', 'policy-change']);

/** The wait before the next attempt after `failed` attempts in a row failed (bounded exponential backoff). */
export function retryDelay(failed: number): number {
  return Math.min(RETRY_LIMITS.baseMs * 2 ** Math.max(0, failed - 1), RETRY_LIMITS.capMs);
}

/** Where a policy's retries stand after a failed attempt: the next one, or given up. */
export interface RetryOutcome {
  attempt: number;
  maxAttempts: number;
  retryAt: number | null;
  gaveUp: boolean;
}

/** The policy's retry fields after its `failed`-th failed attempt in a row, at `now`. */
export function afterFailure(failed: number, trigger: string, now: number) {
  const gaveUp = failed >= RETRY_LIMITS.maxAttempts;
  const retryAt = gaveUp ? null : now + retryDelay(failed);
  return {
    outcome: { attempt: failed, maxAttempts: RETRY_LIMITS.maxAttempts, retryAt, gaveUp } satisfies RetryOutcome,
    patch: { retry_attempts: failed, retry_at: retryAt, retry_trigger: gaveUp ? null : trigger, gave_up_at: gaveUp ? now : null },
  };
}

/** What about a policy needs a person (rotation status shows it): empty when nothing does. */
export function policyAttention(p: Pick<RotationPoliciesTable, 'gave_up_at' | 'retry_attempts' | 'schedule_kind' | 'schedule'>): string[] {
  const out: string[] = [];
  const schedule = scheduleProblem(p.schedule_kind, p.schedule);
  if (schedule) out.push(schedule);
  if (p.gave_up_at !== null) out.push(`retries exhausted: ${p.retry_attempts} attempts in a row failed; fix the cause and rotate by hand`);
  return out;
}
