import { randomBytes } from 'node:crypto';
import { open, rename, rm } from 'node:fs/promises';
import { createPrivateFile } from '../platform/private-file.ts';
import { firstDuplicateKey, lineAndColumn } from '../platform/json-duplicates.ts';
import { UsageError } from './args.ts';
import { MAX_INPUT_BYTES } from './input.ts';

/**
 * Reads a file named on the command line, bounded like stdin: reading stops one byte past the
 * bound (a pipe or device reports no size, so the size is counted, not asked). A missing,
 * unreadable or oversized file is a usage error naming it.
 */
export async function readBytes(path: string, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    const handle = await open(path, 'r');
    try {
      for (;;) {
        const { bytesRead, buffer } = await handle.read(Buffer.alloc(Math.min(64 * 1024, MAX_INPUT_BYTES + 1 - size)), 0, undefined, null);
        if (bytesRead === 0) break;
        size += bytesRead;
        if (size > MAX_INPUT_BYTES) throw new UsageError(`${what} ${path} is larger than ${MAX_INPUT_BYTES} bytes`, 'the CLI reads at most 8 MiB from a file or stdin');
        chunks.push(buffer.subarray(0, bytesRead));
      }
    } finally {
      await handle.close();
    }
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`cannot read ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return Buffer.concat(chunks, size);
}

/** Reads a text file named on the command line (bounded, see readBytes). */
export async function readText(path: string, what: string): Promise<string> {
  return (await readBytes(path, what)).toString('utf8');
}

/** Reads and parses a JSON file named on the command line (see parseUserJson). */
export async function readJson(path: string, what: string): Promise<unknown> {
  return parseUserJson(await readText(path, what), `${what} ${path}`);
}

/**
 * Refuses JSON `text` (already parsed) where an object names a key twice: JSON.parse keeps the
 * last, other tools the first, so the file may not say what its author or a reviewer read. The
 * message gives the line and column, not the key (a key may be a credential).
 */
export function refuseDuplicateKeys(text: string, what: string): void {
  const dup = firstDuplicateKey(text);
  if (dup === null) return;
  const { line, column } = lineAndColumn(text, dup.offset);
  throw new UsageError(`${what} names the same key twice in one object (line ${line}, column ${column})`, 'JSON readers disagree on which one counts: keep one');
}

/** Parses JSON a user gave (a file's text, a flag's value): text that is not JSON, or names a key twice in one object, is a usage error saying where, never quoting it. */
export function parseUserJson(text: string, what: string): unknown {
  let value: unknown;
  try {
    value = JSON.parse(text) as unknown;
  } catch (err) {
    throw new UsageError(`${what} is not valid JSON: ${jsonProblem(err, text)}`);
  }
  refuseDuplicateKeys(text, what);
  return value;
}

/**
 * Why a text is not JSON, without the parser's own message: V8 quotes the text around the error
 * ("..."{"token": sk_live_se"... is not valid JSON"), and the text may hold a secret.
 */
export function jsonProblem(err: unknown, text: string): string {
  const message = err instanceof Error ? err.message : '';
  const kind = /end of (JSON )?input|Unterminated/i.test(message) ? 'it ends too early' : 'an unexpected or missing character';
  const at = /at position (\d+)/.exec(message);
  if (!at) return kind;
  const { line, column } = lineAndColumn(text, Number(at[1]));
  return `${kind} at line ${line}, column ${column}`;
}

/**
 * Writes a file the CLI produces (an export) readable by its owner only. The content goes to a
 * new file beside it, created exclusively under an unguessable name (so neither a file nor a link
 * planted there is written through, nor an older file's looser mode kept), and is renamed over
 * `path` only once complete: a cut-off write never passes for a whole one, and a link at `path`
 * is replaced, not followed.
 */
export async function writePrivateFile(path: string, content: string | AsyncIterable<Uint8Array>): Promise<void> {
  const partial = `${path}.${randomBytes(6).toString('hex')}.partial`;
  await createPrivateFile(partial, content);
  try {
    await rename(partial, path);
  } catch (err) {
    await rm(partial, { force: true });
    throw err;
  }
}
