import { createDecipheriv } from 'node:crypto';
import { dekAad, valueAad, WRAPPED_DEK_HEADER_BYTES, type VersionBinding } from '../../src/crypto/envelope.ts';

// The blob layout of src/crypto/aead.ts: [header][nonce:12][ciphertext][tag:16].
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

/**
 * The comparison point for KeyObject caching: src/crypto/envelope.ts openValue step for step
 * (same AAD, same layout), but every key handed to createDecipheriv as a raw Buffer. The bench
 * checks it opens what the real sealValue produced, so a layout drift fails loudly.
 */
export function openValueRawBuffer(kek: Buffer, binding: VersionBinding, ciphertext: Buffer, wrappedDek: Buffer): Buffer {
  const dek = open(kek, wrappedDek, dekAad(binding), WRAPPED_DEK_HEADER_BYTES);
  try {
    return open(dek, ciphertext, valueAad(binding), 1);
  } finally {
    dek.fill(0);
  }
}

function open(key: Buffer, blob: Buffer, aad: Buffer, headerBytes: number): Buffer {
  const nonce = blob.subarray(headerBytes, headerBytes + NONCE_BYTES);
  const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: TAG_BYTES });
  decipher.setAAD(Buffer.concat([blob.subarray(0, headerBytes), aad]));
  decipher.setAuthTag(blob.subarray(blob.byteLength - TAG_BYTES));
  return Buffer.concat([decipher.update(blob.subarray(headerBytes + NONCE_BYTES, blob.byteLength - TAG_BYTES)), decipher.final()]);
}
