import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import { createCli } from '../../src/cli/run.ts';
import { entries } from '../../src/cli/commands/index.ts';

/** One request the CLI sent, as the app received it. */
export interface CliExchange {
  method: string;
  /** Path without the query string. */
  path: string;
  /** Path and query string. */
  url: string;
  /** The JSON text sent, if any. */
  body: string | undefined;
}

/**
 * A fetch that answers from the app in process (fastify's inject): the request's method, URL,
 * headers and body go in; status, headers and the raw body come back (none for 204). `onAnswered`
 * sees each request once its answer has arrived.
 */
export function injectFetch(app: FastifyInstance, onAnswered: (sent: CliExchange) => void = () => {}): typeof fetch {
  return (async (input: URL, init: RequestInit) => {
    const url = input.pathname + input.search;
    const body = init.body === undefined || init.body === null ? undefined : (init.body as string);
    const res = await app.inject({
      method: (init.method ?? 'GET') as 'GET', url, headers: init.headers as Record<string, string>,
      ...(body !== undefined ? { payload: body } : {}),
    });
    onAnswered({ method: init.method ?? 'GET', path: input.pathname, url, body });
    const headers = Object.fromEntries(Object.entries(res.headers).map(([k, v]) => [k, String(v)]));
    return new Response(res.statusCode === 204 ? null : res.rawPayload, { status: res.statusCode, headers });
  }) as typeof fetch;
}

/**
 * Runs `keyhold <argv>` in process against `app`, with its output captured. `token` is
 * KEYHOLD_TOKEN (null: none); `stdin` what the command reads; `env` further settings.
 */
export async function runCli(app: FastifyInstance, argv: string[], opts: {
  token: string | null; stdin?: string | string[]; env?: Record<string, string>; signal?: AbortSignal; onAnswered?: (sent: CliExchange) => void;
}): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const stdin = opts.stdin === undefined ? [] : typeof opts.stdin === 'string' ? [Buffer.from(opts.stdin)] : opts.stdin;
  const cli = createCli({
    entries,
    fetch: injectFetch(app, opts.onAnswered),
    stdin: Readable.from(stdin),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { ...(opts.token !== null ? { KEYHOLD_TOKEN: opts.token } : {}), ...opts.env },
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  return { code: await cli.run(argv), stdout, stderr };
}
