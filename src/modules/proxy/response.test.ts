import { test } from 'node:test';
import assert from 'node:assert/strict';
import { plainJsonEscapes } from './response.ts';

test('JSON escapes read as JSON.stringify writes them; an escaped backslash and other text stay as they are', () => {
  for (const [text, expected] of [
    ['tok\\u002Bab\\u002fc', 'tok+ab/c'],
    ['a\\/b', 'a/b'],
    ['q\\u0022x', 'q\\"x'],
    ['bs\\u005Cx', 'bs\\\\x'],
    ['nl\\u000a', 'nl\\n'],
    ['\\uD83D\\uDE00!', '😀!'],
    ['\\\\u002B', '\\\\u002B'],
    ['\\n\\"\\\\', '\\n\\"\\\\'],
    ['no escapes', 'no escapes'],
    ['dangling \\', 'dangling \\'],
    ['\\u00', '\\u00'],
  ] as const) {
    assert.equal(plainJsonEscapes(text), expected, JSON.stringify(text));
  }
});
