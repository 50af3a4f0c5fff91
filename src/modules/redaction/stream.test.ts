import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createRedactor, createStreamRedactor, type Redactor } from './index.ts';

/** Feeds `text` in chunks of the given sizes (cycled) and returns everything the stream wrote. */
function streamed(r: Redactor, text: string, sizes: number[]): { out: string; pieces: string[] } {
  const s = createStreamRedactor(r);
  const pieces: string[] = [];
  for (let i = 0, n = 0; i < text.length; n++) {
    const size = sizes[n % sizes.length]!;
    pieces.push(s.push(text.slice(i, i + size)));
    i += size;
  }
  pieces.push(s.end());
  return { out: pieces.join(''), pieces };
}

const VALUE = 'ghp_16C7e42F292c6912E7710c838347Ae178B4a';
const values = [VALUE, 'abcdefgh', 'efghijkl', 'xxabcdefghyy', 'pässwörd-😀-ключ', 'pin42'];
const r = createRedactor(values);
const text = [
  `token ${VALUE} in stdout`, Buffer.from(VALUE).toString('base64'), 'overlap abcdefghijkl here', 'outer xxabcdefghyy.',
  JSON.stringify({ k: 'pässwörd-😀-ключ' }), encodeURIComponent('pässwörd-😀-ключ'), 'pin=pin42 and pin421 and pin42',
].join('\n');

describe('stream redactor: the same output as redacting the whole text, whatever the chunking', () => {
  for (const sizes of [[1], [2], [3], [5], [7], [13], [64], [1, 2, 3, 5, 8], [text.length]]) {
    test(`chunks of ${sizes.join(',')} characters`, () => {
      assert.equal(streamed(r, text, sizes).out, r.redact(text));
    });
  }

  test('split at every single position (two chunks), no value or form leaks', () => {
    const expected = r.redact(text);
    for (let cut = 0; cut <= text.length; cut++) {
      const s = createStreamRedactor(r);
      const out = s.push(text.slice(0, cut)) + s.push(text.slice(cut)) + s.end();
      assert.equal(out, expected, `split at ${cut}`);
    }
  });

  test('random chunkings of text full of random values', () => {
    const many = Array.from({ length: 300 }, () => randomBytes(12).toString('hex'));
    const rr = createRedactor(many);
    const body = many.map((v, i) => `line ${i}: ${i % 3 ? v : Buffer.from(v).toString('base64')} ok`).join('\n');
    for (let round = 0; round < 20; round++) {
      const sizes = Array.from({ length: 9 }, () => 1 + Math.floor(Math.random() * 40));
      const { out } = streamed(rr, body, sizes);
      assert.equal(out, rr.redact(body), `sizes ${sizes}`);
    }
  });

  test('holds back only a tail that could still become a match: ordinary text is written at once', () => {
    const s = createStreamRedactor(r);
    assert.equal(s.push('hello world, nothing secret here\n'), 'hello world, nothing secret here\n');
    const partial = s.push(`value: ${VALUE.slice(0, 10)}`);
    assert.equal(partial, 'value: ', 'the start of a value is held back, the text before it is not');
    assert.equal(s.push(VALUE.slice(10) + ' done\n'), '[REDACTED] done\n');
    assert.equal(s.end(), '');
  });

  test('a tail that never completes a value is written on end()', () => {
    const s = createStreamRedactor(r);
    const out = s.push(`cut ${VALUE.slice(0, 20)}`) + s.end();
    assert.equal(out, `cut ${VALUE.slice(0, 20)}`);
  });

  test('a long run of overlapping matches streams out as masks without leaking characters', () => {
    const rr = createRedactor(['aaaaaaaa']);
    const run = 'a'.repeat(1000);
    const { out } = streamed(rr, `x ${run} y`, [7]);
    assert.ok(!out.includes('a'), out);
    assert.ok(out.startsWith('x [REDACTED]') && out.endsWith(' y'));
  });

  test('an empty set passes chunks straight through', () => {
    const s = createStreamRedactor(createRedactor([]));
    assert.equal(s.push('abc'), 'abc');
    assert.equal(s.end(), '');
  });
});
