import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decodeHeaderValue, decodeQuotedPrintable } from '../../../../test/fixtures/mime-decode.ts';
import { headerField, quotedPrintable } from './encoding.ts';

/** The header and body encoders on their own: exact output for the documented cases, and round trips of many random texts. */

test('the documented examples hold', () => {
  assert.equal(headerField('Subject', 'Zoë\r\nBcc: x@example.com'), 'Subject: =?UTF-8?B?Wm/DqyBCY2M6IHhAZXhhbXBsZS5jb20=?=');
  assert.equal(quotedPrintable('Zoë = ok \nnext'), 'Zo=C3=AB =3D ok=20\r\nnext');
  assert.equal(headerField('Subject', 'plain words stay readable'), 'Subject: plain words stay readable');
  assert.equal(headerField('Subject', ''), 'Subject:');
  assert.equal(readField(headerField('Subject', 'see =?utf-8?q?caf=C3=A9?= as typed')).value, 'see =?utf-8?q?caf=C3=A9?= as typed', 'text that looks encoded is encoded, so it reads as typed');
  assert.equal(quotedPrintable('a\r\n\r\nb\rc\n'), 'a\r\n\r\nb\r\nc\r\n');
});

/** Reads one encoded field back as a mail client does: unfolded, encoded-words decoded. */
function readField(field: string): { name: string; value: string } {
  const unfolded = field.replace(/\r\n(?=[ \t])/g, '');
  assert.ok(!/[\r\n]/.test(unfolded), 'no line break is left once unfolded: the field is one field');
  const colon = unfolded.indexOf(':');
  return { name: unfolded.slice(0, colon), value: decodeHeaderValue(unfolded.slice(colon + 1).replace(/^[ \t]+/, '')) };
}

/** A small seeded generator, so a failure names its case and reproduces. */
function randomTexts(seed: number, count: number): string[] {
  let s = seed;
  const next = () => (s = (s * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const alphabet = ['a', 'Z', ' ', ' ', '\t', '.', '=', '?', '_', '=?', '?=', '\r', '\n', '\r\n', 'é', 'ß', '€', '🚨', '你', '\u0000', '\u007f', 'x'.repeat(90), 'From '];
  return Array.from({ length: count }, () => Array.from({ length: Math.floor(next() * 120) }, () => alphabet[Math.floor(next() * alphabet.length)]).join(''));
}

test('any subject reads back as sent, CR and LF as a space, in lines of at most 78 characters none of them blank', () => {
  for (const [i, text] of randomTexts(7, 2000).entries()) {
    for (const name of ['Subject', 'X-Keyhold-Type']) {
      const field = headerField(name, text);
      const read = readField(field);
      assert.equal(read.value, text.replace(/[\r\n]+/g, ' '), `case ${i}: ${JSON.stringify(text)}`);
      assert.equal(read.name, name);
      for (const line of field.split('\r\n')) {
        assert.ok(line.length <= 78 && /^[\x20-\x7e\t]+$/.test(line), `case ${i}: ${JSON.stringify(line)}`);
        assert.ok(/[^ \t]/.test(line), `case ${i}: a folded line holds more than blanks`);
      }
    }
  }
});

test('any text reads back from quoted-printable as sent, every line break as one, in lines of at most 76 printable characters', () => {
  for (const [i, text] of randomTexts(11, 2000).entries()) {
    const encoded = quotedPrintable(text);
    assert.equal(decodeQuotedPrintable(encoded.replaceAll('\r\n', '\n')), text.replace(/\r\n|\r/g, '\n'), `case ${i}: ${JSON.stringify(text)}`);
    for (const line of encoded.split('\r\n')) assert.ok(line.length <= 76 && /^(?:[\x20-\x7e\t]*[\x21-\x7e])?$/.test(line), `case ${i}: ${JSON.stringify(line)}`);
  }
});

test('an address list is folded between addresses and never encoded; a name that is not a field name is refused', () => {
  const list = Array.from({ length: 9 }, (_, i) => `person-${i}@example.com`).join(', ');
  const field = headerField('To', list);
  assert.ok(!field.includes('=?'));
  assert.equal(readField(field).value, list);
  assert.ok(field.split('\r\n').every((l) => l.length <= 78));
  for (const name of ['Bad Name', 'X:Y', 'X\r\nBcc', '', 'Ü', 'X'.repeat(77)]) assert.throws(() => headerField(name, 'v'), /header name/);
});
