import { test } from 'node:test';
import assert from 'node:assert/strict';
import { firstDuplicateKey, type DuplicateKey } from './json-duplicates.ts';

test('a key named twice in one object is found, as JSON.parse compares keys, wherever the object is', () => {
  const cases: Array<[string, Pick<DuplicateKey, 'key' | 'path'> | null]> = [
    ['{"a":1,"a":2}', { key: 'a', path: [] }],
    ['{"a":1,"\\u0061":2}', { key: 'a', path: [] }],
    ['{"\\u0041":1,"\\u0061":2}', null],
    ['{"a/b":1,"a\\/b":2}', { key: 'a/b', path: [] }],
    ['{"\\ud83d\\udd11":1,"🔑":2}', { key: '🔑', path: [] }],
    ['{"é":1,"e\\u0301":2}', null],
    ['{"":1,"":2}', { key: '', path: [] }],
    ['{"1":1,"01":2,"1.0":3}', null],
    ['{"a":{"b":1},"c":{"b":1}}', null],
    ['[{"b":1},{"b":2}]', null],
    ['[{"b":1},{"c":1,"d":2,"c":3}]', { key: 'c', path: [1] }],
    ['{"x":[0,[1,{"y":{"z":1,"w":2,"z":3}}]]}', { key: 'z', path: ['x', 1, 1, 'y'] }],
    ['{"a":{"a":{"a":1}}}', null],
    ['{"a":"b","b":"a","c":{"a":"a"}}', null],
    ['{"s":"\\"s\\":1,","t":1}', null],
    ['{"s":"\\\\","s2":"\\\\\\"s\\\\\\"","s":1}', { key: 's', path: [] }],
    ['{"s":"}{][,:","t":{"s":"{\\"t\\":1}"},"t":2}', { key: 't', path: [] }],
    ['{"k":1, "k" :2}', { key: 'k', path: [] }],
    [' \n{ "a" : [ ] , "b" : { } , "a" : null }\n', { key: 'a', path: [] }],
    ['[1,"{\\"a\\":1,\\"a\\":2}",true,null]', null],
    ['"{\\"a\\":1,\\"a\\":2}"', null],
    ['{"a":1,"b":2,"c":3,"d":4,"b":5}', { key: 'b', path: [] }],
    [`{${Array.from({ length: 30 }, (_, i) => `"k${i}":${i}`).join(',')}}`, null],
    [`{${Array.from({ length: 30 }, (_, i) => `"k${i}":${i}`).join(',')},"k29":0}`, { key: 'k29', path: [] }],
    [`{${Array.from({ length: 9 }, (_, i) => `"k${i}":${i}`).join(',')},"k0":0}`, { key: 'k0', path: [] }],
    [`[{${Array.from({ length: 12 }, (_, i) => `"k${i}":${i}`).join(',')}},{"k0":1,"k1":{"k0":1}}]`, null],
  ];
  for (const [text, expected] of cases) {
    JSON.parse(text); // every case is valid JSON
    const got = firstDuplicateKey(text);
    assert.deepEqual(got && { key: got.key, path: got.path }, expected, text);
  }
});

test('the offset is where the repeated key starts', () => {
  const text = '{"a":[{"b":1,"\\u0062":2}]}';
  assert.equal(firstDuplicateKey(text)!.offset, text.indexOf('"\\u0062"'));
});

/** A random JSON value as text, with the first duplicate (in document order) it was built with, if any. */
function randomJson(rand: () => number, depth: number, path: Array<string | number>, first: { dup: Pick<DuplicateKey, 'key' | 'path'> | null }): string {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rand() * xs.length)]!;
  // Keys and strings full of what a naive scanner trips on.
  const words = ['a', 'b', '"', '\\', '{', '}', '[', ']', ',', ':', '/', 'é', '🔑', 'a"b', '\\"', ''];
  const spell = (s: string) => [...JSON.stringify(s).slice(1, -1)]
    .map((ch) => (rand() < 0.3 && /[a-z]/.test(ch) ? `\\u${ch.charCodeAt(0).toString(16).padStart(4, '0')}` : ch === '/' && rand() < 0.5 ? '\\/' : ch)).join('');
  const r = rand();
  if (depth > 5 || r < 0.3) return pick(['1', '-2.5e3', 'true', 'null', `"${spell(pick(words) + pick(words))}"`]);
  if (r < 0.55) {
    const items = Array.from({ length: Math.floor(rand() * 4) }, (_, i) => randomJson(rand, depth + 1, [...path, i], first));
    return `[${items.join(',')}]`;
  }
  const seen = new Set<string>();
  const members: string[] = [];
  // Mostly small objects, some past the length where keys go from a list to a set.
  for (let i = Math.floor(rand() < 0.15 ? 8 + rand() * 12 : rand() * 5); i > 0; i--) {
    const key = rand() < 0.97 ? pick(words) + pick(words) : (pick([...seen]) ?? 'x');
    // Keys before values: a repeat here is found before anything inside this member's value.
    if (seen.has(key) && first.dup === null) first.dup = { key, path };
    seen.add(key);
    members.push(`"${spell(key)}"${pick(['', ' '])}:${randomJson(rand, depth + 1, [...path, key], first)}`);
  }
  return `{${members.join(',')}}`;
}

test('on thousands of random JSON texts it finds exactly the first duplicate they were built with', () => {
  let seed = 42;
  const rand = () => ((seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31) / 2 ** 31);
  let duplicates = 0;
  for (let i = 0; i < 5_000; i++) {
    const first = { dup: null as Pick<DuplicateKey, 'key' | 'path'> | null };
    const text = randomJson(rand, 0, [], first);
    JSON.parse(text);
    const got = firstDuplicateKey(text);
    assert.deepEqual(got && { key: got.key, path: got.path }, first.dup, text);
    if (first.dup) duplicates++;
  }
  assert.ok(duplicates > 100, `only ${duplicates} texts had a duplicate`);
});

test('nesting hundreds of thousands deep and objects of many keys take linear time, with no recursion', () => {
  // Sizes where a quadratic scan does ~10^10 steps (tens of seconds) and a linear one a few milliseconds: the bound
  // sits two orders of magnitude above the linear time, so a loaded machine does not fail it and a quadratic scan does.
  const deep = (n: number) => '{"a":['.repeat(n) + '{"b":1,"b":2}' + ']}'.repeat(n);
  const wide = (n: number) => `{${Array.from({ length: n }, (_, i) => `"k${i}":"\\"{${i}"`).join(',')},"k0":0}`;
  const escapes = (n: number) => `{"a":"${'\\\\'.repeat(n)}","a":1}`;
  for (const make of [deep, wide, escapes]) {
    const text = make(160_000);
    const started = performance.now();
    const got = firstDuplicateKey(text);
    const ms = performance.now() - started;
    assert.ok(got !== null, make.name);
    assert.ok(ms < 3_000, `${make.name}: ${ms.toFixed(1)} ms for 160k`);
    if (make === deep) assert.equal(got.path.length, 320_000);
  }
});
