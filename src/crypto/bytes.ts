import { randomBytes, timingSafeEqual } from 'node:crypto';

/** Compares two byte strings in time that depends only on their length, never `===` on secrets. */
export function constantTimeEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  return timingSafeEqual(a, b);
}

/** Cryptographically random bytes. */
export function randomKey(bytes = 32): Buffer {
  return randomBytes(bytes);
}

/** Overwrites a buffer we own so key material does not linger in memory we control. */
export function wipe(buf: Uint8Array | null | undefined): void {
  buf?.fill(0);
}

/**
 * Encodes fields unambiguously (length-prefixed) for use as AES-GCM additional data,
 * so ("ab","c") and ("a","bc") can never bind the same ciphertext.
 */
export function bindFields(...fields: Array<string | number>): Buffer {
  const parts: Buffer[] = [];
  for (const field of fields) {
    const bytes = Buffer.from(String(field), 'utf8');
    const len = Buffer.alloc(4);
    len.writeUInt32BE(bytes.byteLength);
    parts.push(len, bytes);
  }
  return Buffer.concat(parts);
}

/** A token or id-like random string, url-safe. */
export function randomToken(bytes = 32): string {
  return randomBytes(bytes).toString('base64url');
}
