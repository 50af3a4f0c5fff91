import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';
import type { Cleanup } from './cleanup.ts';

/** The repository root, and the Node 24 binary the project pins (the `node` on PATH may be older). */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const NODE_BIN = fileURLToPath(new URL('../../node_modules/.bin/node', import.meta.url));

export interface ServerChild {
  /** `http://127.0.0.1:<port>` as the server logged it. */
  address: string;
  pid: number;
  /** SIGTERM, then SIGKILL if it has not exited within 5 s. Idempotent. */
  stop(): Promise<void>;
}

const STDERR_TAIL_BYTES = 4096;

/**
 * Starts `node <script> <args>` and waits for the JSON log line whose `msg` is `readyMsg` and
 * that carries an `address`. The child is registered with the cleanup before anything can fail.
 */
export async function spawnServer(opts: {
  label: string;
  script: string;
  args?: string[];
  /** Extra flags for node itself (e.g. `--cpu-prof` when profiling). */
  nodeArgs?: string[];
  env: NodeJS.ProcessEnv;
  readyMsg: string;
  cleanup: Cleanup;
  timeoutMs?: number;
  /** Another checkout to run `script` from (A/B comparisons); this one by default. Always this checkout's Node. */
  root?: string;
}): Promise<ServerChild> {
  if (!existsSync(NODE_BIN)) throw new Error(`${NODE_BIN} is missing: run npm install`);
  const child = spawn(NODE_BIN, ['--disable-warning=ExperimentalWarning', ...(opts.nodeArgs ?? []), opts.script, ...(opts.args ?? [])], {
    cwd: opts.root ?? REPO_ROOT,
    env: opts.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = once(() => stopChild(child, exited));
  opts.cleanup.add(`stop ${opts.label}`, stop);

  let stderrTail = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_BYTES);
  });

  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => fail(`did not log "${opts.readyMsg}" within ${opts.timeoutMs ?? 20_000} ms`), opts.timeoutMs ?? 20_000);
    const lines = createInterface({ input: child.stdout! });
    function fail(why: string): void {
      clearTimeout(timer);
      reject(new Error(`${opts.label} ${why}\n--- stderr (tail) ---\n${stderrTail}`));
    }
    // The listener stays attached after start-up so the pipe is always drained.
    lines.on('line', (line) => {
      let entry: { msg?: unknown; address?: unknown };
      try {
        entry = JSON.parse(line);
      } catch {
        return;
      }
      if (entry.msg === opts.readyMsg && typeof entry.address === 'string') {
        clearTimeout(timer);
        resolve(entry.address);
      }
    });
    child.once('error', (err) => fail(`could not start: ${err.message}`));
    child.once('exit', (code, signal) => fail(`exited during start-up (code ${code}, signal ${signal})`));
  });
  return { address, pid: child.pid!, stop };
}

async function stopChild(child: ChildProcess, exited: Promise<void>): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5_000);
  await exited;
  clearTimeout(timer);
}

function once(fn: () => Promise<void>): () => Promise<void> {
  let result: Promise<void> | null = null;
  return () => (result ??= fn());
}
