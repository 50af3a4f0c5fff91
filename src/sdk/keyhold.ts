import { serverOrigin } from './address.ts';
import { KeyholdError } from './errors.ts';
import { createTransport, type Transport } from './transport.ts';

export interface KeyholdOptions {
  /** The server, e.g. `https://keyhold.internal:8200`. Default: KEYHOLD_ADDR. */
  addr?: string;
  /** A machine identity's access token (`kh_...`). Default: KEYHOLD_TOKEN. */
  token?: string;
  /** Tenant name, for tokens that are not bound to one (root). Default: KEYHOLD_TENANT. */
  tenant?: string;
  /** The environment `get` reads from unless told otherwise. Default: KEYHOLD_ENVIRONMENT. */
  environment?: string;
  /** How long a cached value is served before its version is checked again. Default 5000 ms. */
  refreshMs?: number;
  /** Per-request timeout. Default 10000 ms. */
  timeoutMs?: number;
  /** The fetch to use (a proxy-aware one, or a test double). Default: the global fetch. */
  fetch?: typeof fetch;
  /** Time source for the cache; tests pass a fake. Default: Date.now. */
  clock?: { now(): number };
  /** Where the defaults come from. Default: process.env. */
  env?: Record<string, string | undefined>;
}

export interface GetOptions {
  /** Read from this environment instead of the client's default. */
  environment?: string;
}

/** A client for one identity on one server. */
export interface Keyhold {
  /** The current value of a secret, from the cache when its version was confirmed within refreshMs. */
  get(name: string, opts?: GetOptions): Promise<string>;
  /** Stops the refresh timer and forgets every cached value; later gets throw CLOSED. */
  close(): void;
}

export const DEFAULT_REFRESH_MS = 5_000;
const DEFAULT_TIMEOUT_MS = 10_000;
/** The server answers at most this many names per version check. */
const CHECK_BATCH = 100;
// The naming rules of the server, checked here so no name can change the request path.
const SECRET_NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/;
const ENVIRONMENT = /^[a-z][a-z0-9-]{0,62}$/;
/** Visible ASCII: anything else cannot go in a header, and fetch's refusal would quote the whole header, token and all. */
const TOKEN = /^[\x21-\x7e]+$/;

const isVersion = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 1;
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The body of `GET /v1/secrets/:name/values/:environment`. */
function isValueAnswer(v: unknown): v is { value: string; version: number } {
  return isObject(v) && typeof v.value === 'string' && isVersion(v.version);
}

/** The body of `POST /v1/secrets/versions`: a version or null per name. */
function isVersionsAnswer(v: unknown): v is { versions: Record<string, number | null> } {
  return isObject(v) && isObject(v.versions) && Object.values(v.versions).every((version) => version === null || isVersion(version));
}

interface Entry {
  value: string;
  version: number;
  /** When the server last said this version was current (the time the request was sent). */
  confirmedAt: number;
}

interface EnvCache {
  entries: Map<string, Entry>;
  /** The version check in flight, shared by every get (and the timer) that needs one. */
  check: Promise<void> | null;
}

function setting(opts: KeyholdOptions, env: Record<string, string | undefined>, key: 'addr' | 'token' | 'tenant' | 'environment'): string | null {
  const value = opts[key] ?? env[`KEYHOLD_${key.toUpperCase()}`];
  return value === undefined || value === '' ? null : value;
}

/** The longest delay a Node timer holds; a longer one fires after 1 ms (every request would time out, the refresh timer spin). */
const MAX_TIMER_MS = 2 ** 31 - 1;

function positive(value: number | undefined, fallback: number, what: string): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0 || value > MAX_TIMER_MS) {
    throw new KeyholdError('NOT_CONFIGURED', `${what} must be a positive number of milliseconds, at most ${MAX_TIMER_MS}`);
  }
  return value;
}

/**
 * Creates a client. Values are cached in memory per environment; a cached value is served only
 * while its version was confirmed current within `refreshMs`, so a rotation is seen by the first
 * get after refreshMs + one round trip. One version check covers every cached name of an
 * environment; only the names whose version moved are fetched again. The refresh timer never
 * keeps the process alive.
 * @example
 * const keyhold = createKeyhold({ environment: 'production' });
 * const apiKey = await keyhold.get('PAYMENT_API_KEY');
 */
