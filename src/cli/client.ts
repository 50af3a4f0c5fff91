import { UsageError } from './args.ts';

/** The error body every Keyhold endpoint answers with. */
export interface ApiErrorBody {
  code: string;
  message: string;
  requestId: string;
}

/** The server said no: a catalogued code (docs/errors.md) and its message. */
export class ApiError extends Error {
  readonly code: string;
  readonly status: number;
  readonly requestId: string;
  /** What to do about it, when the CLI knows better than the bare code. */
  hint: string | null = null;
  constructor(status: number, body: ApiErrorBody) {
    super(body.message);
    this.name = 'ApiError';
    this.code = body.code;
    this.status = status;
    this.requestId = body.requestId;
  }
}

/** No usable answer: the server is down, unreachable, or something else answered. */
export class UnreachableError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnreachableError';
  }
}

export type Query = Record<string, string | number | boolean | undefined>;
export type Outcome<T> = { ok: true; data: T } | { ok: false; error: ApiError };

export interface ApiClient {
  readonly addr: string;
  readonly hasToken: boolean;
  /** One request; an API error is a return value (some are expected, e.g. "does it exist yet?"). */
  send<T>(method: string, path: string, opts?: { body?: unknown; query?: Query }): Promise<Outcome<T>>;
  /** One request; an API error is thrown. */
  call<T>(method: string, path: string, opts?: { body?: unknown; query?: Query }): Promise<T>;
  /** A GET whose answer is not JSON (an export): the response, to stream from; an API error is thrown. */
  download(path: string, opts?: { query?: Query }): Promise<Response>;
}

/**
 * A route with each interpolated value percent-encoded, so no name can change the path.
 * @example route`/v1/secrets/${name}/values/${env}`
 */
export function route(strings: TemplateStringsArray, ...values: string[]): string {
  const encode = (v: string) => {
    // URL parsing resolves "." and ".." segments (even as %2E) before the request leaves.
    if (v === '' || /^\.+$/.test(v)) throw new UsageError(`"${v}" is not a valid name`);
    return encodeURIComponent(v);
  };
  return strings.reduce((acc, s, i) => acc + s + (i < values.length ? encode(values[i]!) : ''), '');
}

function describeCause(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}

/** A thin client over the HTTP API: bearer token, tenant header, JSON in and out. */
export function createApiClient(deps: { fetch: typeof fetch; addr: string; token: string | null; tenant: string | null }): ApiClient {
  const { addr, token, tenant } = deps;

  async function request(method: string, route: string, opts: { body?: unknown; query?: Query }, accept: string): Promise<Response> {
    const url = new URL(addr + route);
    for (const [k, v] of Object.entries(opts.query ?? {})) if (v !== undefined) url.searchParams.set(k, String(v));
    const headers: Record<string, string> = { accept };
    if (token) headers.authorization = `Bearer ${token}`;
    if (tenant) headers['x-keyhold-tenant'] = tenant;
    if (opts.body !== undefined) headers['content-type'] = 'application/json';
    let res: Response;
    try {
      // Never followed: a 307/308 would send the body (a value, a share) on to any origin, over plain http too.
      res = await deps.fetch(url, { method, headers, redirect: 'manual', ...(opts.body !== undefined ? { body: JSON.stringify(opts.body) } : {}) });
    } catch (err) {
      throw new UnreachableError(`cannot reach Keyhold at ${addr} (${describeCause(err)}); is the server running? Set --addr or KEYHOLD_ADDR`);
    }
    // The API never redirects; whatever did is not Keyhold or sits in front of it.
    if (res.status >= 300 && res.status < 400) {
      throw new UnreachableError(`unexpected answer from ${addr}: HTTP ${res.status}, a redirect (not followed); set --addr or KEYHOLD_ADDR to the server's own address`);
    }
    return res;
  }

  async function send<T>(method: string, route: string, opts: { body?: unknown; query?: Query } = {}): Promise<Outcome<T>> {
    return outcomeOf<T>(await request(method, route, opts, 'application/json'));
  }

  async function outcomeOf<T>(res: Response): Promise<Outcome<T>> {
    const text = await res.text();
    if (res.status === 204) return { ok: true, data: null as T };
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new UnreachableError(`unexpected answer from ${addr}: HTTP ${res.status}, not JSON; is --addr a Keyhold server?`);
    }
    if (res.ok) return { ok: true, data: parsed as T };
    const body = errorBodyOf(parsed);
    if (!body) {
      throw new UnreachableError(`unexpected answer from ${addr}: HTTP ${res.status} without a Keyhold error body`);
    }
    return { ok: false, error: new ApiError(res.status, body) };
  }

  return {
    addr,
    hasToken: token !== null,
    send,
    async call<T>(method: string, route: string, opts?: { body?: unknown; query?: Query }): Promise<T> {
      const outcome = await send<T>(method, route, opts);
      if (!outcome.ok) throw outcome.error;
      return outcome.data;
    },
    async download(route: string, opts: { query?: Query } = {}): Promise<Response> {
      const res = await request('GET', route, opts, '*/*');
      if (res.ok) return res;
      const outcome = await outcomeOf<never>(res);
      if (!outcome.ok) throw outcome.error;
      throw new UnreachableError(`unexpected answer from ${addr}: HTTP ${res.status}`);
    },
  };
}

/**
 * The Keyhold error in an error response: `{ error: { code, message, requestId } }` everywhere,
 * and from the OAuth token endpoint RFC 6749's `{ error, error_description, code, request_id }`.
 */
function errorBodyOf(parsed: unknown): ApiErrorBody | null {
  const p = (parsed ?? {}) as { error?: unknown; error_description?: unknown; code?: unknown; request_id?: unknown };
  if (typeof p.error === 'string') {
    return typeof p.code === 'string' ? { code: p.code, message: String(p.error_description ?? p.error), requestId: String(p.request_id ?? '') } : null;
  }
  const e = p.error as Partial<ApiErrorBody> | undefined;
  return e && typeof e.code === 'string' ? { code: e.code, message: String(e.message ?? ''), requestId: String(e.requestId ?? '') } : null;
}
