/** Parsing KEYHOLD_* values: durations, whole numbers and the errors that name the setting. */

export class ConfigError extends Error {
  constructor(setting: string, problem: string) {
    super(`invalid configuration: ${setting} ${problem}`);
    this.name = 'ConfigError';
  }
}

const DURATION = /^(\d+)(ms|s|m|h|d)$/;
const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Bounds of a duration setting, in milliseconds, with how they read in an error. */
export interface DurationBounds { min: number; max: number; text: string }

export const SECOND = 1000;
export const DAY = 86_400_000;
/** Intervals of timers: Node fires a timer longer than 2^31-1 ms (24.8 days) or shorter than 1 ms after 1 ms, in a loop. */
export const TIMER: DurationBounds = { min: 100, max: 24 * DAY, text: 'between 100ms and 24d' };
/** Lifetimes and windows: beyond ten years, dates computed from them stop being dates. */
export const LIFETIME: DurationBounds = { min: SECOND, max: 3650 * DAY, text: 'between 1s and 3650d' };
/** Lifetimes where zero means "not at all" (no rollback, no grace). */
export const RETENTION: DurationBounds = { min: 0, max: 3650 * DAY, text: 'between 0ms and 3650d' };

/** Parses "7d", "90m", "500ms" into milliseconds, within `bounds` when given. */
export function parseDuration(setting: string, text: string, bounds?: DurationBounds): number {
  const m = DURATION.exec(text.trim());
  if (!m) throw new ConfigError(setting, `must be a duration like 30s, 15m, 7d (got "${text}")`);
  const ms = Number(m[1]) * UNIT_MS[m[2]!]!;
  if (bounds && !(ms >= bounds.min && ms <= bounds.max)) throw new ConfigError(setting, `must be ${bounds.text} (got "${text}")`);
  return ms;
}

export function int(setting: string, text: string, min: number, max: number): number {
  if (!/^\d+$/.test(text)) throw new ConfigError(setting, `must be a whole number (got "${text}")`);
  const n = Number(text);
  if (n < min || n > max) throw new ConfigError(setting, `must be between ${min} and ${max} (got ${n})`);
  return n;
}

/** A PostgreSQL timeout: 0 (or 0 with a unit) for none, else a duration within `bounds`. */
export function timeoutSetting(setting: string, text: string, bounds: DurationBounds): number {
  if (text.trim() === '0') return 0;
  if (!DURATION.test(text.trim())) throw new ConfigError(setting, `must be 0 (none) or a duration like 500ms, 5s, 1m (got "${text}")`);
  const ms = parseDuration(setting, text);
  if (ms !== 0 && !(ms >= bounds.min && ms <= bounds.max)) throw new ConfigError(setting, `must be 0 (none) or ${bounds.text} (got "${text}")`);
  return ms;
}
