/**
 * Runs inside the script's child process (never imported by the server): reads the input from
 * stdin, imports the user's module, calls its default export with (input, { secrets }), and writes
 * one JSON message to fd 3, the result channel, which stdout and stderr never mix with.
 * It imports the SDK and nothing of the server, so the child holds no server code or state.
 */
import { readFileSync, writeSync } from 'node:fs';
import { registerHooks, syncBuiltinESMExports } from 'node:module';
import os from 'node:os';
import { pathToFileURL } from 'node:url';
import { secrets } from '../../sdk/index.ts';

const RESULT_FD = 3;
const SDK_URL = new URL('../../sdk/index.ts', import.meta.url).href;

// `import { secrets } from 'keyhold/sdk'` works in a script although it lives outside the package.
registerHooks({
  resolve(specifier, context, nextResolve) {
    if (specifier === 'keyhold/sdk') return { url: SDK_URL, shortCircuit: true };
    return nextResolve(specifier, context);
  },
});

/**
 * Node's permission model has no say over signals or priorities, and the child runs as the server's
 * user: a script could stop or kill the server (process.ppid) and every other run, or renice them.
 * The only ways in are replaced before the script loads, and cannot be put back (not configurable;
 * process.binding, which would reach the raw ones, is denied by the permission model).
 */
function denyProcessControl(): void {
  const denied = (what: string) => () => {
    throw Object.assign(new Error(`${what} is not available to scripts`), { code: 'ERR_ACCESS_DENIED' });
  };
  for (const name of ['kill', '_kill'] as const) Object.defineProperty(process, name, { value: denied(`process.${name}`), writable: false, configurable: false });
  Object.defineProperty(os, 'setPriority', { value: denied('os.setPriority'), writable: false, configurable: false });
  syncBuiltinESMExports(); // `import { kill } from 'node:process'` and `import { setPriority } from 'node:os'` too
}

denyProcessControl();

type Message = { ok: true; output: unknown } | { ok: false; error: string };

/** Why `value` is not JSON (with its path), or null when it is: plain objects, arrays, strings, finite numbers, booleans, null. */
function notJson(value: unknown, path: string, seen: Set<object>): string | null {
  if (value === null || typeof value === 'string' || typeof value === 'boolean') return null;
  if (typeof value === 'number') return Number.isFinite(value) ? null : `${path} is ${value}, which JSON cannot carry`;
  if (typeof value !== 'object') return `${path} is ${typeof value === 'undefined' ? 'undefined' : `a ${typeof value}`}`;
  if (seen.has(value)) return `${path} refers back to itself (a cycle)`;
  if (Array.isArray(value)) {
    seen.add(value);
    for (let i = 0; i < value.length; i++) {
      const why = notJson(value[i], `${path}[${i}]`, seen);
      if (why) return why;
    }
    seen.delete(value);
    return null;
  }
  const proto = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    const kind = (value as { constructor?: { name?: string } }).constructor?.name ?? 'object';
    return `${path} is a ${kind}${kind === 'Date' ? ' (return date.toISOString())' : ''}, not a plain object`;
  }
  seen.add(value);
  for (const [key, inner] of Object.entries(value)) {
    const why = notJson(inner, `${path}.${key}`, seen);
    if (why) return why;
  }
  seen.delete(value);
  return null;
}

function send(message: Message): void {
  const bytes = Buffer.from(JSON.stringify(message), 'utf8');
  for (let offset = 0; offset < bytes.length;) {
    try {
      offset += writeSync(RESULT_FD, bytes, offset);
    } catch (err) {
      // The pipe is non-blocking: a full buffer is EAGAIN, not an end. Wait for the reader and retry.
      if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') throw err;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}`;
  return `thrown: ${typeof err === 'string' ? err : JSON.stringify(err) ?? String(err)}`;
}

async function main(): Promise<void> {
  const scriptPath = process.argv[2];
  if (!scriptPath) throw new Error('usage: child-runner <script.mjs>');
  const input: unknown = JSON.parse(readFileSync(0, 'utf8') || 'null');
  let message: Message;
  try {
    const mod = (await import(pathToFileURL(scriptPath).href)) as { default?: unknown };
    if (typeof mod.default !== 'function') throw new TypeError('the script must `export default async function (input, { secrets }) { ... }`');
    const returned: unknown = await (mod.default as (input: unknown, ctx: { secrets: typeof secrets }) => unknown)(input, { secrets });
    // A function that returns nothing produced no output: null, rather than a refusal.
    const output = returned === undefined ? null : returned;
    let why: string | null;
    try {
      why = notJson(output, '$', new Set());
    } catch {
      why = '$ is nested too deeply';
    }
    message = why ? { ok: false, error: `the script returned a value that is not JSON: ${why}` } : { ok: true, output };
  } catch (err) {
    process.stderr.write(`${err instanceof Error && err.stack ? err.stack : describe(err)}\n`);
    message = { ok: false, error: describe(err) };
  }
  send(message);
  // Pipes take large writes asynchronously; exiting before they drain would lose the tail of the output.
  await Promise.all([process.stdout, process.stderr].map((stream) => new Promise<void>((resolve) => stream.write('', () => resolve()))));
  // The run ends when the function returns: timers or sockets the script left open do not extend it.
  process.exit(message.ok ? 0 : 1);
}

await main();
