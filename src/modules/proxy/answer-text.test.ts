import { test } from 'node:test';
import assert from 'node:assert/strict';
import { answerEncoding, readAnswer } from './answer-text.ts';

const utf8 = (s: string) => Buffer.from(s, 'utf8');
const utf16le = (s: string) => Buffer.from(s, 'utf16le');
const utf16be = (s: string) => Buffer.from(s, 'utf16le').swap16();

test('an answer is read in the encoding its byte order mark, else its UTF-16 charset, names; UTF-8 otherwise; an unknown charset has none', () => {
  for (const [contentType, body, expected] of [
    ['application/json', utf8('{}'), 'utf-8'],
    [null, utf8('x'), 'utf-8'],
    ['application/json; charset=UTF-16LE', utf16le('{}'), 'utf-16le'],
    ['text/plain;charset="utf-16be"', utf16be('{}'), 'utf-16be'],
    ['application/json; charset=utf-16', utf16le('{}'), 'utf-16le'],
    // Encodings that write ASCII as ASCII read as UTF-8 does: a value shows the same in both.
    ['text/plain; format=flowed; charset=iso-8859-1', utf8('x'), 'utf-8'],
    ['text/plain; charset=shift_jis', utf8('x'), 'utf-8'],
    // A mark wins over the label (Java writes charset=UTF-16 big-endian after one).
    ['application/json; charset=utf-16', Buffer.from([0xfe, 0xff, 0, 0x7b, 0, 0x7d]), 'utf-16be'],
    ['application/json; charset=utf-8', Buffer.from([0xff, 0xfe, 0x7b, 0, 0x7d, 0]), 'utf-16le'],
    ['text/plain; charset=utf-7', utf8('x'), null],
    ['text/plain; charset=utf-32le', utf8('x'), null],
    ['text/plain; charset=', utf8('x'), null],
  ] as const) {
    assert.equal(answerEncoding(contentType, body), expected, `${contentType}`);
  }
});

test('an answer is text in its encoding unless a value shows in another reading of its bytes, which the caller could turn it back into', () => {
  const value = 'sk_live_Q7wZQ7wZ';
  const mask = (text: string) => text.replaceAll(value, '[REDACTED]');
  const echo = `{"authorization":"Bearer ${value}"}`;
  // Honest: UTF-16 read as UTF-16, with or without a mark; UTF-8 as UTF-8.
  assert.equal(readAnswer(utf16le(echo), 'utf-16le', mask), echo);
  assert.equal(readAnswer(Buffer.concat([Buffer.from([0xfe, 0xff]), utf16be(echo)]), 'utf-16be', mask), echo);
  assert.equal(readAnswer(utf8(echo), 'utf-8', mask), echo);
  assert.equal(readAnswer(utf8('{"ok":1}'), 'utf-16le', mask), utf8('{"ok":1}').toString('utf16le'), 'no value anywhere: read as labelled');
  // Mislabelled: the value shows only in the reading not returned.
  assert.equal(readAnswer(utf8(echo), 'utf-16le', mask), null);
  assert.equal(readAnswer(utf8(echo), 'utf-16be', mask), null);
  assert.equal(readAnswer(utf16le(echo), 'utf-8', mask), null);
  assert.equal(readAnswer(Buffer.concat([...echo].map((c) => Buffer.from([c.charCodeAt(0), 0, 0, 0]))), 'utf-8', mask), null, 'UTF-32');
});
