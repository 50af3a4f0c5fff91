import { fail } from '../../errors/index.ts';

/** Small strict readers for connector settings: unknown keys are refused, every error names the setting. */

export function onlyKeys(raw: Record<string, unknown>, allowed: readonly string[], where = 'settings'): void {
  const extra = Object.keys(raw).find((k) => !allowed.includes(k));
  if (extra !== undefined) fail('VALIDATION_FAILED', `${where}: unknown setting "${extra.slice(0, 64)}" (allowed: ${allowed.join(', ')})`);
}

export function text(raw: Record<string, unknown>, key: string, opts: { default?: string; max?: number; pattern?: RegExp; where?: string } = {}): string {
  const v = raw[key] ?? opts.default;
  const where = `${opts.where ?? 'settings'}.${key}`;
  if (typeof v !== 'string' || v.length === 0) fail('VALIDATION_FAILED', `${where} is required (a string)`);
  if (v.length > (opts.max ?? 256)) fail('VALIDATION_FAILED', `${where} is at most ${opts.max ?? 256} characters`);
  if (opts.pattern && !opts.pattern.test(v)) fail('VALIDATION_FAILED', `${where} is not well formed`);
  return v;
}

export function whole(raw: Record<string, unknown>, key: string, opts: { default: number; min: number; max: number }): number {
  const v = raw[key] ?? opts.default;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < opts.min || v > opts.max) fail('VALIDATION_FAILED', `settings.${key} must be a whole number from ${opts.min} to ${opts.max}`);
  return v;
}

export function record(raw: Record<string, unknown>, key: string): Record<string, unknown> {
  const v = raw[key];
  if (v === null || typeof v !== 'object' || Array.isArray(v)) fail('VALIDATION_FAILED', `settings.${key} must be an object`);
  return v as Record<string, unknown>;
}

/** An HTTP header name (RFC 9110 token). */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;

/** Races a promise against a timeout, so a hung peer cannot hold a health check forever. */
export async function withTimeout<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out after ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([work, timeout]);
  } finally {
    clearTimeout(timer);
  }
}
