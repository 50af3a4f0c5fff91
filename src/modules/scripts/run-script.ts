import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { fail } from '../../errors/index.ts';
import { createRedactor, redactDeep, setsOf, unionRedactors, type Redactor } from '../redaction/redactor.ts';
import { createStreamRedactor } from '../redaction/stream.ts';
import { cutToBytes } from '../../platform/utf8.ts';
import { createCapture } from './capture.ts';

/**
 * The tenant's redactor, built by src/modules/redaction: a plain `redact(text)` cannot tell whether kept output
 * ends inside a value (the rest was dropped at the bound), and the stream redactor over it can.
 */
export type ScriptRedactor = Redactor;

/** The child's KEYHOLD_* variables: its own server address, token, tenant and environment (with `extraCa`, one other: NODE_EXTRA_CA_CERTS). */
export interface ScriptEnv {
  KEYHOLD_ADDR: string;
  KEYHOLD_TOKEN: string;
  KEYHOLD_TENANT?: string;
  KEYHOLD_ENVIRONMENT: string;
}

export interface RunScriptOptions {
  /** ESM source: `export default async function (input, { secrets }) { ...; return jsonValue }`. */
  source: string;
  /** Passed to the function as its first argument (JSON). */
  input: unknown;
  env: ScriptEnv;
  /** Wall clock: the process group is killed when it passes. */
  timeoutMs: number;
  /** Bound on each of stdout, stderr and the result's JSON, in bytes. */
  maxOutputBytes: number;
  /** Masks known values in stdout, stderr, the error and every string of the output. */
  redactor: ScriptRedactor;
  /** CA certificates (PEM) the child trusts besides Node's bundled ones (NODE_EXTRA_CA_CERTS): the issuer of a TLS server's certificate. */
  extraCa?: string;
  /** V8 heap limit of the child. Default 256. */
  maxMemoryMb?: number;
}

export interface ScriptResult {
  ok: boolean;
  /** The function's return value (redacted), or null when !ok. */
  output: unknown;
  stdout: string;
  stderr: string;
  exitCode: number | null;
  timedOut: boolean;
  durationMs: number;
  /** Why the run failed, redacted. */
  error?: string;
  /** Which streams were cut at maxOutputBytes. */
  truncated: { stdout: boolean; stderr: boolean };
}

const RUNNER = fileURLToPath(new URL('./child-runner.ts', import.meta.url));
const SDK_DIR = fileURLToPath(new URL('../../sdk/', import.meta.url));
/** Kept past the cut so a value straddling it is still masked whole, and the bound filled when masks shortened the text. */
const REDACTION_LOOKAHEAD = 96 * 1024;

/**
 * A stream's kept text, redacted and cut at `limit`. When the stream carried more than was kept, a tail that
 * could still be the start of a value (or one of its forms) is dropped: the rest of it was never seen, so no
 * mask would cover it, and masks earlier on may have shortened the text enough to bring it under the bound.
 */
function keptText(r: Redactor, capture: ReturnType<typeof createCapture>, limit: number) {
  const stream = createStreamRedactor(r);
  const decided = stream.push(capture.text());
  return cutToBytes(capture.complete ? decided + stream.end() : decided, limit);
}

/** Collects a stream up to `limit` bytes; `onOverflow` runs once if it carries more. */
function collect(stream: Readable, limit: number, onOverflow: () => void): () => Buffer | null {
  const chunks: Buffer[] = [];
  let size = 0;
  let over = false;
  stream.on('data', (chunk: Buffer) => {
    if (over) return;
    size += chunk.length;
    if (size > limit) {
      over = true;
      chunks.length = 0;
      onOverflow();
      return;
    }
    chunks.push(chunk);
  });
  return () => (over ? null : Buffer.concat(chunks));
}

/**
 * Runs a user's script in a child process of this Node binary with Node's permission model on:
 * it may read only the SDK and its own file, may not write files, spawn processes, start workers,
 * load addons, open the inspector or load node:sqlite. Its environment holds only `env` (never the server's own), and
 * NODE_EXTRA_CA_CERTS when `extraCa` is given.
 * Network access is not restricted by Node. See docs/sdk.md, "Script steps".
 */
