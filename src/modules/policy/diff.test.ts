import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { diffLines, lineDiff, MAX_DIFF_WORK } from './diff.ts';
import { cpuMs } from '../../../test/helpers/cpu-time.ts';

const EXAMPLE = readFileSync(new URL('../../../docs/examples/tenant-policies.cedar', import.meta.url), 'utf8');

/** The previous implementation (a full LCS table), kept as the reference for ordinary policy edits. */
function lcsDiff(before: string, after: string): string {
  const a = before.split('\n');
  const b = after.split('\n');
  const lcs = Array.from({ length: a.length + 1 }, () => new Array<number>(b.length + 1).fill(0));
  for (let i = a.length - 1; i >= 0; i--) {
    for (let j = b.length - 1; j >= 0; j--) lcs[i]![j] = a[i] === b[j] ? lcs[i + 1]![j + 1]! + 1 : Math.max(lcs[i + 1]![j]!, lcs[i]![j + 1]!);
  }
  const out: string[] = [];
  let i = 0;
  let j = 0;
  while (i < a.length || j < b.length) {
    if (i < a.length && j < b.length && a[i] === b[j]) out.push(`  ${a[i++]}`) && j++;
    else if (j < b.length && (i === a.length || lcs[i]![j + 1]! >= lcs[i + 1]![j]!)) out.push(`+ ${b[j++]}`);
    else out.push(`- ${a[i++]}`);
  }
  return out.join('\n');
}

/** What a diff says each side was: both texts must come back from it. */
function sides(diff: string[]): [string, string] {
  return [diff.filter((l) => !l.startsWith('+ ')).map((l) => l.slice(2)).join('\n'), diff.filter((l) => !l.startsWith('- ')).map((l) => l.slice(2)).join('\n')];
}

const lines = EXAMPLE.split('\n');
const EDITS: [string, string, string][] = [
  ['identical', EXAMPLE, EXAMPLE],
  ['from nothing', '', EXAMPLE],
  ['to nothing', EXAMPLE, ''],
  ['one line changed', EXAMPLE, EXAMPLE.replace('300', '600')],
  ['a policy appended', EXAMPLE, `${EXAMPLE}\n@id("x")\nforbid (principal, action, resource);\n`],
  ['a policy prepended', EXAMPLE, `@id("x")\nforbid (principal, action, resource);\n\n${EXAMPLE}`],
  ['a line removed', EXAMPLE, lines.filter((_, i) => i !== 3).join('\n')],
  ['two policies swapped', EXAMPLE, [...lines.slice(Math.floor(lines.length / 2)), ...lines.slice(0, Math.floor(lines.length / 2))].join('\n')],
  ['a rewrite', 'permit (principal, action, resource);', '@id("everything") permit (principal, action, resource);\nforbid (principal, action, resource);'],
  ['small strings', 'a\nb\nc', 'a\nc\nd'],
];

for (const [name, before, after] of EDITS) {
  test(`a policy diff reads as before for an ordinary edit: ${name}`, () => {
    assert.equal(lineDiff(before, after), lcsDiff(before, after));
  });
}

test('a diff of two 64 KiB files of different lines stays within its work bound and is still a correct diff', () => {
  const a = Array.from({ length: 32_000 }, (_, i) => (i % 2 === 0 ? '' : 'a'));
  const b = Array.from({ length: 32_000 }, (_, i) => (i % 2 === 0 ? 'b' : ''));
  const { result, ms } = cpuMs(() => diffLines(a, b));
  assert.ok(result.work <= MAX_DIFF_WORK + 1, `work ${result.work}`);
  assert.deepEqual(sides(result.lines), [a.join('\n'), b.join('\n')]);
  assert.ok(ms < 5_000, `generous bound: the LCS table took seconds and hundreds of MB here (${Math.round(ms)} ms)`);
});

test('8k blank lines against 8k blank lines and one more line diff by the common ends, almost without work', () => {
  const blank = '\n'.repeat(8_000);
  const result = diffLines(blank.split('\n'), `${blank}x`.split('\n'));
  assert.ok(result.work < 10, `work ${result.work}`);
  assert.equal(result.lines.filter((l) => l !== '  ').join('|'), '+ x|- ');
});

test('random small edits give a minimal diff (as long as the LCS one) from which both texts come back', () => {
  let seed = 7;
  const rnd = (n: number) => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) % n);
  for (let round = 0; round < 300; round++) {
    const a = Array.from({ length: rnd(12) }, () => 'abc'[rnd(3)]!).join('\n');
    const b = Array.from({ length: rnd(12) }, () => 'abc'[rnd(3)]!).join('\n');
    const diff = lineDiff(a, b).split('\n');
    assert.deepEqual(sides(diff), [a, b], `${JSON.stringify(a)} → ${JSON.stringify(b)}`);
    const changed = (d: string[]) => d.filter((l) => !l.startsWith('  ')).length;
    assert.equal(changed(diff), changed(lcsDiff(a, b).split('\n')), `${JSON.stringify(a)} → ${JSON.stringify(b)}`);
  }
});

test('a large file with a few edits still gets a minimal diff (past the table, Myers finds it with little work)', () => {
  const a = Array.from({ length: 120 }, () => lines).flat();
  const b = [...a];
  for (const at of [5, 700, 1_500]) b[at] = `// changed at ${at}`;
  b.splice(1_000, 0, '// inserted 1', '// inserted 2');
  b.splice(1_800, 1);
  const result = diffLines(a, b);
  assert.ok((a.length + 1) * (b.length + 1) > MAX_DIFF_WORK, 'past the table');
  assert.ok(result.work < 100_000, `work ${result.work}`);
  assert.deepEqual(sides(result.lines), [a.join('\n'), b.join('\n')]);
  assert.equal(result.lines.filter((l) => !l.startsWith('  ')).length, 3 * 2 + 2 + 1);
});
