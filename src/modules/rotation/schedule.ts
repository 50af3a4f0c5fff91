import { Cron } from 'croner';
import { fail } from '../../errors/index.ts';

/** The smallest interval a policy may ask for: rotations are heavy (a source change and every connector checked). */
export const MIN_INTERVAL_MS = 60_000;

/** Checks a schedule and returns its stored form. */
export function parseSchedule(input: { intervalMs?: number; cron?: string }): { kind: 'interval' | 'cron' | 'manual'; schedule: string } {
  if (input.intervalMs !== undefined && input.cron !== undefined) fail('VALIDATION_FAILED', 'give intervalMs or cron, not both');
  if (input.intervalMs !== undefined) {
    if (!Number.isInteger(input.intervalMs) || input.intervalMs < MIN_INTERVAL_MS) fail('VALIDATION_FAILED', `intervalMs must be a whole number of at least ${MIN_INTERVAL_MS}`);
    return { kind: 'interval', schedule: String(input.intervalMs) };
  }
  if (input.cron !== undefined) {
    try {
      new Cron(input.cron, { timezone: 'UTC', paused: true }).stop();
    } catch (err) {
      fail('VALIDATION_FAILED', `cron is not a valid expression: ${(err as Error).message}`);
    }
    return { kind: 'cron', schedule: input.cron };
  }
  return { kind: 'manual', schedule: '' };
}

/** The first run strictly after `after` (epoch ms), or null for a policy without a schedule. */
export function nextRun(kind: string, schedule: string, after: number): number | null {
  if (kind === 'interval') return after + Number(schedule);
  if (kind === 'cron') return new Cron(schedule, { timezone: 'UTC', paused: true }).nextRun(new Date(after))?.getTime() ?? null;
  return null;
}

/**
 * Whether a due run was missed by more than a whole period (the server was down): the catch-up
 * policy decides then whether it runs once now or waits for the next slot.
 */
export function missedWholePeriod(kind: string, schedule: string, dueAt: number, now: number): boolean {
  const following = nextRun(kind, schedule, dueAt);
  return following !== null && following <= now;
}