export async function runScript(opts: RunScriptOptions): Promise<ScriptResult> {
  const { timeoutMs, maxOutputBytes } = opts;
  if (!Number.isInteger(timeoutMs) || timeoutMs <= 0) fail('VALIDATION_FAILED', 'timeoutMs must be a positive integer');
  if (!Number.isInteger(maxOutputBytes) || maxOutputBytes <= 0) fail('VALIDATION_FAILED', 'maxOutputBytes must be a positive integer');
  const maxMemoryMb = opts.maxMemoryMb ?? 256;
  const token = opts.env.KEYHOLD_TOKEN;
  // The run's own token is masked too (in its encodings as well): the script can read it, but must not publish it in a log.
  const masker = token.length > 0 ? unionRedactors([opts.redactor, createRedactor([token])], setsOf(opts.redactor).mask) : opts.redactor;
  const redact = (text: string) => masker.redact(text);
  let inputJson: string;
  try {
    inputJson = JSON.stringify(opts.input ?? null);
  } catch {
    fail('VALIDATION_FAILED', 'the script input is not JSON');
  }

  const started = performance.now();
  const dir = await mkdtemp(join(tmpdir(), 'keyhold-script-'));
  try {
    const scriptPath = join(dir, 'script.mjs');
    await writeFile(scriptPath, opts.source, { mode: 0o600 });
    const env: Record<string, string> = { KEYHOLD_ADDR: opts.env.KEYHOLD_ADDR, KEYHOLD_TOKEN: token, KEYHOLD_ENVIRONMENT: opts.env.KEYHOLD_ENVIRONMENT };
    if (opts.env.KEYHOLD_TENANT) env.KEYHOLD_TENANT = opts.env.KEYHOLD_TENANT;
    if (opts.extraCa) {
      // Node reads it at start-up, before the permission model applies, so it needs no --allow-fs-read.
      const caPath = join(dir, 'ca.pem');
      await writeFile(caPath, opts.extraCa, { mode: 0o600 });
      env.NODE_EXTRA_CA_CERTS = caPath;
    }
    const child = spawn(process.execPath, [
      '--disable-warning=ExperimentalWarning',
      '--permission', `--allow-fs-read=${SDK_DIR}`, `--allow-fs-read=${RUNNER}`, `--allow-fs-read=${scriptPath}`,
      // node:sqlite opens and creates files with no permission check (Node 24): any database the server's user can
      // reach, Keyhold's own included. Without this flag it is absent by every route (import, require, getBuiltinModule).
      '--no-experimental-sqlite',
      `--max-old-space-size=${maxMemoryMb}`,
      RUNNER, scriptPath,
    ], { env, cwd: dir, detached: true, stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });

    let timedOut = false;
    let resultTooLarge = false;
    // detached: the child leads its own process group, so one signal reaches anything it started.
    const killGroup = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // Already gone.
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, timeoutMs);
    const stdout = createCapture(maxOutputBytes, REDACTION_LOOKAHEAD);
    const stderr = createCapture(maxOutputBytes, REDACTION_LOOKAHEAD);
    child.stdout!.on('data', (c: Buffer) => stdout.push(c));
    child.stderr!.on('data', (c: Buffer) => stderr.push(c));
    const result = collect(child.stdio[3] as Readable, maxOutputBytes, () => {
      resultTooLarge = true;
      killGroup();
    });
    child.stdin!.on('error', () => undefined); // a script that exits without reading its input
    child.stdin!.end(inputJson);

    const [exitCode, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, sig) => resolve([code, sig]));
    }).finally(() => clearTimeout(timer));

    const out = keptText(masker, stdout, maxOutputBytes);
    const err = keptText(masker, stderr, maxOutputBytes);
    const base = {
      stdout: out.text, stderr: err.text, exitCode, timedOut, durationMs: Math.round(performance.now() - started),
      truncated: { stdout: out.cut || stdout.total > maxOutputBytes, stderr: err.cut || stderr.total > maxOutputBytes },
    };
    const failed = (error: string): ScriptResult => ({ ok: false, output: null, ...base, error: redact(error) });

    if (timedOut) return failed(`the script did not finish within ${timeoutMs} ms and was stopped`);
    if (resultTooLarge) return failed(`the script's result is larger than ${maxOutputBytes} bytes`);
    const bytes = result();
    if (!bytes || bytes.length === 0) {
      return failed(`the script ended (${signal ? `signal ${signal}` : `exit code ${exitCode}`}) before returning a result`);
    }
    let message: { ok?: unknown; output?: unknown; error?: unknown };
    try {
      message = JSON.parse(bytes.toString('utf8')) as typeof message;
    } catch {
      return failed('the script wrote something other than its result to the result channel (fd 3)');
    }
    if (message.ok === true && exitCode === 0) return { ok: true, output: redactDeep(masker, message.output ?? null), ...base };
    return failed(typeof message.error === 'string' ? message.error : `the script failed (exit code ${exitCode})`);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}
