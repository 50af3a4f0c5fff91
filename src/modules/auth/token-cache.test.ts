import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Principal } from '../identity/principal.ts';
import { createTokenCache } from './token-cache.ts';

const machine = (id: string, credentialId: string): Principal =>
  ({ type: 'machine', id, tenantId: 't', name: id, credentialId, mfaAt: null, expiresAt: null });

test('one token, or every token of one identity, is dropped; the others stay', () => {
  const cache = createTokenCache();
  cache.set('h1', machine('m1', 'tok1'), 10);
  cache.set('h2', machine('m1', 'tok2'), 10);
  cache.set('h3', machine('m2', 'tok3'), 10);
  cache.forgetCredential('tok1');
  assert.deepEqual(['h1', 'h2', 'h3'].map((h) => cache.get(h)?.principal.credentialId), [undefined, 'tok2', 'tok3']);
  cache.forgetPrincipal('m1');
  assert.deepEqual(['h2', 'h3'].map((h) => cache.get(h)?.principal.credentialId), [undefined, 'tok3']);
  cache.forgetPrincipal('m-unknown');
  cache.forgetCredential('tok-unknown');
  assert.equal(cache.size, 1);
});

test('an entry replaced or deleted leaves nothing behind in the indexes that a later forget could hit', () => {
  const cache = createTokenCache();
  cache.set('h1', machine('m1', 'tok1'), 10);
  // The same hash read again, now answering for another identity (cannot happen with real hashes; the indexes must still follow).
  cache.set('h1', machine('m2', 'tok1'), 20);
  cache.forgetPrincipal('m1');
  assert.equal(cache.get('h1')?.until, 20, 'the old identity no longer reaches the entry');
  cache.delete('h1');
  cache.set('h9', machine('m2', 'tok9'), 10);
  cache.forgetCredential('tok1');
  assert.ok(cache.get('h9'), 'a deleted entry\'s credential id does not reach another entry');
  cache.forgetPrincipal('m2');
  assert.equal(cache.size, 0);
});

test('the cache is bounded: past 10,000 entries it starts again empty', () => {
  const cache = createTokenCache();
  for (let i = 0; i < 10_000; i++) cache.set(`h${i}`, machine(`m${i % 7}`, `tok${i}`), 10);
  assert.equal(cache.size, 10_000);
  cache.set('h-next', machine('m0', 'tok-next'), 10);
  assert.equal(cache.size, 1);
  cache.forgetPrincipal('m0');
  assert.equal(cache.size, 0);
});
