import { fail } from '../../../errors/index.ts';
import type { DestinationEntry } from '../destination.ts';
import type { HealthResult } from '../model.ts';
import type { OutboundLimits, OutboundResult, OutgoingRequest } from '../outbound.ts';

/** What a health check may touch: an outbound fetch with limits, and the time for signatures. */
export interface HealthIo {
  fetch: typeof fetch;
  limits: OutboundLimits;
  nowSeconds(): number;
}

export type HealthOutcome = Omit<HealthResult, 'latencyMs'>;

/** How a type that speaks HTTP is reached through the credential proxy. */
export interface HttpCapability<S> {
  /** The default destination ('') and any named extra ones; a slot destination is read from the slot's value at each call. */
  destinations(settings: S): Record<string, DestinationEntry>;
  /** Request headers (lower-case) a caller may not set: the injected auth lives there. */
  protectedHeaders(settings: S): string[];
  /** Query parameters a caller may not set. */
  protectedQuery(settings: S): string[];
  /** Adds the credential to an outgoing request; returns the strings it put on the wire, to mask in the answer. */
  authorize(req: OutgoingRequest, settings: S, values: Readonly<Record<string, string>>, nowSeconds: number): string[];
}

/** One connector type: settings schema, slots, health check and (for HTTP types) proxy support. A folder each under types/. */
export interface ConnectorType<S = Record<string, unknown>> {
  readonly name: string;
  /** Validates and normalises settings; VALIDATION_FAILED naming the field otherwise. */
  parseSettings(raw: Record<string, unknown>): S;
  /** The slots these settings need, and the ones they may have. */
  slots(settings: S): { required: string[]; optional: string[] };
  health(settings: S, values: Readonly<Record<string, string>>, io: HealthIo): Promise<HealthOutcome>;
  readonly http?: HttpCapability<S>;
}

/** Reads settings strictly: every key must be one the type knows. */
export function settingsReader(raw: Record<string, unknown>, known: readonly string[]) {
  for (const key of Object.keys(raw)) {
    if (!known.includes(key)) fail('VALIDATION_FAILED', `settings.${printable(key)} is not a setting of this connector type (known: ${known.join(', ')})`);
  }
  return {
    string(key: string, opts: { required?: boolean; max?: number; pattern?: RegExp; hint?: string; allowEmpty?: boolean } = {}): string | undefined {
      const v = raw[key];
      if (v === undefined) {
        if (opts.required) fail('VALIDATION_FAILED', `settings.${key} is required`);
        return undefined;
      }
      if (typeof v !== 'string' || (v.length === 0 && !opts.allowEmpty) || v.length > (opts.max ?? 2048) || (opts.pattern && !opts.pattern.test(v))) {
        fail('VALIDATION_FAILED', `settings.${key} must be ${opts.hint ?? `a non-empty string of at most ${opts.max ?? 2048} characters`}`);
      }
      return v;
    },
    int(key: string, min: number, max: number, fallback: number): number {
      const v = raw[key] ?? fallback;
      if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) fail('VALIDATION_FAILED', `settings.${key} must be a whole number from ${min} to ${max}`);
      return v;
    },
    bool(key: string, fallback: boolean): boolean {
      const v = raw[key] ?? fallback;
      if (typeof v !== 'boolean') fail('VALIDATION_FAILED', `settings.${key} must be true or false`);
      return v;
    },
    object(key: string): Record<string, unknown> | undefined {
      const v = raw[key];
      if (v === undefined) return undefined;
      if (typeof v !== 'object' || v === null || Array.isArray(v)) fail('VALIDATION_FAILED', `settings.${key} must be an object`);
      return v as Record<string, unknown>;
    },
  };
}

/** HTTP header names (RFC 9110 tokens). */
export const HEADER_NAME = /^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}$/;

/** Headers no caller and no setting may name: hop-by-hop, framing, and the host. */
export const RESERVED_HEADERS = [
  'host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade',
  'content-length', 'proxy-authorization', 'proxy-authenticate', 'expect',
];

/** A setting that names a header, checked and lower-cased. */
export function headerSetting(value: string | undefined, fallback: string, key: string): string {
  const name = (value ?? fallback).toLowerCase();
  if (!HEADER_NAME.test(name) || RESERVED_HEADERS.includes(name)) fail('VALIDATION_FAILED', `settings.${key} must be a header name other than ${RESERVED_HEADERS.join(', ')}`);
  return name;
}

function printable(key: string): string {
  return /^[A-Za-z0-9_.-]{1,40}$/.test(key) ? key : '(unprintable)';
}

/** The fixed wording of an HTTP health outcome: status and reason only, never the upstream body. */
export function httpHealth(result: OutboundResult, what: string): HealthOutcome {
  if (!result.ok) {
    if (result.reason === 'unsendable_header') return { ok: false, reason: 'unsendable_header', detail: `the value for header "${result.header}" holds a character HTTP cannot carry (a control character such as a line break); nothing was sent` };
    if (result.reason === 'forbidden_address') return { ok: false, reason: 'forbidden_address', detail: `${what} resolves to a link-local or cloud metadata address, which Keyhold never calls` };
    return result.reason === 'timeout'
      ? { ok: false, reason: 'timeout', detail: `${what} did not answer within the timeout` }
      : { ok: false, reason: 'unreachable', detail: `${what} could not be reached` };
  }
  if (result.status >= 200 && result.status < 300) return { ok: true, status: result.status, reason: 'ok', detail: `${what} answered ${result.status}` };
  return { ok: false, status: result.status, reason: 'http_status', detail: `${what} answered ${result.status}; a 2xx was expected` };
}
