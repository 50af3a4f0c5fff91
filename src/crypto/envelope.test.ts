import { test } from 'node:test';
import assert from 'node:assert/strict';
import { aeadOpen, aeadSeal, toKeyObject } from './aead.ts';
import { bindFields, randomKey } from './bytes.ts';
import { kekVersionOf, openValue, rewrapDek, sealValue, unwrapDek, valueAad, WRAPPED_DEK_HEADER_BYTES, type VersionBinding } from './envelope.ts';
import { KeyholdError } from '../errors/index.ts';

const kek = toKeyObject(randomKey());
const binding: VersionBinding = { tenantId: 't1', environmentId: 'e-prod', secretId: 's1', version: 3 };
const plaintext = Buffer.from('sk_live_0123456789abcdef');

function assertIntegrityFailure(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof KeyholdError && err.code === 'INTEGRITY_FAILURE');
}

test('a sealed value opens with the same KEK and binding', () => {
  const sealed = sealValue(kek, 7, binding, plaintext);
  assert.equal(kekVersionOf(sealed.wrappedDek), 7);
  assert.deepEqual(openValue(kek, binding, sealed.ciphertext, sealed.wrappedDek), plaintext);
  assert.equal(sealed.ciphertext.includes(plaintext), false);
});

test('every version gets a fresh data key and nonce', () => {
  const a = sealValue(kek, 1, binding, plaintext);
  const b = sealValue(kek, 1, binding, plaintext);
  assert.notDeepEqual(a.ciphertext, b.ciphertext);
  assert.notDeepEqual(a.wrappedDek, b.wrappedDek);
});

const moves: Array<[string, Partial<VersionBinding>]> = [
  ['another tenant', { tenantId: 't2' }],
  ['another environment', { environmentId: 'e-staging' }],
  ['another secret', { secretId: 's2' }],
  ['another version', { version: 4 }],
];
for (const [where, change] of moves) {
  test(`a ciphertext moved to ${where} fails to decrypt`, () => {
    const sealed = sealValue(kek, 1, binding, plaintext);
    assertIntegrityFailure(() => openValue(kek, { ...binding, ...change }, sealed.ciphertext, sealed.wrappedDek));
  });
}

test('a ciphertext opened with another tenant KEK fails', () => {
  const sealed = sealValue(kek, 1, binding, plaintext);
  assertIntegrityFailure(() => openValue(toKeyObject(randomKey()), binding, sealed.ciphertext, sealed.wrappedDek));
});

test('a flipped bit anywhere in the value ciphertext (alg, nonce, body, tag) fails', () => {
  const sealed = sealValue(kek, 1, binding, plaintext);
  for (let i = 0; i < sealed.ciphertext.length; i++) {
    const tampered = Buffer.from(sealed.ciphertext);
    tampered[i]! ^= 0x01;
    assertIntegrityFailure(() => openValue(kek, binding, tampered, sealed.wrappedDek));
  }
});

test('a flipped bit anywhere in the wrapped DEK (alg, key id, nonce, body, tag) fails', () => {
  const sealed = sealValue(kek, 1, binding, plaintext);
  for (let i = 0; i < sealed.wrappedDek.length; i++) {
    const tampered = Buffer.from(sealed.wrappedDek);
    tampered[i]! ^= 0x80;
    assertIntegrityFailure(() => openValue(kek, binding, sealed.ciphertext, tampered));
  }
});

test('truncated or empty blobs fail cleanly', () => {
  const sealed = sealValue(kek, 1, binding, plaintext);
  assertIntegrityFailure(() => openValue(kek, binding, sealed.ciphertext.subarray(0, 10), sealed.wrappedDek));
  assertIntegrityFailure(() => openValue(kek, binding, Buffer.alloc(0), sealed.wrappedDek));
  assertIntegrityFailure(() => openValue(kek, binding, sealed.ciphertext, sealed.wrappedDek.subarray(0, WRAPPED_DEK_HEADER_BYTES)));
});

test('swapping data keys between two versions fails both ways', () => {
  const a = sealValue(kek, 1, binding, plaintext);
  const b = sealValue(kek, 1, { ...binding, version: 4 }, Buffer.from('other'));
  assertIntegrityFailure(() => openValue(kek, binding, a.ciphertext, b.wrappedDek));
});

test('rewrap moves the DEK to a new KEK without touching the value ciphertext', () => {
  const kek2 = toKeyObject(randomKey());
  const sealed = sealValue(kek, 1, binding, plaintext);
  const rewrapped = rewrapDek(kek, kek2, 2, binding, sealed.wrappedDek);
  assert.equal(kekVersionOf(rewrapped), 2);
  assert.deepEqual(openValue(kek2, binding, sealed.ciphertext, rewrapped), plaintext);
  assertIntegrityFailure(() => openValue(kek, binding, sealed.ciphertext, rewrapped));
});

test('the KEK version in the header is authenticated: relabelling it fails', () => {
  const sealed = sealValue(kek, 1, binding, plaintext);
  const relabelled = Buffer.from(sealed.wrappedDek);
  relabelled.writeUInt32BE(2, 1);
  assertIntegrityFailure(() => openValue(kek, binding, sealed.ciphertext, relabelled));
});

// Each layer binds the location on its own, so neither rests on the other: a wrapped data key
// moved elsewhere does not unwrap (nor can it be rewrapped there), and a value does not open elsewhere even with its own data key.
for (const [where, change] of moves) {
  test(`a wrapped data key alone, moved to ${where}, does not unwrap or rewrap; a value under the right data key does not open there either`, () => {
    const sealed = sealValue(kek, 1, binding, plaintext);
    const moved = { ...binding, ...change };
    assertIntegrityFailure(() => unwrapDek(kek, moved, sealed.wrappedDek));
    assertIntegrityFailure(() => rewrapDek(kek, toKeyObject(randomKey()), 2, moved, sealed.wrappedDek));
    const dek = toKeyObject(unwrapDek(kek, binding, sealed.wrappedDek));
    const value = aeadSeal(dek, plaintext, valueAad(binding));
    assert.deepEqual(aeadOpen(dek, value, valueAad(binding)), plaintext);
    assertIntegrityFailure(() => aeadOpen(dek, value, valueAad(moved)));
  });
}

test('bound fields cannot slide into each other: ("t1", "0abc") and ("t10", "abc") bind different data', () => {
  assert.notDeepEqual(bindFields('keyhold/value/v1', 't1', '0abc'), bindFields('keyhold/value/v1', 't10', 'abc'));
  assert.notDeepEqual(bindFields('ab', 'c'), bindFields('a', 'bc'));
  const sealed = sealValue(kek, 1, { ...binding, tenantId: 't1', environmentId: '0abc' }, plaintext);
  assertIntegrityFailure(() => openValue(kek, { ...binding, tenantId: 't10', environmentId: 'abc' }, sealed.ciphertext, sealed.wrappedDek));
});
