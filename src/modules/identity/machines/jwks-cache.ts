import { createLocalJWKSet, createRemoteJWKSet, customFetch, errors } from 'jose';
import { guardedFetch } from '../../connectors/address-guard.ts';
import { pinnedFetch } from '../../connectors/pinned-fetch.ts';

export interface JwksCacheOptions {
  /** After a fetch, an unknown `kid` waits this long before it may trigger another (protects the IdP). */
  cooldownMs: number;
  /** Keys are refetched once they are this old, even when every `kid` is known. */
  cacheMaxAgeMs: number;
  /** A JWKS fetch that takes longer fails (and so does the exchange). */
  timeoutMs: number;
  /**
   * While the JWKS cannot be fetched, keys fetched at most this long ago still verify: an outage at
   * the IdP's key endpoint must not stop every exchange at the next refresh, but a key it retired
   * is not trusted forever either.
   */
  staleMaxAgeMs: number;
}

export const DEFAULT_JWKS_OPTIONS: JwksCacheOptions = { cooldownMs: 30_000, cacheMaxAgeMs: 10 * 60_000, timeoutMs: 5_000, staleMaxAgeMs: 24 * 3_600_000 };

const MAX_JWKS_BYTES = 256 * 1024;
const MAX_SETS = 1_000;

type RemoteKeySet = ReturnType<typeof createRemoteJWKSet>;
export type KeySet = (...args: Parameters<RemoteKeySet>) => ReturnType<RemoteKeySet>;

/**
 * Fetches a JWKS through `outbound` with a size cap: the URL is tenant-supplied and must not
 * exhaust memory. Redirects are refused: the address guard checked only the URL that was saved.
 */
function boundedFetch(outbound: typeof fetch) {
  return async (url: string, init: RequestInit): Promise<Response> => {
    const res = await outbound(url, { ...init, redirect: 'error' });
    if (!res.body) return res;
    const reader = res.body.getReader();
    const chunks: Uint8Array[] = [];
    let size = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > MAX_JWKS_BYTES) {
        await reader.cancel();
        throw new Error(`JWKS response larger than ${MAX_JWKS_BYTES} bytes`);
      }
      chunks.push(value);
    }
    return new Response(Buffer.concat(chunks), { status: res.status, headers: res.headers });
  };
}

/** Whether a (buffered) answer's body is a JSON Web Key Set as jose takes one: an object whose `keys` are objects. */
async function holdsKeySet(res: Response): Promise<boolean> {
  const isObject = (v: unknown) => typeof v === 'object' && v !== null && !Array.isArray(v);
  try {
    const json: unknown = await res.clone().json();
    return isObject(json) && Array.isArray((json as { keys?: unknown }).keys) && (json as { keys: unknown[] }).keys.every(isObject);
  } catch {
    return false;
  }
}

/**
 * A fetch that, after a failure (an error, any answer but 200, or a 200 that is not a key set),
 * refuses to call the URL again until `cooldownMs` has passed. jose's own cooldown counts only
 * from a fetch that gave it keys, so without this every exchange naming an unreachable or failing
 * JWKS URL, or one that answers with a web page, would call it again: a tenant could make Keyhold
 * hammer a host, and time its answers, at the token endpoint's rate.
 */
function rememberingFailures(fetchKeys: ReturnType<typeof boundedFetch>, cooldownMs: number, now: () => number, fetched: { at: number | null }) {
  let failedAt: number | null = null;
  return async (url: string, init: RequestInit): Promise<Response> => {
    if (failedAt !== null && now() - failedAt < cooldownMs) throw new Error('JWKS fetch failed recently; not retried before the cooldown');
    try {
      const res = await fetchKeys(url, init);
      if (res.status === 200 && !(await holdsKeySet(res))) throw new Error('JWKS response is not a JSON Web Key Set');
      failedAt = res.status === 200 ? null : now();
      if (res.status === 200) fetched.at = now();
      return res;
    } catch (err) {
      failedAt = now();
      throw err;
    }
  };
}

/** Lookup failures that mean the keys are the wrong ones, not that they could not be refreshed. */
const isKeyMismatch = (err: unknown) => err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys;

/**
 * jose refreshes stale keys before each use and, when that fetch fails, throws rather than use
 * them: an outage at the IdP's JWKS endpoint would stop every exchange within `cacheMaxAgeMs`.
 * Here a failed refresh falls back to the keys of the last good fetch while it is at most
 * `staleMaxAgeMs` old. A kid those keys lack is still refused (the fallback finds no key either).
 */
function withStaleFallback(remote: RemoteKeySet, fetched: { at: number | null }, staleMaxAgeMs: number, now: () => number): KeySet {
  return async (header, token) => {
    try {
      return await remote(header, token);
    } catch (err) {
      const last = remote.jwks();
      if (isKeyMismatch(err) || !last || fetched.at === null || now() - fetched.at > staleMaxAgeMs) throw err;
      return createLocalJWKSet(last)(header, token);
    }
  };
}

/**
 * One remote key set per JWKS URL, kept across requests so keys are fetched once, not per token.
 * jose refetches when the cache is stale or when a token names a `kid` the set lacks (key
 * rotation at the IdP), at most once per cooldown; a failed fetch is not retried within the
 * cooldown either, and while refreshes fail the keys last fetched serve for up to `staleMaxAgeMs`. Keys are fetched through the connectors' outbound address guard by default: a
 * JWKS URL that is, or resolves to, a link-local or cloud metadata address is never called,
 * whatever it was saved as. At most `maxSets` sets are kept, the least recently used dropped
 * first, so many tenants' URLs cannot push every busy issuer's keys out at once.
 */
export function createJwksCache(options: JwksCacheOptions = DEFAULT_JWKS_OPTIONS, deps: { fetch?: typeof fetch; now?: () => number; maxSets?: number } = {}) {
  const fetchKeys = boundedFetch(deps.fetch ?? guardedFetch(pinnedFetch()));
  const now = deps.now ?? Date.now;
  const maxSets = deps.maxSets ?? MAX_SETS;
  const sets = new Map<string, KeySet>();
  return {
    get(jwksUrl: string): KeySet {
      let set = sets.get(jwksUrl);
      if (set) {
        sets.delete(jwksUrl);
      } else {
        if (sets.size >= maxSets) sets.delete(sets.keys().next().value!);
        const fetched = { at: null as number | null };
        set = withStaleFallback(createRemoteJWKSet(new URL(jwksUrl), {
          cooldownDuration: options.cooldownMs,
          cacheMaxAge: options.cacheMaxAgeMs,
          timeoutDuration: options.timeoutMs,
          [customFetch]: rememberingFailures(fetchKeys, options.cooldownMs, now, fetched),
        }), fetched, options.staleMaxAgeMs, now);
      }
      sets.set(jwksUrl, set);
      return set;
    },
  };
}

export type JwksCache = ReturnType<typeof createJwksCache>;
