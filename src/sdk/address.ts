import { isIPv4 } from 'node:net';
import { KeyholdError } from './errors.ts';

/**
 * Loopback by address, not by spelling ("127.evil.example" is a DNS name). The SDK keeps its own
 * copy of platform/addresses.ts's rule: a script's sandbox may read only the SDK's directory.
 */
function isLoopbackHost(hostname: string): boolean {
  const host = hostname.toLowerCase();
  return host === 'localhost' || host === '[::1]' || (isIPv4(host) && host.startsWith('127.'));
}

/**
 * The server's origin from an `addr` setting: http(s)://host[:port] with no path, no credentials,
 * and plain http only to loopback, so the token and values never cross a network in the clear.
 */
export function serverOrigin(addr: string): string {
  let url: URL | null = null;
  try {
    url = new URL(addr);
  } catch {
    // reported below
  }
  if (!url || (url.protocol !== 'http:' && url.protocol !== 'https:')) throw new KeyholdError('NOT_CONFIGURED', 'addr must be http(s)://host[:port] with no path');
  // Not echoed: whatever sits before the @ is a credential.
  if (url.username !== '' || url.password !== '') throw new KeyholdError('NOT_CONFIGURED', 'addr must not carry a user name or password');
  if (url.pathname !== '/' || url.search !== '' || url.hash !== '') throw new KeyholdError('NOT_CONFIGURED', 'addr must be http(s)://host[:port] with no path');
  if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
    throw new KeyholdError('NOT_CONFIGURED', `addr is ${url.origin}: plain http only to loopback (127.0.0.0/8, ::1, localhost); use https`);
  }
  return url.origin;
}
