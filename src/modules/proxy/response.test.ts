import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Destination } from '../connectors/destination.ts';
import { createRedactor } from '../redaction/redactor.ts';
import { createCallMasker, decodedAnswer, plainJsonEscapes, shapeResponse } from './response.ts';

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

test('a cut answer whose masks shortened it under the limit does not end in the part of a value the cut left', () => {
  // An API echoing the key in every record: masked, what was kept past the limit (the lookahead) moves under it,
  // and with it the record the read stopped inside.
  const value = 'sk_live_' + 'Q7wZ'.repeat(8);
  const full = Buffer.from(`{"items":[${Array.from({ length: 200 }, () => `{"key":"${value}"}`).join(',')}]}`);
  const tenant = createRedactor([value]);
  const call = createCallMasker([value]);
  for (let extra = 0; extra < 52; extra += 3) {
    const res = shapeResponse({ status: 200, headers: new Headers({ 'content-type': 'application/json' }), body: full.subarray(0, 2_000 + extra), truncated: true }, {
      url: new URL('https://api.example/v1/items'), text: full.subarray(0, 2_000 + extra).toString('utf8'), dest: { origin: 'https://api.example', prefix: '' } as Destination,
      mask: (text) => tenant.redact(call(text)), redactor: tenant, maxBytes: 1_000,
    });
    const text = String(res.body);
    assert.ok(text.length > 500, 'the answer up to the cut is kept');
    assert.ok(!text.includes('sk_'), `part of the value came back: ...${text.slice(-40)}`);
  }
});

test('an answer counts as decoded only when the client decoded every coding it names; an empty entry stops the client as an unknown coding does', () => {
  for (const [header, expected] of [
    [null, true], ['', true], ['identity', true], ['gzip', true], ['br, GZIP', true], ['x-gzip,deflate,zstd', true],
    ['gzip, compress', false], ['identity, gzip', false], ['gzip,', false], [', gzip', false], ['gzip,,br', false],
  ] as const) {
    assert.equal(decodedAnswer(header), expected, JSON.stringify(header));
  }
});

test('a credential the upstream echoes in a response header or a Set-Cookie comes back masked, never as sent', () => {
  const value = 'sk_live_' + 'Hd9x'.repeat(6);
  const call = createCallMasker([value]);
  const headers = new Headers({ 'content-type': 'text/plain', 'x-echo-auth': `Bearer ${value}`, 'www-authenticate': `Bearer realm="${value}"` });
  headers.append('set-cookie', `session=${value}; Path=/`);
  headers.append('set-cookie', 'theme=dark');
  const res = shapeResponse({ status: 200, headers, body: Buffer.from('ok'), truncated: false }, {
    url: new URL('https://api.example/v1/x'), text: 'ok', dest: { origin: 'https://api.example', prefix: '' } as Destination,
    mask: call, redactor: createRedactor([value]), maxBytes: 1_000,
  });
  assert.equal(res.headers['x-echo-auth'], 'Bearer [REDACTED]');
  assert.equal(res.headers['www-authenticate'], 'Bearer realm="[REDACTED]"');
  assert.equal(res.headers['set-cookie'], 'session=[REDACTED]; Path=/\ntheme=dark');
  assert.ok(!JSON.stringify(res.headers).includes(value.slice(8)), 'no part of the value in any header');
});

test('the call masker masks this call\'s values of 4 characters and more wherever they sit, not only as whole tokens', () => {
  // Under the tenant redactor's floor (6) a value is masked only as a whole token; inside other text only this masker finds it.
  const call = createCallMasker(['q7Zk', 'p9x2W', 'abc']);
  assert.equal(call('user=xq7Zky&pin=00p9x2W00'), 'user=x[REDACTED]y&pin=00[REDACTED]00');
  assert.equal(call('abcdef'), 'abcdef', 'a value under 4 characters is left to the tenant redactor');
});

test('a Location under the destination comes back as a path under it; one on the same origin outside its prefix, or elsewhere, only as the mask', () => {
  const dest = { origin: 'https://api.example', prefix: '/files' } as Destination;
  const locationOf = (value: string) => shapeResponse({ status: 302, headers: new Headers({ location: value }), body: Buffer.alloc(0), truncated: false }, {
    url: new URL('https://api.example/files/a'), text: '', dest, mask: (t) => t, redactor: createRedactor([]), maxBytes: 1_000,
  }).headers.location;
  assert.equal(locationOf('/files/b?x=1'), '/b?x=1');
  assert.equal(locationOf('https://api.example/files'), '');
  assert.equal(locationOf('/admin/export?sig=abc123'), '[REDACTED]', 'same origin, outside the prefix');
  assert.equal(locationOf('/filesystem/x'), '[REDACTED]', 'a prefix is a path segment, not a string prefix');
  assert.equal(locationOf('https://evil.example/files/b'), '[REDACTED]');
});
