import { StringDecoder } from 'node:string_decoder';
import { UsageError } from './args.ts';
import type { Writer } from './output.ts';

/** What the CLI needs of stdin: a stream, and for prompts a terminal that can stop echoing. */
export type Input = AsyncIterable<Buffer | string> & {
  isTTY?: boolean;
  setRawMode?: (raw: boolean) => unknown;
  on?: (event: 'data', listener: (chunk: Buffer | string) => void) => unknown;
  off?: (event: 'data', listener: (chunk: Buffer | string) => void) => unknown;
  resume?: () => unknown;
  pause?: () => unknown;
};

/** Ctrl-C at a prompt: not an error worth a message, exit 130 like a shell. */
export class InterruptedError extends Error {
  constructor() {
    super('interrupted');
    this.name = 'InterruptedError';
  }
}

/** The most the CLI reads from stdin or a file named on the command line. */
export const MAX_INPUT_BYTES = 8 * 1024 * 1024;
const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Decodes UTF-8 strictly: a binary file must not be stored mangled by replacement characters. */
export function decodeUtf8(bytes: Uint8Array, source: string): string {
  try {
    return utf8.decode(bytes);
  } catch {
    throw new UsageError(`${source} is not valid UTF-8 text`, 'Keyhold stores text values; base64-encode binary data first');
  }
}

/** Reads stdin to the end (bounded, so a runaway pipe cannot exhaust memory). */
export async function readAll(stdin: Input): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of stdin) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk, 'utf8') : chunk;
    size += buf.byteLength;
    if (size > MAX_INPUT_BYTES) throw new UsageError(`stdin is larger than ${MAX_INPUT_BYTES} bytes`);
    chunks.push(buf);
  }
  return Buffer.concat(chunks);
}

/** `echo` and heredocs add one newline the user did not mean as part of the value; remove exactly one. */
export function stripOneNewline(text: string): string {
  if (text.endsWith('\r\n')) return text.slice(0, -2);
  if (text.endsWith('\n')) return text.slice(0, -1);
  return text;
}

/**
 * Reads one line from a terminal without echoing it, so a secret never appears on screen or in
 * scrollback. The prompt goes to stderr to keep stdout for results.
 */
export function readHiddenLine(stdin: Input, stderr: Writer, prompt: string): Promise<string> {
  const { setRawMode, on, off } = stdin;
  if (!setRawMode || !on || !off) throw new Error('readHiddenLine needs a terminal');
  stderr.write(prompt);
  setRawMode.call(stdin, true);
  stdin.resume?.();
  return new Promise((resolve, reject) => {
    let chars: string[] = [];
    // A read can end inside a character (a long paste): its first bytes wait for the rest, not become U+FFFD.
    const decoder = new StringDecoder('utf8');
    const finish = (error: Error | null) => {
      off.call(stdin, 'data', onData);
      setRawMode.call(stdin, false);
      stdin.pause?.();
      stderr.write('\n');
      if (error) reject(error);
      else resolve(chars.join(''));
    };
    const onData = (chunk: Buffer | string) => {
      for (const ch of typeof chunk === 'string' ? chunk : decoder.write(chunk)) {
        if (ch === '\r' || ch === '\n' || ch === '\u0004') return finish(null);
        if (ch === '\u0003') return finish(new InterruptedError());
        if (ch === '\u007f' || ch === '\b') chars = chars.slice(0, -1);
        else if (ch >= ' ') chars.push(ch);
      }
    };
    on.call(stdin, 'data', onData);
  });
}

/**
 * The secret text a command needs: prompted without echo on a terminal, otherwise all of stdin
 * minus one trailing newline.
 */
export async function readSecretInput(stdin: Input, stderr: Writer, prompt: string): Promise<string> {
  if (stdin.isTTY) return readHiddenLine(stdin, stderr, prompt);
  return stripOneNewline(decodeUtf8(await readAll(stdin), 'stdin'));
}
