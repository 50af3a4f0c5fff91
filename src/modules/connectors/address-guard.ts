import { lookup as dnsLookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { isForbiddenAddress, isForbiddenHost } from '../../platform/addresses.ts';

/** A destination Keyhold refuses to call: a metadata service or a link-local address (platform/addresses.ts). */
export class ForbiddenDestinationError extends Error {
  constructor() {
    super('the destination resolves to an address Keyhold never calls (link-local or cloud metadata)');
    this.name = 'ForbiddenDestinationError';
  }
}

/**
 * Whether a fetch failed because its destination was refused, before the request or at connect time
 * (`pinnedFetch`: fetch wraps the refusal as the cause).
 */
export function isForbiddenDestination(err: unknown): boolean {
  for (let e = err, depth = 0; e instanceof Error && depth < 5; e = e.cause, depth++) {
    if (e instanceof ForbiddenDestinationError) return true;
  }
  return false;
}

export type Lookup = (hostname: string) => Promise<Array<{ address: string }>>;

export const systemLookup: Lookup = (hostname) => dnsLookup(hostname, { all: true });

/** How long a name that resolved to allowed addresses is trusted without asking DNS again. */
const ALLOWED_TTL_MS = 30_000;
const MAX_ALLOWED = 1_000;

/**
 * `work`, or the signal's reason once it aborts: getaddrinfo takes no signal, and a name server that
 * does not answer would otherwise hold the caller past its own timeout (a JWKS fetch, and the token
 * exchange waiting on it; a connector call). The lookup itself runs on until the resolver gives up.
 */
function untilAborted<T>(work: Promise<T>, signal: AbortSignal | null | undefined): Promise<T> {
  if (!signal) return work;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}

/**
 * Wraps fetch so a connector's request never reaches a cloud metadata service or a link-local
 * address, whatever its host is called: literal addresses and metadata names are refused at once,
 * other names are resolved first and refused if any address they resolve to is forbidden. A
 * connector author could otherwise point a destination at the instance metadata endpoint and read
 * the host's cloud credentials back through the proxy. This check answers early and clearly; the
 * connection resolves the name again, and a DNS answer that changes in between (or within the 30 s
 * a name is remembered as allowed) is caught by the fetch it wraps in production: `pinnedFetch`
 * (pinned-fetch.ts) checks the very addresses it connects to.
 */
export function guardedFetch(inner: typeof fetch, lookup: Lookup = systemLookup, opts: { ttlMs?: number; now?: () => number } = {}): typeof fetch {
  const ttlMs = opts.ttlMs ?? ALLOWED_TTL_MS;
  const now = opts.now ?? Date.now;
  // Names recently resolved to allowed addresses: a proxy call on a kept-alive connection should
  // not wait for a DNS query each time. Refusals are not cached (they are rare and cheap to repeat).
  const allowed = new Map<string, number>();
  async function check(host: string, signal: AbortSignal | null | undefined): Promise<void> {
    const until = allowed.get(host);
    if (until !== undefined && until > now()) return;
    const addresses = await untilAborted(lookup(host), signal);
    if (addresses.some((a) => isForbiddenAddress(a.address))) throw new ForbiddenDestinationError();
    if (allowed.size >= MAX_ALLOWED) allowed.delete(allowed.keys().next().value!);
    allowed.set(host, now() + ttlMs);
  }
  return (async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    const url = new URL(input instanceof Request ? input.url : String(input));
    if (isForbiddenHost(url.hostname)) throw new ForbiddenDestinationError();
    const host = url.hostname.replace(/^\[|\]$/g, '').toLowerCase();
    if (isIP(host) === 0) await check(host, init?.signal ?? (input instanceof Request ? input.signal : undefined));
    return inner(input, init);
  }) as typeof fetch;
}
