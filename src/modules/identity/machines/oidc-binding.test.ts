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

test('JWKS URLs on link-local or cloud metadata addresses are refused as connector destinations are', () => {
  const metadata = [
    'https://169.254.169.254/latest/meta-data/jwks', 'https://169.254.170.2/jwks', 'https://metadata.google.internal/jwks',
    'https://METADATA.GOOGLE.INTERNAL./jwks', 'https://[fe80::1]/jwks', 'https://[fd00:ec2::254]/jwks', 'https://[::ffff:169.254.169.254]/jwks',
    'https://100.100.100.200/jwks', 'https://0.0.0.0/jwks', 'http://169.254.169.254/jwks',
  ];
  for (const url of metadata) {
    assert.throws(() => assertJwksUrl(url), (err: { code?: string }) => err.code === 'DESTINATION_FORBIDDEN', url);
  }
});

test('a binding must name who may use it: a subject or at least one claim, not just issuer and audience', () => {
  const base = { issuer: 'https://token.actions.githubusercontent.com', jwksUrl: 'https://token.actions.githubusercontent.com/.well-known/jwks', audience: 'keyhold' };
  for (const unbound of [base, { ...base, claims: {} }]) {
    assert.throws(() => parseOidcBinding(unbound), (err: { code?: string; message?: string }) => err.code === 'VALIDATION_FAILED' && /oidc\.subject/.test(err.message ?? ''));
  }
  assert.equal(parseOidcBinding({ ...base, subject: 'repo:acme/app:ref:refs/heads/main' }).subject, 'repo:acme/app:ref:refs/heads/main');
  assert.deepEqual(parseOidcBinding({ ...base, claims: { repository: 'acme/app' } }).subject, null);
});

test('bound claims are a small JSON object of named values', () => {
  const base = { issuer: 'https://idp.example', jwksUrl: 'https://idp.example/jwks', audience: 'keyhold', subject: 'svc' };
  assert.deepEqual(parseOidcBinding({ ...base, claims: { ref: 'main', n: 1, ok: true, list: ['a'] } }).claims, { ref: 'main', n: 1, ok: true, list: ['a'] });
  const tooMany = Object.fromEntries(Array.from({ length: 33 }, (_, i) => [`c${i}`, i]));
  for (const claims of [tooMany, { '': 'x' }, { big: 'x'.repeat(5000) }, ['a'] as unknown as Record<string, unknown>]) {
    assert.throws(() => parseOidcBinding({ ...base, claims }), (err: { code?: string }) => err.code === 'VALIDATION_FAILED');
  }
});

test('the claims type is string unless glob is asked for; nothing else, and not the legacy exact, can be chosen', () => {
  const base = { issuer: 'https://idp.example', jwksUrl: 'https://idp.example/jwks', audience: 'keyhold', claims: { sub: 'repo:acme/app:*' } };
  assert.equal(parseOidcBinding(base).boundClaimsType, 'string');
  assert.equal(parseOidcBinding({ ...base, boundClaimsType: 'glob' }).boundClaimsType, 'glob');
  for (const boundClaimsType of ['exact', 'regex', 'GLOB', '']) {
    assert.throws(() => parseOidcBinding({ ...base, boundClaimsType }), (err: { code?: string }) => err.code === 'VALIDATION_FAILED', boundClaimsType);
  }
});

test('a bound value is a scalar or a short non-empty list of them, a string pattern under glob, and never only stars', () => {
  const base = { issuer: 'https://idp.example', jwksUrl: 'https://idp.example/jwks', audience: 'keyhold' };
  const ok: Array<[string, Record<string, unknown>]> = [
    ['string', { ref: ['a', 'b'], n: [1, 2], ok: false }], ['glob', { sub: ['repo:a/b:*', 'repo:a/c:ref:refs/heads/main'], ref: '*/main' }],
    ['string', { ref: '*' }], ['glob', { ref: '' }], ['string', { ref: Array.from({ length: 64 }, (_, i) => `r${i}`) }],
  ];
  for (const [boundClaimsType, claims] of ok) assert.deepEqual(parseOidcBinding({ ...base, boundClaimsType, claims }).claims, claims);
  const refused: Array<[string, Record<string, unknown>, RegExp]> = [
    ['string', { ref: [] }, /empty list/], ['glob', { ref: [] }, /empty list/],
    ['string', { ref: Array.from({ length: 65 }, (_, i) => `r${i}`) }, /at most 64/],
    ['string', { ref: null }, /string, number or boolean/], ['string', { ref: { a: 1 } }, /string, number or boolean/], ['string', { ref: [['a']] }, /string, number or boolean/],
    ['glob', { n: 1 }, /string pattern/], ['glob', { ok: [true] }, /string pattern/], ['glob', { sub: '*' }, /stars alone/], ['glob', { sub: ['repo:a/b:*', '***'] }, /stars alone/],
  ];
  for (const [boundClaimsType, claims, message] of refused) {
    assert.throws(() => parseOidcBinding({ ...base, boundClaimsType, claims }),
      (err: { code?: string; message?: string }) => err.code === 'VALIDATION_FAILED' && message.test(err.message ?? ''), JSON.stringify(claims));
  }
});

test('claim names that are Object.prototype members bind like any other; a claim named __proto__ is refused, never dropped', () => {
  const base = { issuer: 'https://idp.example', jwksUrl: 'https://idp.example/jwks', audience: 'keyhold' };
  const odd = JSON.parse('{"constructor":"acme","toString":"x","hasOwnProperty":1}') as Record<string, unknown>;
  assert.deepEqual(Object.entries(parseOidcBinding({ ...base, claims: odd }).claims), [['constructor', 'acme'], ['toString', 'x'], ['hasOwnProperty', 1]]);
  // JSON.parse (as a stored row, or any reader but the HTTP body parser) makes "__proto__" an own key.
  for (const text of ['{"__proto__":"x"}', '{"repository":"acme/app","__proto__":["a"]}']) {
    assert.throws(() => parseOidcBinding({ ...base, claims: JSON.parse(text) as Record<string, unknown> }),
      (err: { code?: string; message?: string }) => err.code === 'VALIDATION_FAILED' && /oidc\.claims may not bind a claim named __proto__/.test(err.message ?? ''), text);
  }
});
