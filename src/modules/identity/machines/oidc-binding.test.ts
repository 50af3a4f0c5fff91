import { test } from 'node:test';
import assert from 'node:assert/strict';
import { assertJwksUrl, parseOidcBinding } from './oidc-binding.ts';

test('JWKS URLs must be https, except plain http on loopback addresses', () => {
  const allowed = [
    'https://token.actions.githubusercontent.com/.well-known/jwks', 'https://10.0.0.5/jwks', 'http://127.0.0.1:8080/jwks.json',
    'http://127.255.0.9/jwks', 'http://localhost:3000/jwks', 'http://LOCALHOST/jwks', 'http://[::1]:9000/jwks', 'http://[0:0:0:0:0:0:0:1]/jwks',
  ];
  for (const url of allowed) assert.doesNotThrow(() => assertJwksUrl(url), url);
  const refused = [
    'http://idp.example/jwks', 'http://127.evil.example/jwks', 'http://localhost.evil.example/jwks', 'http://128.0.0.1/jwks',
    'http://[::2]/jwks', 'http://10.0.0.5/jwks', 'ftp://127.0.0.1/jwks', 'file:///etc/jwks', 'jwks.json', '',
    'https://user:pass@idp.example/jwks',
  ];
  for (const url of refused) {
    assert.throws(() => assertJwksUrl(url), (err: { code?: string }) => err.code === 'VALIDATION_FAILED', url);
  }
});

test('bound claims are a small JSON object of named values', () => {
  const base = { issuer: 'https://idp.example', jwksUrl: 'https://idp.example/jwks', audience: 'keyhold' };
  assert.deepEqual(parseOidcBinding({ ...base, claims: { ref: 'main', n: 1, ok: true, list: ['a'] } }).claims, { ref: 'main', n: 1, ok: true, list: ['a'] });
  assert.equal(parseOidcBinding(base).subject, null);
  const tooMany = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`c${i}`, i]));
  for (const claims of [tooMany, { '': 'x' }, { big: 'x'.repeat(5000) }, ['a'] as unknown as Record<string, unknown>]) {
    assert.throws(() => parseOidcBinding({ ...base, claims }), (err: { code?: string }) => err.code === 'VALIDATION_FAILED');
  }
});
