import { encodedForms } from './forms.ts';
import { collectMatches, compilePatterns, undecidedFrom, type PatternSet } from './matcher.ts';

/** Masks known secret values, and their encodings, in text. */
export interface Redactor {
  redact(text: string): string;
  /** How many distinct values it masks. */
  readonly size: number;
}

export interface RedactorOptions {
  /** Values with fewer code points are masked only as whole delimited tokens (docs/redaction.md). Default 6. */
  floor?: number;
  /** Replaces each masked span. Default `[REDACTED]`. */
  mask?: string;
}

export const DEFAULT_FLOOR = 6;
export const DEFAULT_MASK = '[REDACTED]';

const SETS = Symbol('redactor pattern sets');
const MASK = Symbol('redactor mask');

interface InternalRedactor extends Redactor {
  readonly [SETS]: readonly PatternSet[];
  readonly [MASK]: string;
}

/** The compiled sets behind a redactor built here (streams and unions scan them directly). */
export function setsOf(r: Redactor): { sets: readonly PatternSet[]; mask: string } {
  const internal = r as Partial<InternalRedactor>;
  if (!internal[SETS]) throw new TypeError('not a redactor built by createRedactor');
  return { sets: internal[SETS], mask: internal[MASK]! };
}

/**
 * Merged [start, end) spans to mask, for matches starting at or after `from`. Overlapping matches are
 * joined, so no character of any value survives next to a mask (a value inside another, two values
 * overlapping). Adjacent matches stay separate masks.
 */
export function spansOf(sets: readonly PatternSet[], text: string, from: number, final: boolean): number[] {
  const raw: number[] = [];
  for (const set of sets) collectMatches(set, text, from, final, raw);
  if (raw.length === 0) return raw;
  const order = [...Array(raw.length / 2).keys()].sort((a, b) => raw[2 * a]! - raw[2 * b]! || raw[2 * b + 1]! - raw[2 * a + 1]!);
  const merged: number[] = [];
  for (const i of order) {
    const s = raw[2 * i]!;
    const e = raw[2 * i + 1]!;
    const last = merged.length - 1;
    if (last > 0 && s < merged[last]!) merged[last] = Math.max(merged[last]!, e);
    else merged.push(s, e);
  }
  return merged;
}

/** Writes `text[from, to)` with each span replaced by the mask. */
export function applySpans(text: string, spans: readonly number[], mask: string, from = 0, to = text.length): string {
  let out = '';
  let at = from;
  for (let i = 0; i < spans.length; i += 2) {
    out += text.slice(at, spans[i]) + mask;
    at = spans[i + 1]!;
  }
  return out + text.slice(at, to);
}

/** The earliest position where any set still waits for more text. */
export function undecided(sets: readonly PatternSet[], text: string, from: number): number {
  let first = text.length;
  for (const set of sets) first = Math.min(first, undecidedFrom(set, text, from));
  return first;
}

function build(sets: readonly PatternSet[], mask: string): Redactor {
  const size = sets.reduce((n, s) => n + s.values, 0);
  const r: InternalRedactor = {
    [SETS]: sets,
    [MASK]: mask,
    size,
    redact(text) {
      if (size === 0 || text.length === 0) return text;
      const spans = spansOf(sets, text, 0, true);
      return spans.length === 0 ? text : applySpans(text, spans, mask);
    },
  };
  return r;
}

/**
 * Compiles the values (and every encoded form, docs/redaction.md) once; `redact` is then one pass.
 * @example createRedactor(['sk_live_abc123']).redact('auth=sk_live_abc123') // 'auth=[REDACTED]'
 */
export function createRedactor(values: Iterable<string>, opts: RedactorOptions = {}): Redactor {
  const floor = opts.floor ?? DEFAULT_FLOOR;
  if (!Number.isInteger(floor) || floor < 1) throw new RangeError('floor must be a positive integer');
  const long = new Set<string>();
  const whole = new Set<string>();
  const distinct = new Set<string>();
  for (const value of values) {
    if (typeof value !== 'string' || value.length === 0 || distinct.has(value)) continue;
    distinct.add(value);
    let codePoints = 0;
    for (const _ of value) if (++codePoints >= floor) break;
    const isLong = codePoints >= floor;
    for (const form of encodedForms(value, { embedded: isLong })) (isLong ? long : whole).add(form);
  }
  return build(distinct.size === 0 ? [] : [compilePatterns(long, whole, distinct.size)], opts.mask ?? DEFAULT_MASK);
}

/** One redactor masking what any of `redactors` masks, in one union of spans (values across sets still join). */
export function unionRedactors(redactors: readonly Redactor[], mask = DEFAULT_MASK): Redactor {
  return build(redactors.flatMap((r) => setsOf(r).sets), mask);
}

/** A copy of a JSON value with every string redacted, object keys included; the input is not touched. */
export function redactDeep<T>(r: Redactor, value: T): T {
  return r.size === 0 ? value : redactDeepWith((text) => r.redact(text), value);
}

/** `redactDeep` with any masking function (e.g. a redactor plus a token only one caller knows). */
export function redactDeepWith<T>(redact: (text: string) => string, value: T): T {
  const seen = new WeakSet<object>();
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') return redact(v);
    // A numeric value (a PIN, an account number) echoed back as a JSON number is still the value.
    if (typeof v === 'number' || typeof v === 'bigint') {
      const text = String(v);
      const masked = redact(text);
      return masked === text ? v : masked;
    }
    if (v === null || typeof v !== 'object') return v;
    if (typeof (v as { toJSON?: unknown }).toJSON === 'function') return walk((v as { toJSON(): unknown }).toJSON());
    if (seen.has(v)) return '[Circular]';
    seen.add(v);
    try {
      if (Array.isArray(v)) return v.map(walk);
      const out: Record<string, unknown> = {};
      for (const [key, child] of Object.entries(v)) {
        let k = redact(key);
        for (let n = 2; Object.hasOwn(out, k); n++) k = `${redact(key)}#${n}`;
        // defineProperty: a key "__proto__" must stay a key, not replace the copy's prototype.
        Object.defineProperty(out, k, { value: walk(child), enumerable: true, writable: true, configurable: true });
      }
      return out;
    } finally {
      seen.delete(v);
    }
  };
  return walk(value) as T;
}
