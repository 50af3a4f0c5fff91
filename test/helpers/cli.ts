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

interface CliRunOptions {
  token: string | null; stdin?: string | string[]; env?: Record<string, string>; signal?: AbortSignal;
}

/** Runs the CLI in process over `fetch`, with its output captured. */
async function runCliOver(fetch: typeof globalThis.fetch, argv: string[], opts: CliRunOptions): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const stdin = opts.stdin === undefined ? [] : typeof opts.stdin === 'string' ? [Buffer.from(opts.stdin)] : opts.stdin;
  const cli = createCli({
    entries,
    fetch,
    stdin: Readable.from(stdin),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: { ...(opts.token !== null ? { KEYHOLD_TOKEN: opts.token } : {}), ...opts.env },
    ...(opts.signal ? { signal: opts.signal } : {}),
  });
  return { code: await cli.run(argv), stdout, stderr };
}

/**
 * Runs `keyhold <argv>` in process against `app`, with its output captured. `token` is
 * KEYHOLD_TOKEN (null: none); `stdin` what the command reads; `env` further settings.
 */
export function runCli(app: FastifyInstance, argv: string[], opts: CliRunOptions & { onAnswered?: (sent: CliExchange) => void }): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCliOver(injectFetch(app, opts.onAnswered), argv, opts);
}

/** Runs `keyhold <argv>` in process against a server process listening at `address`, over real HTTP; as runCli otherwise. */
export function runCliAt(address: string, argv: string[], opts: CliRunOptions): Promise<{ code: number; stdout: string; stderr: string }> {
  return runCliOver(globalThis.fetch, argv, { ...opts, env: { KEYHOLD_ADDR: address, ...opts.env } });
}
