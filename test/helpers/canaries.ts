import type { Storage } from '../../src/storage/database.ts';

/**
 * Every credential a test run handled, so the harness can prove at close that none of them reached
 * the audit log, the server log or an error body. Values are kept only in memory, and a finding names
 * the kind of credential and where it was found, never the value.
 */

export type CanaryKind =
  | 'secret value' | 'password' | 'client secret' | 'session token' | 'machine token' | 'run token' | 'root token'
  | 'webhook token' | 'TOTP secret' | 'TOTP code' | 'unseal share' | 'webhook secret' | 'TOTP enrolment ticket'
  | 'one-time key' | 'JWT assertion';

/** Kinds whose values are random strings: a fragment of them is as telling as the whole (see `needlesOf`). */
const RANDOM_KINDS = new Set<CanaryKind>(['client secret', 'session token', 'machine token', 'run token', 'root token', 'webhook token', 'TOTP secret', 'unseal share', 'TOTP enrolment ticket', 'one-time key', 'JWT assertion']);
/** Shorter values are skipped: they would match by chance (a secret value `prod`, a password `x`). */
const MIN_LENGTH = 6;
/** The fragment of a random credential that is looked for on its own, at its head and at its tail. */
export const FRAGMENT_LENGTH = 12;
/** Credential prefixes, stripped before fragments are taken (they are public and shared by every token). */
const PREFIXES = /^(?:khcs_|khs_|khe_|kh_|whk_)/;

export interface Finding {
  kind: CanaryKind;
  /** Where: `audit_events seq 12 (context)`, `the server log (line 3)`, `error body 2 (PUT /v1/...)`. */
  where: string;
  /** Which form matched: raw, json, ascii-json, json-in-json, base64, url, head fragment, tail fragment. */
  form: string;
}

interface Needle {
  text: string;
  kind: CanaryKind;
  form: string;
  /** Six-digit codes: only a match standing alone (no letter or digit either side) counts. */
  bounded: boolean;
}

