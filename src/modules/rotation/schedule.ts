import { Cron } from 'croner';
import { fail } from '../../errors/index.ts';

/** The smallest interval a policy may ask for: rotations are heavy (a source change and every connector checked). */
export const MIN_INTERVAL_MS = 60_000;

/** Checks a schedule (a cron must fire at least once after `now`) and returns its stored form. */
export function parseSchedule(input: { intervalMs?: number; cron?: string }, now: number): { kind: 'interval' | 'cron' | 'manual'; schedule: string } {
  if (input.intervalMs !== undefined && input.cron !== undefined) fail('VALIDATION_FAILED', 'give intervalMs or cron, not both');
  if (input.intervalMs !== undefined) {
    if (!Number.isInteger(input.intervalMs) || input.intervalMs < MIN_INTERVAL_MS) fail('VALIDATION_FAILED', `intervalMs must be a whole number of at least ${MIN_INTERVAL_MS}`);
    return { kind: 'interval', schedule: String(input.intervalMs) };
  }
  if (input.cron !== undefined) {
    let first: Date | null;
    try {
      first = new Cron(input.cron, { timezone: 'UTC', paused: true }).nextRun(new Date(now));
    } catch (err) {
      fail('VALIDATION_FAILED', `cron is not a valid expression: ${(err as Error).message}`);
    }
    if (firesWithinAMinute(input.cron)) fail('VALIDATION_FAILED', 'cron must fire at most once a minute: give its seconds field a single value (or use five fields)');
    // Stored, it would be a policy whose scheduled runs silently never come (30 February, a year gone by).
    if (first === null) fail('VALIDATION_FAILED', 'cron never fires (no such date, or only in the past)');
    return { kind: 'cron', schedule: input.cron };
  }
  return { kind: 'manual', schedule: '' };
}

/** Six or seven fields start with seconds: only one value there keeps runs a minute apart, as intervalMs must be. */
function firesWithinAMinute(cron: string): boolean {
  const fields = cron.trim().split(/\s+/);
  return fields.length >= 6 && !/^\d{1,2}$/.test(fields[0]!);
}

/**
 * What is wrong with a stored schedule that parseSchedule would refuse now (one stored by an older Keyhold, or by
 * hand), or null. The scheduler never runs a policy more often than once a minute whatever is stored.
 */
export function scheduleProblem(kind: string, schedule: string): string | null {
  if (kind === 'interval' && !(Number(schedule) >= MIN_INTERVAL_MS)) return `the stored interval is shorter than a minute; it runs at most once a minute: set the policy again`;
  if (kind !== 'cron') return null;
  try {
    new Cron(schedule, { timezone: 'UTC', paused: true });
  } catch (err) {
    return `the stored cron is not a valid expression (${(err as Error).message}); it does not run: set the policy again`;
  }
  return firesWithinAMinute(schedule) ? 'the stored cron fires more than once a minute; it runs at most once a minute: set the policy again with a five-field cron' : null;
}

/**
 * The run after one due at `dueAt`, passed at `now`: the schedule's first slot after both, and never within a minute
 * of `dueAt`, even for a schedule stored before shorter ones were refused (its extra slots are passed over).
 */
export function followingRun(kind: string, schedule: string, dueAt: number, now: number): number | null {
  if (kind === 'interval') return Math.max(now, dueAt) + Math.max(Number(schedule), MIN_INTERVAL_MS);
  return nextRun(kind, schedule, Math.max(now, dueAt + MIN_INTERVAL_MS - 1));
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
  const following = followingRun(kind, schedule, dueAt, dueAt);
  return following !== null && following <= now;
}
