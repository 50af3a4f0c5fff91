import { fail } from '../../errors/index.ts';
import type { Destination } from './types.ts';

/**
 * The destination allowlist: a credential goes only to the scheme, exact host, port and path
 * prefix its connector names. Pure functions, so every trick is a table-driven test.
 */

/** Parses a configured base URL into a destination; refuses what could make matching ambiguous. */
export function parseDestination(raw: unknown, setting: string): Destination {
  if (typeof raw !== 'string' || raw.length === 0 || raw.length > 2048) fail('VALIDATION_FAILED', `settings.${setting} must be an http(s) URL`);
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    fail('VALIDATION_FAILED', `settings.${setting} is not a valid URL`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') fail('VALIDATION_FAILED', `settings.${setting} must use http or https`);
  if (url.username || url.password) fail('VALIDATION_FAILED', `settings.${setting} must not carry user:password@ (bind credentials to slots)`);
  if (url.search || url.hash) fail('VALIDATION_FAILED', `settings.${setting} must not have a query or fragment`);
  if (/%2e|%2f|%5c/i.test(url.pathname)) fail('VALIDATION_FAILED', `settings.${setting} must not hold encoded dots or slashes`);
  const pathPrefix = url.pathname.replace(/\/+$/, '');
  return { protocol: url.protocol, hostname: url.hostname, port: url.port, pathPrefix };
}

export function describeDestination(d: Destination): string {
  return `${d.protocol}//${d.hostname}${d.port ? `:${d.port}` : ''}${d.pathPrefix}/`;
}

/** Whether a parsed URL is inside a destination (same scheme, host, port; path under the prefix). */
export function withinDestination(url: URL, d: Destination): boolean {
  if (url.protocol !== d.protocol || url.hostname !== d.hostname || url.port !== d.port) return false;
  if (url.username || url.password) return false;
  return d.pathPrefix === '' || url.pathname === d.pathPrefix || url.pathname.startsWith(d.pathPrefix + '/');
}

/** Why a requested path is refused, or null. The path is relative to the connector's base URL. */
export function pathProblem(path: string): string | null {
  if (path.length === 0 || path.length > 2048) return 'the path must be 1 to 2048 characters';
  if (!path.startsWith('/')) return 'the path must start with / (it is relative to the connector base URL)';
  if (path.startsWith('//')) return 'the path must not start with // (that would name another host)';
  if (/[\\\u0000-\u001f\u007f\s]/.test(path)) return 'the path must not hold backslashes, spaces or control characters';
  if (/[?#]/.test(path)) return 'the path must not hold ? or # (pass query parameters in "query")';
  if (/%2e|%2f|%5c|%00/i.test(path)) return 'the path must not hold encoded dots, slashes or NUL';
  if (path.split('/').some((seg) => seg === '..' || seg === '.')) return 'the path must not hold . or .. segments';
  if (/^\/[^/]*@/.test(path)) return 'the path must not hold userinfo (@)';
  return null;
}

/**
 * The URL a request goes to: the first destination's base plus the path and query, checked again
 * after parsing (what the socket will actually connect to), so no encoding trick moves it.
 */
export function resolveTarget(destinations: readonly Destination[], path: string, query: Record<string, string> | undefined): { url: URL } | { refused: string } {
  const base = destinations[0];
  if (!base) return { refused: 'this connector type does not send HTTP requests' };
  const problem = pathProblem(path);
  if (problem) return { refused: problem };
  const url = new URL(`${base.protocol}//${base.hostname}${base.port ? `:${base.port}` : ''}${base.pathPrefix}${path}`);
  for (const [k, v] of Object.entries(query ?? {})) url.searchParams.append(k, v);
  if (!destinations.some((d) => withinDestination(url, d))) return { refused: `the request would leave ${describeDestination(base)}` };
  return { url };
}