/** JSON-escaped body of a string, without its quotes. */
const jsonBody = (s: string) => JSON.stringify(s).slice(1, -1);
/** The same, with every non-ASCII character as \uXXXX (what ASCII-safe serialisers write). */
const asciiJsonBody = (s: string) => jsonBody(s).replace(/[\u0080-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);

/**
 * How a canary can show up in stored or printed text:
 * - raw, and JSON-escaped (once, as in a JSON column or log line; twice, as JSON quoted inside a JSON
 *   string; and ASCII-escaped): a value with `"`, `\`, a newline or non-ASCII is never found raw
 *   inside JSON, so the escaped forms are what make such canaries detectable at all;
 * - base64 and URL-encoded, whole;
 * - for random credentials (tokens, client secrets, shares, TOTP secrets), also the first and the
 *   last FRAGMENT_LENGTH characters of the random part. 12 base64url characters carry 72 bits: they
 *   never occur by chance in a hash, an id or another token, so a hit is a real (partial) leak, and a
 *   truncated echo ("token khs_abc…", "…xyz") keeps a head or a tail. Every 12-character window
 *   would also catch an echo cut from the middle, which nothing produces; head and tail keep the
 *   needle count (and the scan time over a whole suite's events) small.
 * Secret values get no fragments: they are chosen by tests, and their parts ("prod-", "-key") are
 * ordinary words that do occur in events.
 */
function needlesOf(kind: CanaryKind, value: string): Needle[] {
  if (kind === 'TOTP code') return /^\d{6,8}$/.test(value) ? [{ text: value, kind, form: 'raw', bounded: true }] : [];
  if (value.length < MIN_LENGTH) return [];
  const forms: Array<[string, string]> = [
    ['raw', value], ['json', jsonBody(value)], ['ascii-json', asciiJsonBody(value)], ['json-in-json', jsonBody(jsonBody(value))],
    ['base64', Buffer.from(value).toString('base64')],
  ];
  // A lone surrogate has no URL encoding (encodeURIComponent throws): such a canary cannot appear URL-encoded either.
  if (value.isWellFormed()) forms.push(['url', encodeURIComponent(value)]);
  if (RANDOM_KINDS.has(kind)) {
    // A JWT's header (and often its payload) is shared or public: its signature is the random part.
    const random = kind === 'JWT assertion' ? value.slice(value.lastIndexOf('.') + 1) : value.replace(PREFIXES, '');
    if (random.length > FRAGMENT_LENGTH) forms.push(['head fragment', random.slice(0, FRAGMENT_LENGTH)], ['tail fragment', random.slice(-FRAGMENT_LENGTH)]);
  }
  const seen = new Set<string>();
  return forms.filter(([, text]) => !seen.has(text) && seen.add(text)).map(([form, text]) => ({ text, kind, form, bounded: false }));
}

const ALNUM = /[0-9A-Za-z]/;
function occursIn(haystack: string, needle: Needle): boolean {
  if (!needle.bounded) return haystack.includes(needle.text);
  for (let i = haystack.indexOf(needle.text); i >= 0; i = haystack.indexOf(needle.text, i + 1)) {
    const before = haystack[i - 1] ?? ' ';
    const after = haystack[i + needle.text.length] ?? ' ';
    if (!ALNUM.test(before) && !ALNUM.test(after)) return true;
  }
  return false;
}

export interface CanaryRegistry {
  /** Registers a credential (ignored if not a string); returns it, so a helper can register as it hands on. */
  add<T>(kind: CanaryKind, value: T): T;
  /** How many distinct values of each kind were registered (tests assert their traffic really registered). */
  counts(): Partial<Record<CanaryKind, number>>;
  /** Where any registered canary occurs in the given texts. */
  findIn(texts: Iterable<{ where: string; text: string }>): Finding[];
}

export function createCanaryRegistry(): CanaryRegistry {
  const values = new Map<string, CanaryKind>();
  let needles: Needle[] | null = null;
  return {
    add(kind, value) {
      if (typeof value === 'string' && value.length > 0 && !values.has(value)) {
        values.set(value, kind);
        needles = null;
      }
      return value;
    },
    counts() {
      const out: Partial<Record<CanaryKind, number>> = {};
      for (const kind of values.values()) out[kind] = (out[kind] ?? 0) + 1;
      return out;
    },
    findIn(texts) {
      needles ??= [...values].flatMap(([value, kind]) => needlesOf(kind, value));
      const all = [...texts];
      // One pass over everything first (a separator no needle holds), then only the needles that hit are located.
      const joined = all.map((t) => t.text).join('\u0001');
      const hits = needles.filter((needle) => occursIn(joined, needle));
      const findings: Finding[] = [];
      for (const { where, text } of all) {
        for (const needle of hits) if (occursIn(text, needle)) findings.push({ kind: needle.kind, where, form: needle.form });
      }
      return findings;
    },
  };
}

/**
 * Every column of every audit event and checkpoint, as the database returns it (no re-serialising:
 * a JSON column is scanned as the text that is stored), labelled by table, seq and column.
 */
export async function auditTexts(storage: Storage): Promise<Array<{ where: string; text: string }>> {
  const texts: Array<{ where: string; text: string }> = [];
  for (const table of ['audit_events', 'audit_checkpoints'] as const) {
    const rows = await storage.db.selectFrom(table).selectAll().execute();
    for (const row of rows as Array<Record<string, unknown>>) {
      for (const [column, value] of Object.entries(row)) {
        if (value !== null && value !== undefined) texts.push({ where: `${table} seq ${String(row.seq)} (${column})`, text: String(value) });
      }
    }
  }
  return texts;
}

/** A failure message that says what leaked and where, never the value. */
export function describeFindings(findings: Finding[]): string {
  const shown = findings.slice(0, 20).map((f) => `- a ${f.kind} (${f.form}) in ${f.where}`);
  if (findings.length > shown.length) shown.push(`- … and ${findings.length - shown.length} more`);
  return `credentials leaked:\n${shown.join('\n')}`;
}
