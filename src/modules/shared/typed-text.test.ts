import { test } from 'node:test';
import assert from 'node:assert/strict';
import { visibleLength } from './typed-text.ts';

test('visible length counts what a reader sees: no invisible characters, no blank padding of any kind', () => {
  const cases: Array<[string, number]> = [
    ['PAGE-7 fix', 9],
    ['a\u200b\u200b\u200bb', 2], // zero-width spaces
    ['a          b', 2], // interior spaces pad a justification to length without saying anything
    ['a\u3000\u2003\u00a0b', 2], // ideographic, em and no-break spaces
    ['a\u2800\u2800\u2800b', 2], // the blank Braille pattern renders as a gap
    ['a\u3164\u115fb', 2], // Hangul fillers
    ['\u{1F525}\u{1F525}', 2], // an emoji is one character
    ['', 0],
  ];
  for (const [text, visible] of cases) assert.equal(visibleLength(text), visible, JSON.stringify(text));
});
