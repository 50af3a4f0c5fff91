import { UNPRINTABLE } from '../modules/shared/typed-text.ts';

/** Where the CLI writes: process.stdout/stderr in the binary, a buffer in tests. */
export interface Writer {
  write(text: string): unknown;
}

export interface Output {
  readonly json: boolean;
  /** Prints `data` as JSON under --json, otherwise the human rendering. */
  result(data: unknown, human: () => string): void;
  line(text?: string): void;
  /** Notes for people (stderr), so stdout stays clean for pipes. */
  note(text: string): void;
}

export function createOutput(deps: { stdout: Writer; stderr: Writer; json: boolean }): Output {
  const { stdout, stderr, json } = deps;
  return {
    json,
    result(data, human) {
      if (json) stdout.write(JSON.stringify(data, null, 2) + '\n');
      else {
        const text = human();
        if (text !== '') stdout.write(text.endsWith('\n') ? text : text + '\n');
      }
    },
    line(text = '') {
      stdout.write(text + '\n');
    },
    note(text) {
      stderr.write(text + '\n');
    },
  };
}

/** Left-aligned columns, two spaces apart, with a header row. */
export function table(headers: string[], rows: Array<Array<string | number | null | undefined>>): string {
  const cells = [headers, ...rows.map((r) => r.map((c) => (c === null || c === undefined || c === '' ? '-' : String(c))))];
  const widths = headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  return cells.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]!))).join('  ')).join('\n');
}

/** "Key:   value" lines with aligned values. */
export function fields(pairs: Array<[string, string | number | null | undefined]>): string {
  const width = Math.max(...pairs.map(([k]) => k.length)) + 1;
  return pairs.map(([k, v]) => `${(k + ':').padEnd(width)}  ${v === null || v === undefined || v === '' ? '-' : v}`).join('\n');
}

/** ISO timestamps without the milliseconds, easier to scan in a table. */
export function time(iso: string | null | undefined): string | null {
  return iso ? iso.replace(/\.\d+Z$/, 'Z') : null;
}

const UNPRINTABLE_ALL = new RegExp(UNPRINTABLE.source, 'gu');

/**
 * Text the server returned but did not vouch for (an audit row inserted by hand can hold anything),
 * as one inert line: every character that could move the cursor, recolour or redraw the terminal, or
 * break the line is shown as a \uXXXX escape, and past `max` characters the rest is counted, not printed.
 * @example
 * printable('root\u001b[2J');   // 'root\\u001b[2J'
 */
export function printable(text: string, max = 200): string {
  const shown = text.replace(UNPRINTABLE_ALL, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, '0')}`);
  return shown.length > max ? `${shown.slice(0, max)}… (${shown.length - max} more characters)` : shown;
}
