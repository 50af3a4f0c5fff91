import { cutToBytes } from '../../platform/utf8.ts';
import type { Destination } from '../connectors/destination.ts';
import { encodedForms } from '../redaction/forms.ts';
import { redactDeepWith } from '../redaction/redactor.ts';
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
 * The upstream answer as the caller sees it: hop headers dropped, every header and the body masked, the body cut
 * at `maxBytes` only after masking (a value straddling the cut is masked whole), JSON parsed when whole and masked
 * again once decoded (its escapes, e.g. `\u002B`, may spell a value no encoded form matches).
 */
export function shapeResponse(upstream: { status: number; headers: Headers; body: Buffer; truncated: boolean }, ctx: { url: URL; dest: Destination; mask: (text: string) => string; maxBytes: number }): ProxyResponse {
  const headers: Record<string, string> = {};
  for (const [name, value] of upstream.headers) {
    if (DROPPED.has(name) || name === 'set-cookie') continue;
    headers[name] = ctx.mask(name === 'location' ? location(value, ctx.url, ctx.dest) : value);
  }
  const cookies = upstream.headers.getSetCookie();
  if (cookies.length > 0) headers['set-cookie'] = ctx.mask(cookies.join('\n'));
  const truncated = upstream.truncated || upstream.body.byteLength > ctx.maxBytes;
  const masked = ctx.mask(upstream.body.toString('utf8'));
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
