import { spawn, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { LogLevel } from '../../src/config/config.ts';

const SERVER_ENTRY = fileURLToPath(new URL('../../src/main/server.ts', import.meta.url));

export interface StartServerOptions {
  /** KEYHOLD_DATA_DIR: dev key, dev root token, and the SQLite file unless databaseUrl says otherwise. */
  dataDir: string;
  /** KEYHOLD_DATABASE_URL; omitted: SQLite in the data directory. */
  databaseUrl?: string;
  logLevel?: LogLevel;
  /** Further KEYHOLD_* settings for the child. */
  env?: Record<string, string>;
  startTimeoutMs?: number;
  /** false: a production start (no --dev): it comes up uninitialised or sealed, and has no dev root token (`token` is ''). */
  dev?: boolean;
}

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface HttpResult {
  status: number;
  headers: Headers;
  /** The raw body text. */
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON (any: tests reach into it and assert on what they find). */
  json: any;
}

export interface RequestOptions {
  /** Sent as JSON. */
  body?: unknown;
  /** Sent as is (malformed JSON, oversized bodies); content type defaults to application/json. */
  rawBody?: string | Uint8Array;
  headers?: Record<string, string>;
  /** The bearer token; defaults to the dev root token, null sends none. */
  token?: string | null;
}

export interface ServerProcess {
  /** e.g. http://127.0.0.1:41234 */
  readonly address: string;
  /** The dev root token from the data directory ('' when not started in dev mode). */
  readonly token: string;
  readonly pid: number;
  /** Everything the child printed so far: stdout, then stderr. */
  logs(): string;
  stdout(): string;
  stderr(): string;
  request(method: string, path: string, opts?: RequestOptions): Promise<HttpResult>;
  /** Sends a signal (default SIGKILL) and resolves when the process is gone. */
  kill(signal?: NodeJS.Signals): Promise<Exit>;
  /** Graceful stop: SIGTERM, then SIGKILL if it has not exited within the grace period. */
  stop(graceMs?: number): Promise<Exit>;
  readonly exited: Promise<Exit>;
}

// A safety net, not the cleanup path: a test that dies before its after() hook must not orphan a server.
const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** The address from the server's "keyhold listening" log line, or null for any other line. */
function listeningAddress(line: string): string | null {
  try {
    const entry = JSON.parse(line) as { msg?: unknown; address?: unknown };
    return entry.msg === 'keyhold listening' && typeof entry.address === 'string' ? entry.address : null;
  } catch {
    return null;
  }
}

/** The child's environment: ours minus every KEYHOLD_* (the server rejects unknown ones) and the test runner's markers. */
function childEnv(opts: StartServerOptions): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (key.startsWith('KEYHOLD_') || key === 'NODE_TEST_CONTEXT' || key === 'NODE_OPTIONS') continue;
    env[key] = value;
  }
  return {
    ...env,
    KEYHOLD_DATA_DIR: opts.dataDir,
    KEYHOLD_PORT: '0',
    KEYHOLD_LOG_LEVEL: opts.logLevel ?? 'info',
    ...(opts.databaseUrl ? { KEYHOLD_DATABASE_URL: opts.databaseUrl } : {}),
    ...opts.env,
  };
}

/**
 * Starts `src/main/server.ts --dev` as a child process on a free loopback port and waits for its
 * "keyhold listening" line. Dev mode initialises a fresh data directory and auto-unseals an existing one,
 * so a restart on the same data directory and database comes back ready.
 * @example
 * const server = await startServer({ dataDir, databaseUrl });
 * const res = await server.request('PUT', '/v1/secrets/A/values/development', { body: { value: 'x' } });
 * await server.kill('SIGKILL');
 */
export async function startServer(opts: StartServerOptions): Promise<ServerProcess> {
  const dev = opts.dev ?? true;
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', SERVER_ENTRY, ...(dev ? ['--dev'] : [])], {
    env: childEnv(opts),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  const text = (chunks: Buffer[]) => Buffer.concat(chunks).toString('utf8');
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  const exited = new Promise<Exit>((resolve) => {
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    });
  });
  // 'exit' can come before the pipes are drained; logs() is complete once 'close' has fired.
  const closed = new Promise<void>((resolve) => child.once('close', () => resolve()));

  let address: string;
  let token: string;
  try {
    address = await waitForAddress();
    token = dev ? (await readFile(join(opts.dataDir, 'dev-root-token'), 'utf8')).trim() : '';
  } catch (error) {
    child.kill('SIGKILL');
    await exited;
    throw error;
  }

  /**
   * The "keyhold listening" log line carries the address; below level info it is not printed, so the
   * dev banner on stderr (printed once listening, at any level) is the fallback.
   */
  function waitForAddress(): Promise<string> {
    const timeoutMs = opts.startTimeoutMs ?? 20_000;
    return new Promise<string>((resolve, reject) => {
      let found = false;
      const timer = setTimeout(() => reject(new Error(`keyhold did not start within ${timeoutMs} ms\n${text(err)}`)), timeoutMs);
      const watch = (stream: NodeJS.ReadableStream, chunks: Buffer[], addressIn: (line: string) => string | null) => {
        let pending = '';
        stream.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          if (found) return;
          pending += chunk.toString('utf8');
          for (let nl = pending.indexOf('\n'); nl >= 0 && !found; nl = pending.indexOf('\n')) {
            const address = addressIn(pending.slice(0, nl));
            pending = pending.slice(nl + 1);
            if (address) {
              found = true;
              clearTimeout(timer);
              resolve(address);
            }
          }
        });
      };
      watch(child.stdout!, out, listeningAddress);
      watch(child.stderr!, err, (line) => /export KEYHOLD_ADDR=(\S+)/.exec(line)?.[1] ?? null);
      void exited.then((exit) => {
        clearTimeout(timer);
        reject(new Error(`keyhold exited before listening (${exit.signal ?? exit.code})\n${text(err)}`));
      });
    });
  }

  async function kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<Exit> {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const exit = await exited;
    await closed;
    return exit;
  }

  return {
    address,
    token,
    pid: child.pid!,
    exited,
    logs: () => text(out) + text(err),
    stdout: () => text(out),
    stderr: () => text(err),
    kill,
    async stop(graceMs = 10_000) {
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        return await kill('SIGTERM');
      } finally {
        clearTimeout(timer);
      }
    },
    async request(method, path, ropts = {}) {
      const headers: Record<string, string> = {};
      const bearer = ropts.token === undefined ? token : ropts.token;
      if (bearer !== null) headers.authorization = `Bearer ${bearer}`;
      let body: string | Uint8Array | undefined;
      if (ropts.rawBody !== undefined) body = ropts.rawBody;
      else if (ropts.body !== undefined) body = JSON.stringify(ropts.body);
      if (body !== undefined) headers['content-type'] = 'application/json';
      Object.assign(headers, ropts.headers);
      const res = await fetch(address + path, { method, headers, ...(body !== undefined ? { body } : {}) });
      const raw = await res.text();
      let json: unknown;
      try {
        json = JSON.parse(raw);
      } catch {
        json = undefined;
      }
      return { status: res.status, headers: res.headers, text: raw, json };
    },
  };
}