export function createKeyhold(opts: KeyholdOptions = {}): Keyhold {
  const env = opts.env ?? process.env;
  const addr = setting(opts, env, 'addr');
  const token = setting(opts, env, 'token');
  if (!addr) throw new KeyholdError('NOT_CONFIGURED', 'no server address: pass addr or set KEYHOLD_ADDR');
  if (!token) throw new KeyholdError('NOT_CONFIGURED', 'no token: pass token or set KEYHOLD_TOKEN');
  // Neither is echoed: a token read from a file keeps its trailing newline, and the tenant sits next to it in the setup.
  if (!TOKEN.test(token)) throw new KeyholdError('NOT_CONFIGURED', 'the token has a space, line break or non-ASCII character (a trailing newline from a file?)');
  const tenant = setting(opts, env, 'tenant');
  if (tenant !== null && !ENVIRONMENT.test(tenant)) throw new KeyholdError('NOT_CONFIGURED', 'the tenant name must be lower-case letters, digits and -');
  const origin = serverOrigin(addr);
  const defaultEnvironment = setting(opts, env, 'environment');
  const refreshMs = positive(opts.refreshMs, DEFAULT_REFRESH_MS, 'refreshMs');
  const clock = opts.clock ?? { now: () => Date.now() };
  const transport: Transport = createTransport({
    addr: origin, token, tenant,
    timeoutMs: positive(opts.timeoutMs, DEFAULT_TIMEOUT_MS, 'timeoutMs'),
    // Bound now: a script that later replaces globalThis.fetch must not see the token.
    fetch: opts.fetch ?? globalThis.fetch.bind(globalThis),
  });

  const caches = new Map<string, EnvCache>();
  const inflight = new Map<string, Promise<Entry>>();
  let timer: ReturnType<typeof setTimeout> | null = null;
  let closed = false;

  const fresh = (entry: Entry | undefined): entry is Entry => entry !== undefined && clock.now() - entry.confirmedAt < refreshMs;

  function cacheOf(environment: string): EnvCache {
    let cache = caches.get(environment);
    if (!cache) caches.set(environment, (cache = { entries: new Map(), check: null }));
    return cache;
  }

  /** A dead token ends every cached answer at once, not one environment at a time. */
  function forgetOn(err: unknown, environment: string): never {
    const code = (err as KeyholdError).code;
    if (code === 'UNAUTHENTICATED' || code === 'TENANT_NOT_FOUND') caches.clear();
    if (code === 'ENVIRONMENT_NOT_FOUND') caches.delete(environment);
    throw err;
  }

  function fetchValue(environment: string, name: string): Promise<Entry> {
    const key = `${environment}\u0000${name}`;
    let pending = inflight.get(key);
    if (pending) return pending;
    pending = (async () => {
      const sent = clock.now();
      const path = `/v1/secrets/${encodeURIComponent(name)}/values/${encodeURIComponent(environment)}`;
      const read = await transport.json('GET', path, isValueAnswer).catch((err) => forgetOn(err, environment));
      const entry: Entry = { value: read.value, version: read.version, confirmedAt: sent };
      if (!closed) {
        cacheOf(environment).entries.set(name, entry);
        schedule();
      }
      return entry;
    })().finally(() => inflight.delete(key));
    inflight.set(key, pending);
    return pending;
  }

  /** One version check for every cached name of an environment; refetches only the names that moved. */
  function check(environment: string): Promise<void> {
    const cache = cacheOf(environment);
    cache.check ??= (async () => {
      const sent = clock.now();
      const names = [...cache.entries.keys()];
      const batches: string[][] = [];
      for (let i = 0; i < names.length; i += CHECK_BATCH) batches.push(names.slice(i, i + CHECK_BATCH));
      const answers = await Promise.all(batches.map((batch) =>
        transport.json('POST', '/v1/secrets/versions', isVersionsAnswer, { environment, names: batch })))
        .catch((err) => forgetOn(err, environment));
      const versions = new Map<string, number | null>();
      for (const answer of answers) for (const [name, version] of Object.entries(answer.versions)) versions.set(name, version);
      const moved: string[] = [];
      for (const name of names) {
        const entry = cache.entries.get(name);
        // An entry fetched after this check was sent is newer than its answer.
        if (!entry || entry.confirmedAt > sent) continue;
        const version = versions.get(name) ?? null;
        if (version === entry.version) {
          entry.confirmedAt = sent;
          continue;
        }
        // Moved, or no longer readable (deleted, grant revoked): never served again from here.
        cache.entries.delete(name);
        if (version !== null) moved.push(name);
      }
      // A failed refetch leaves the name uncached; the next get asks again and reports the error.
      await Promise.allSettled(moved.map((name) => fetchValue(environment, name)));
    })().finally(() => {
      cache.check = null;
    });
    return cache.check;
  }

  /** Keeps confirmed entries fresh in the background, so gets rarely wait for a check. */
  function schedule(): void {
    if (timer !== null || closed) return;
    let nextDue = Infinity;
    for (const cache of caches.values()) for (const entry of cache.entries.values()) nextDue = Math.min(nextDue, entry.confirmedAt + refreshMs);
    if (nextDue === Infinity) return;
    const wait = nextDue - clock.now();
    timer = setTimeout(tick, wait > 0 ? wait : refreshMs);
    timer.unref?.();
  }

  function tick(): void {
    timer = null;
    const due: Array<Promise<void>> = [];
    for (const [environment, cache] of caches) {
      if ([...cache.entries.values()].some((entry) => !fresh(entry))) due.push(check(environment).catch(() => undefined));
    }
    void Promise.all(due).then(schedule);
  }

  return {
    async get(name: string, getOpts: GetOptions = {}): Promise<string> {
      if (closed) throw new KeyholdError('CLOSED', 'this Keyhold client was closed');
      if (typeof name !== 'string' || !SECRET_NAME.test(name)) throw new KeyholdError('INVALID_NAME', 'secret names start with a letter or underscore and use letters, digits, _ . -');
      const environment = getOpts.environment ?? defaultEnvironment;
      if (!environment) throw new KeyholdError('NOT_CONFIGURED', 'no environment: pass { environment } or set KEYHOLD_ENVIRONMENT');
      if (!ENVIRONMENT.test(environment)) throw new KeyholdError('INVALID_NAME', 'environment names are lower-case letters, digits and -');
      const cache = cacheOf(environment);
      const cached = cache.entries.get(name);
      if (fresh(cached)) return cached.value;
      if (cached) {
        await check(environment);
        const checked = cache.entries.get(name);
        if (fresh(checked)) return checked.value;
      }
      return (await fetchValue(environment, name)).value;
    },

    close(): void {
      closed = true;
      if (timer !== null) clearTimeout(timer);
      timer = null;
      caches.clear();
    },
  };
}
