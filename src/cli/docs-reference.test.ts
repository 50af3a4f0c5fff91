import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { GLOBAL_OPTIONS } from './args.ts';
import { isGroup, type Command } from './command.ts';
import { entries } from './commands/index.ts';

/**
 * The README's CLI reference and every `keyhold ...` line in the docs' shell examples name commands and
 * flags the CLI has, and the reference lists every command: a renamed flag or a new verb cannot leave the
 * docs behind.
 */

const root = new URL('../../', import.meta.url);
const readme = readFileSync(new URL('README.md', root), 'utf8');
const global = new Set(Object.keys(GLOBAL_OPTIONS));

const topLevel = new Map<string, Command>();
const groups = new Map<string, Map<string, Command>>();
for (const entry of entries) {
  if (isGroup(entry)) groups.set(entry.name, new Map(entry.commands.map((c) => [c.name, c])));
  else topLevel.set(entry.name, entry);
}

interface Resolved { name: string; command: Command; rest: string[] }

/** `words` as the CLI would route them: a verb of `group` first (so `keys status | rotate` stays in keys), then a top-level command or group. */
function resolve(words: string[], group: string | null): Resolved | null {
  const [first = '', second = ''] = words;
  const inGroup = group ? groups.get(group)?.get(first) : undefined;
  if (inGroup) return { name: `${group} ${first}`, command: inGroup, rest: words.slice(1) };
  const command = topLevel.get(first);
  if (command) return { name: first, command, rest: words.slice(1) };
  const verb = groups.get(first)?.get(second);
  return verb ? { name: `${first} ${second}`, command: verb, rest: words.slice(2) } : null;
}

/** Flags in `words` that `command` does not take. */
function unknownFlags(command: Command, words: string[]): string[] {
  const flags = [...words.join(' ').matchAll(/(?<![\w-])--([a-z][a-z0-9-]*)/g)].map((m) => m[1]!);
  return flags.filter((f) => !(f in command.options) && !global.has(f)).map((f) => `--${f}`);
}

/** Splits on ` | ` outside brackets and parentheses (alternatives), keeping `a|b` inside an option's value. */
function alternatives(synopsis: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < synopsis.length; i++) {
    const ch = synopsis[i];
    if (ch === '[' || ch === '(') depth++;
    else if (ch === ']' || ch === ')') depth--;
    else if (ch === '|' && depth === 0 && synopsis[i - 1] === ' ' && synopsis[i + 1] === ' ') {
      parts.push(synopsis.slice(start, i).trim());
      start = i + 1;
    }
  }
  parts.push(synopsis.slice(start).trim());
  return parts;
}

/** The reference block's `keyhold ...` lines, each joined with its `[...]` continuation lines, comments (`   (...)`) dropped. */
function referenceLines(): string[] {
  const block = /### CLI reference\n+```\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(block, 'README.md has a "### CLI reference" code block');
  const lines: string[] = [];
  for (const raw of block.split('\n')) {
    const line = raw.replace(/ {3,}\(.*$/, '').trim();
    if (/^keyhold [a-z]/.test(raw.trim()) && !raw.trim().startsWith('keyhold <command>')) lines.push(line.slice('keyhold '.length));
    else if (/^ {4,}\[/.test(raw) && lines.length > 0) lines[lines.length - 1] += ` ${line}`;
  }
  return lines;
}

test('every command and flag in the README CLI reference exists, and the reference lists every command', () => {
  const problems: string[] = [];
  const listed = new Set<string>();
  for (const line of referenceLines()) {
    let group: string | null = null;
    for (const alt of alternatives(line)) {
      const found = resolve(alt.split(/\s+/), group);
      if (!found) { problems.push(`"keyhold ${line}": no command "${alt}"`); continue; }
      listed.add(found.name);
      group = found.name.includes(' ') ? found.name.split(' ')[0]! : null;
      for (const flag of unknownFlags(found.command, found.rest)) problems.push(`keyhold ${found.name}: no flag ${flag}`);
    }
  }
  const all = [...topLevel.keys(), ...[...groups].flatMap(([g, verbs]) => [...verbs.keys()].map((v) => `${g} ${v}`))];
  for (const name of all) if (!listed.has(name)) problems.push(`keyhold ${name} is missing from the README CLI reference`);
  assert.deepEqual(problems, []);
});

/** Shell lines of the README and docs/*.md code blocks, backslash continuations joined. */
function shellLines(): Array<{ file: string; line: string }> {
  const files = ['README.md', ...readdirSync(new URL('docs/', root)).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  return files.flatMap((file) => {
    const text = readFileSync(new URL(file, root), 'utf8');
    return [...text.matchAll(/```(?:sh|bash)\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.replace(/\\\n/g, ' ').split('\n').map((line) => ({ file, line })));
  });
}

/** Drops `$(...)` (balanced) and quoted strings, which hold other programs' arguments and free text. */
function withoutSubstitutions(line: string): string {
  let out = '';
  for (let i = 0; i < line.length; i++) {
    if (line.startsWith('$(', i)) {
      let depth = 0;
      for (; i < line.length; i++) {
        if (line[i] === '(') depth++;
        else if (line[i] === ')' && --depth === 0) break;
      }
      out += 'X';
    } else out += line[i];
  }
  return out.replace(/"[^"]*"|'[^']*'/g, 'X');
}

test('every keyhold command line in the README and docs shell examples names a command and flags it takes', () => {
  const problems: string[] = [];
  let checked = 0;
  for (const { file, line } of shellLines()) {
    const text = withoutSubstitutions(line).replace(/#.*$/, '');
    for (const m of text.matchAll(/(?:^|[\s;&|(])(?:\.\/bin\/)?keyhold ([^|&;>#<`]*)/g)) {
      const words = m[1]!.trim().split(/\s+/);
      const found = resolve(words, null);
      if (!found) { problems.push(`${file}: "keyhold ${m[1]!.trim()}": no such command`); continue; }
      checked++;
      for (const flag of unknownFlags(found.command, found.rest)) problems.push(`${file}: keyhold ${found.name}: no flag ${flag}`);
    }
  }
  assert.ok(checked > 50, `only ${checked} keyhold lines found: the example parser no longer reads the docs`);
  assert.deepEqual(problems, []);
});
