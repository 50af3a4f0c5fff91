import { cutToBytes } from '../../platform/utf8.ts';
import type { Destination } from '../connectors/destination.ts';
import { encodedForms } from '../redaction/forms.ts';
import { redactDeepWith, type Redactor } from '../redaction/redactor.ts';
import { createStreamRedactor } from '../redaction/stream.ts';
import type { ProxyResponse } from './types.ts';

export const MASK = '[REDACTED]';
// Not passed back: they describe the hop between Keyhold and the upstream, or a body that redaction changed.
const DROPPED = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'content-length', 'content-encoding', 'proxy-authenticate']);

/**
 * Masks the strings this very call put on the wire, in every form the redaction library knows an upstream
 * to echo them (raw, base64, base64url, hex, URL- and form-encoded, JSON-escaped in its dialects: forms.ts).
 * Defence in depth under the tenant redactor, which knows every value of the tenant; values under 4
 * characters are left to it.
 */
export function createCallMasker(wire: Iterable<string>): (text: string) => string {
  const forms = new Set<string>();
  for (const v of wire) {
    if (v.length < 4) continue;
    for (const f of encodedForms(v, { embedded: false })) if (f.length >= 4) forms.add(f);
  }
  const ordered = [...forms].sort((a, b) => b.length - a.length);
  return (text) => {
    let out = text;
    for (const f of ordered) if (out.includes(f)) out = out.split(f).join(MASK);
    return out;
  };
}

// A UTF-16 surrogate pair written as two escapes (one character), any other escape, or a backslash before any character.
const JSON_ESCAPE = /\\u([dD][89abAB][0-9a-fA-F]{2})\\u([dD][c-fC-F][0-9a-fA-F]{2})|\\(u[0-9a-fA-F]{4}|[^])/g;

/**
 * Text with every JSON escape rewritten as JSON.stringify writes it (`\u002B` is `+`, `\/` is `/`, `\u0022` is `\"`),
 * all else untouched, so a value an encoder escaped its own way (.NET escapes `+`, PHP `/`, some encoders everything)
 * is a form the masker knows. The JSON parse does this only for a whole JSON answer; a cut one or NDJSON needs it here.
 */
export function plainJsonEscapes(text: string): string {
  return text.replace(JSON_ESCAPE, (whole, high?: string, low?: string, escape?: string) => {
    if (high !== undefined) return JSON.stringify(String.fromCharCode(parseInt(high, 16), parseInt(low!, 16))).slice(1, -1);
    if (escape!.length === 1) return escape === '/' ? '/' : whole;
    return JSON.stringify(String.fromCharCode(parseInt(escape!.slice(1), 16))).slice(1, -1);
  });
}

/** Masks `text`, and when a value only shows once its escapes are plain, the plain text masked (else `text` stays as sent). */
export function maskEscaped(mask: (text: string) => string, text: string): string {
  const masked = mask(text);
  const plain = plainJsonEscapes(masked);
  if (plain === masked) return masked;
  const again = mask(plain);
  return again === plain ? masked : again;
}

/** The content codings the proxy's client (undici's fetch) decodes; the header stays, the body arrives decoded. */
const DECODED = new Set(['gzip', 'x-gzip', 'deflate', 'br', 'zstd']);

/**
 * Whether the body arrived as plain bytes the masking can read: no content coding, `identity` alone, or only codings
 * the client decoded. One coding it does not know makes it decode none of them (a gzip inside it arrives as gzip),
 * and masking compressed or transformed bytes finds nothing.
 * @example
 * decodedAnswer(null);            // true
 * decodedAnswer('br, gzip');      // true
 * decodedAnswer('gzip, compress'); // false
 * decodedAnswer('gzip,');          // false
 */
export function decodedAnswer(contentEncoding: string | null): boolean {
  if ((contentEncoding ?? '').trim() === '') return true;
  // Empty entries stay: the client reads one (a stray comma) as a coding it does not know and decodes nothing.
  const codings = contentEncoding!.split(',').map((c) => c.trim().toLowerCase());
  if (codings.length === 1 && codings[0] === 'identity') return true;
  return codings.every((c) => DECODED.has(c));
}

/** A Location inside the connector's destination comes back as a path under it; anywhere else, only the mask. */
function location(value: string, base: URL, dest: Destination): string {
  try {
    const target = new URL(value, base);
    const under = target.origin === dest.origin && (dest.prefix === '' || target.pathname === dest.prefix || target.pathname.startsWith(dest.prefix + '/'));
    return under ? target.pathname.slice(dest.prefix.length) + target.search : MASK;
  } catch {
    return MASK;
  }
}

/**
 * The upstream answer as the caller sees it: hop headers dropped, the body read in its own encoding, every header and the body masked (also as they
 * read with their JSON escapes made plain: `plainJsonEscapes`), the body cut at `maxBytes` only after masking (a value
 * straddling the cut is masked whole, one the read stopped inside is dropped), JSON parsed when whole and masked again once decoded.
 */
export function shapeResponse(upstream: { status: number; headers: Headers; body: Buffer; truncated: boolean }, ctx: {
  url: URL; dest: Destination; mask: (text: string) => string; maxBytes: number;
  /** The body as text (`readAnswer`: in its own encoding, or refused). */
  text: string;
  /** Every value that may come back (the tenant's, this call's): where a cut answer may end inside one. */
  redactor: Redactor;
}): ProxyResponse {
  const headers: Record<string, string> = {};
  for (const [name, value] of upstream.headers) {
    if (DROPPED.has(name) || name === 'set-cookie') continue;
    headers[name] = maskEscaped(ctx.mask, name === 'location' ? location(value, ctx.url, ctx.dest) : value);
  }
  const cookies = upstream.headers.getSetCookie();
  if (cookies.length > 0) headers['set-cookie'] = maskEscaped(ctx.mask, cookies.join('\n'));
  const truncated = upstream.truncated || upstream.body.byteLength > ctx.maxBytes;
  // The read stopped inside the answer: a tail that may be the start of a value is dropped, as its rest was never
  // seen and nothing would mask it (masks before it can shorten the text enough to bring it under the limit).
  const raw = ctx.text;
  const masked = maskEscaped(ctx.mask, upstream.truncated ? createStreamRedactor(ctx.redactor).push(raw) : raw);
  const text = truncated ? cutToBytes(masked, ctx.maxBytes).text : masked;
  let body: unknown = text === '' ? null : text;
  if (text !== '' && !truncated && /[/+]json\b/i.test(upstream.headers.get('content-type') ?? '')) {
    try {
      body = redactDeepWith(ctx.mask, JSON.parse(text));
    } catch {
      // Not JSON after all (or a mask landed inside a token): the text is returned.
    }
  }
  return { status: upstream.status, headers, body, truncated };
}
