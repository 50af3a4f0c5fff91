import type { Agent } from 'undici';
import { isLoopbackHost } from '../platform/addresses.ts';

/** The variables Node's proxy support reads the proxy from (NODE_USE_ENV_PROXY or --use-env-proxy turns it on). */
const PROXY_VARIABLES = ['HTTP_PROXY', 'http_proxy', 'HTTPS_PROXY', 'https_proxy'];

/**
 * A fetch that never hands a request for this machine to a proxy. With NODE_USE_ENV_PROXY (or
 * --use-env-proxy) and HTTP_PROXY set, Node's own fetch sends even http://127.0.0.1 through the
 * proxy: the token, shares and values cross the network in the clear (the one thing plain http to
 * loopback only was to prevent), to whatever listens on the proxy's loopback. A loopback address is
 * reached with a direct connection; any other goes through `fallback` (a remote https server behind
 * a proxy still works, its TLS tunnelled). With no proxy variable set there is nothing to go
 * around, and undici (a tenth of a second to load) is not loaded.
 */
export function loopbackDirect(fallback: typeof fetch, env: Record<string, string | undefined>): typeof fetch {
  if (!PROXY_VARIABLES.some((name) => env[name])) return fallback;
  let direct: Promise<{ agent: Agent; fetch: typeof import('undici').fetch }> | null = null;
  return (async (input: Parameters<typeof fetch>[0], init?: Parameters<typeof fetch>[1]) => {
    const url = typeof input === 'string' || input instanceof URL ? new URL(input) : null;
    if (url === null || !isLoopbackHost(url.hostname)) return fallback(input, init);
    // Undici's fetch (the library Node bundles) takes a dispatcher of its own; Node's takes none that is public.
    const { agent, fetch } = await (direct ??= import('undici').then((undici) => ({ agent: new undici.Agent(), fetch: undici.fetch })));
    return fetch(url, { ...(init as object), dispatcher: agent } as never);
  }) as unknown as typeof fetch;
}
