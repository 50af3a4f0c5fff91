import { isLoopbackHost } from './addresses.ts';

/** Why an address cannot be a Keyhold server's: each caller words its own hint. */
export type ServerAddressProblem = 'not-url' | 'not-http' | 'credentials' | 'query' | 'plain-http';

/**
 * A Keyhold server's address as clients take it (the CLI's --addr, the server's KEYHOLD_SCRIPT_ADDR): an http(s)
 * URL with no credentials, query or fragment, and plain http only to loopback, so tokens, shares and values never
 * cross a network in the clear. `message` never echoes what sits before an @ (a credential).
 */
export function parseServerAddress(raw: string): { ok: true; url: URL } | { ok: false; problem: ServerAddressProblem; message: string } {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return { ok: false, problem: 'not-url', message: `is not a URL: "${withoutUserinfo(raw)}"` };
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return { ok: false, problem: 'not-http', message: `must be an http:// or https:// URL (got "${withoutUserinfo(raw)}")` };
  if (url.username !== '' || url.password !== '') return { ok: false, problem: 'credentials', message: 'must not carry a user name or password' };
  if (url.search !== '' || url.hash !== '') return { ok: false, problem: 'query', message: `must not carry a query or fragment (got "${raw}")` };
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    return { ok: false, problem: 'plain-http', message: `is ${url.origin}: plain http only to loopback (127.0.0.0/8, ::1, localhost)` };
  }
  return { ok: true, url };
}

/**
 * The address as typed, with everything before its last @ (after any scheme://) shown as `…`: a mistyped address
 * ("ops:pw@host" without a scheme, "https//ops:pw@host") is not a URL with a password, but still holds one.
 */
function withoutUserinfo(raw: string): string {
  return raw.replace(/^([a-z][a-z0-9+.-]*:\/\/)?[^?#]*@/i, '$1…@');
}
