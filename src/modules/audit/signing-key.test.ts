import { test } from 'node:test';
import assert from 'node:assert/strict';
import { toKeyObject } from '../../crypto/aead.ts';
import { randomKey } from '../../crypto/bytes.ts';
import { deriveSigningKey } from './checkpoints.ts';

test('deriving the checkpoint signing key leaves no copy of its private seed in buffers it made', () => {
  const root = toKeyObject(randomKey());
  const made: Buffer[] = [];
  const concat = Buffer.concat;
  Buffer.concat = ((list: readonly Uint8Array[], length?: number) => {
    const out = concat(list, length);
    made.push(out);
    return out;
  }) as typeof Buffer.concat;
  try {
    deriveSigningKey(root);
  } finally {
    Buffer.concat = concat;
  }
  assert.ok(made.length > 0);
  // The DER prefix may stay; the 32 seed bytes after it must not.
  for (const b of made) assert.ok(b.subarray(b.length - 32).every((x) => x === 0), 'the seed was wiped');
});
