import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDestination, resolvePath } from './destination.ts';

const dest = parseDestination('http://127.0.0.1:8080/api', 'baseUrl');

test('a destination root keeps scheme, host, port and path prefix, and refuses credentials, queries and dot segments', () => {
  assert.deepEqual(dest, { origin: 'http://127.0.0.1:8080', prefix: '/api' });
  assert.deepEqual(parseDestination('https://pay.example.com/', 'baseUrl'), { origin: 'https://pay.example.com', prefix: '' });
  for (const [bad, why] of [
    ['ftp://x', /http or https/], ['https://user:pw@h', /credentials/], ['https://h/a?x=1', /query/], ['https://h/a#f', /fragment/],
    ['https://h/a/../b', /dot segments/], ['https://h/%2e%2e/x', /encoded separators/], ['not a url', /not a URL/], ['https://h\\x', /plain path|not a URL/],
  ] as const) {
    assert.throws(() => parseDestination(bad, 'baseUrl'), (err: { code?: string; message?: string }) => err.code === 'VALIDATION_FAILED' && why.test(err.message ?? ''), bad);
  }
});

test('credentials travel over https, or plain http to loopback only; metadata and link-local hosts are refused', () => {
  for (const ok of ['http://127.0.0.1:9000', 'http://localhost:8080/x', 'http://[::1]:8080', 'https://10.0.0.5/api', 'https://api.example.com']) {
    assert.doesNotThrow(() => parseDestination(ok, 'baseUrl'), ok);
  }
  assert.throws(() => parseDestination('http://api.example.com/v1', 'baseUrl'), /must use https \(plain http only to loopback\)/);
  assert.throws(() => parseDestination('http://127.evil.example/v1', 'baseUrl'), /must use https/, 'loopback by address, not by spelling');
  for (const metadata of [
    'https://169.254.169.254/latest/meta-data', 'https://metadata.google.internal/computeMetadata/v1', 'https://METADATA.google.internal.',
    'https://[fe80::1]/', 'https://[fd00:ec2::254]/', 'https://100.100.100.200/', 'https://[::ffff:169.254.169.254]/', 'https://0.0.0.0/',
  ]) {
    assert.throws(() => parseDestination(metadata, 'baseUrl'), /link-local or cloud metadata/, metadata);
  }
});

test('plain paths under the prefix resolve to that exact URL', () => {
  for (const [path, href] of [
    ['/v1/charges', 'http://127.0.0.1:8080/api/v1/charges'],
    ['', 'http://127.0.0.1:8080/api'],
    ['/users/%40me', 'http://127.0.0.1:8080/api/users/%40me'],
    ['/a%20b/c', 'http://127.0.0.1:8080/api/a%20b/c'],
  ] as const) {
    const r = resolvePath(dest, path);
    assert.ok(r.ok, path);
    assert.equal(r.url.href, href);
  }
});

test('every path that could leave the destination is refused with a stable reason', () => {
  const cases: Array<[string, string]> = [
    ['http://evil.example/x', 'absolute_url'],
    ['https://127.0.0.1:8081/api', 'absolute_url'],
    ['http://localhost:8080/api/x', 'absolute_url'],
    ['http://[::1]:8080/api', 'absolute_url'],
    ['//evil.example/x', 'protocol_relative'],
    ['//127.1:8080/api', 'protocol_relative'],
    ['evil.example/x', 'relative_path'],
    ['@evil.example/x', 'userinfo'],
    ['/x@evil.example', 'userinfo'],
    ['\\\\evil.example\\x', 'backslash'],
    ['/\\evil.example', 'backslash'],
    ['/..', 'dot_segment'],
    ['/v1/../../admin', 'dot_segment'],
    ['/./x', 'dot_segment'],
    ['/%2e%2e/admin', 'encoded_separator'],
    ['/%2E%2E%2Fadmin', 'encoded_separator'],
    ['/%252e%252e/admin', 'encoded_separator'],
    // Every depth, not the first four: a server (or a chain of them) decoding once more would read a dot segment.
    ['/%252525252e%252525252e/admin', 'encoded_separator'],
    ['/%25252525252525252f', 'encoded_separator'],
    ['/a%252525250d%252525250aX', 'control_character'],
    ['/a%2fb', 'encoded_separator'],
    ['/a%5cb', 'encoded_separator'],
    ['/a%00b', 'control_character'],
    ['/a%0d%0aHost:%20evil', 'control_character'],
    ['/a\r\nHost: evil', 'control_character'],
    ['/a%zz', 'bad_percent_encoding'],
    ['/a%c3', 'bad_percent_encoding'],
    ['/a?x=1', 'forbidden_character'],
    ['/a#frag', 'forbidden_character'],
    ['/{{ secrets.X }}', 'forbidden_character'],
    ['/ünicode', 'forbidden_character'],
    ['/' + 'a'.repeat(3000), 'path_too_long'],
  ];
  for (const [path, reason] of cases) {
    const r = resolvePath(dest, path);
    assert.equal(r.ok, false, `${JSON.stringify(path)} must be refused`);
    assert.equal(!r.ok && r.reason, reason, JSON.stringify(path));
  }
});

test('a root destination accepts any plain path but never another origin', () => {
  const root = parseDestination('http://127.0.0.1:8080', 'baseUrl');
  assert.ok(resolvePath(root, '/anything').ok);
  assert.equal(resolvePath(root, '//127.0.0.1:8081/x').ok, false);
});

test('an @ is allowed in the path of a plainly written URL (Teams webhooks), never before it', () => {
  const teams = 'https://contoso.webhook.office.com/webhookb2/1a2b@3c4d/IncomingWebhook/abc123/5e6f';
  assert.deepEqual(parseDestination(teams, 'baseUrl'), { origin: 'https://contoso.webhook.office.com', prefix: '/webhookb2/1a2b@3c4d/IncomingWebhook/abc123/5e6f' });
  for (const trick of ['https://u@evil.example/x@y', 'https:@evil.example/x@y', 'https:evil.example/x@y', 'https://@evil.example/x', 'HTTPS://good.example@evil.example/x']) {
    assert.throws(() => parseDestination(trick, 'baseUrl'), /credentials/, trick);
  }
});
