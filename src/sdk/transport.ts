import { KeyholdError } from './errors.ts';

/** The package version, sent as the user agent so audit context shows which client read a value. */
export const SDK_VERSION = '0.1.0';

export interface Transport {
  /**
   * One JSON request; the server's error body becomes a KeyholdError with its code, and a success
   * body that `accept` refuses (a proxy, a broken server) becomes BAD_RESPONSE.
   */
  json<T>(method: 'GET' | 'POST', path: string, accept: (parsed: unknown) => parsed is T, body?: unknown): Promise<T>;
}

/** JSON over fetch with the bearer token, the tenant header and a per-request timeout. */
export function createTransport(opts: { addr: string; token: string; tenant: string | null; timeoutMs: number; fetch: typeof fetch }): Transport {
  const { addr, token, tenant, timeoutMs } = opts;
  const headers: Record<string, string> = {
    accept: 'application/json',
    authorization: `Bearer ${token}`,
    'user-agent': `keyhold-sdk/${SDK_VERSION}`,
    ...(tenant ? { 'x-keyhold-tenant': tenant } : {}),
  };

  return {
    async json<T>(method: 'GET' | 'POST', path: string, accept: (parsed: unknown) => parsed is T, body?: unknown): Promise<T> {
      let res: Response;
      try {
        res = await opts.fetch(addr + path, {
          method,
          headers: body === undefined ? headers : { ...headers, 'content-type': 'application/json' },
          ...(body === undefined ? {} : { body: JSON.stringify(body) }),
          signal: AbortSignal.timeout(timeoutMs),
        });
      } catch (err) {
        const name = (err as { name?: string }).name;
        if (name === 'TimeoutError' || name === 'AbortError') throw new KeyholdError('TIMEOUT', `Keyhold at ${addr} did not answer within ${timeoutMs} ms`);
        // Only a network error code: what else fetch throws may quote the request's headers, the token among them.
        const code = (err as { cause?: { code?: unknown } }).cause?.code;
        throw new KeyholdError('UNREACHABLE', `cannot reach Keyhold at ${addr}${typeof code === 'string' && /^[A-Z0-9_]+$/.test(code) ? ` (${code})` : ''}`);
      }
      const text = await res.text();
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch {
        throw new KeyholdError('BAD_RESPONSE', `unexpected answer from ${addr}: HTTP ${res.status}, not JSON`, { status: res.status });
      }
      if (res.ok) {
        if (accept(parsed)) return parsed;
        // The body is not quoted: it may hold a value.
        throw new KeyholdError('BAD_RESPONSE', `unexpected answer from ${addr}: HTTP ${res.status}, not the shape a Keyhold server answers`, { status: res.status });
      }
      const error = (parsed as { error?: { code?: unknown; message?: unknown; requestId?: unknown } } | null)?.error;
      if (!error || typeof error.code !== 'string') {
        throw new KeyholdError('BAD_RESPONSE', `unexpected answer from ${addr}: HTTP ${res.status} without a Keyhold error body`, { status: res.status });
      }
      throw new KeyholdError(error.code, String(error.message ?? ''), {
        status: res.status, requestId: typeof error.requestId === 'string' ? error.requestId : null,
      });
    },
  };
}
