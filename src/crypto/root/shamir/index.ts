import { createHash } from 'node:crypto';
import { combine, split } from 'shamir-secret-sharing';
import { fail } from '../../../errors/index.ts';
import { constantTimeEqual } from '../../bytes.ts';

/** Share text format: "khs1." + base64url(share bytes). The prefix lets us reject pasted junk early. */
const PREFIX = 'khs1.';
const SHARE_BYTES = 33; // 32 key bytes + the x coordinate

/**
 * Splits the root key into `shares` shares, any `threshold` of which reconstruct it. One share of
 * one is the key itself (with x = 1): the library splits into two or more only.
 */
export async function splitRootKey(rootKey: Uint8Array, shares: number, threshold: number): Promise<string[]> {
  // The library checks for exactly Uint8Array (a Buffer subclass is refused), so copy, then wipe the copy.
  const bytes = new Uint8Array(rootKey);
  try {
    const parts = shares === 1 && threshold === 1 ? [Uint8Array.of(...bytes, 1)] : await split(bytes, shares, threshold);
    return parts.map((p) => PREFIX + Buffer.from(p).toString('base64url'));
  } finally {
    bytes.fill(0);
  }
}

/** Parses a share's text; a malformed share is INVALID_SHARE (it never reaches reconstruction). */
export function parseShare(text: string): Buffer {
  const trimmed = text.trim();
  if (!trimmed.startsWith(PREFIX)) fail('INVALID_SHARE', 'an unseal share starts with "khs1."');
  const bytes = Buffer.from(trimmed.slice(PREFIX.length), 'base64url');
  if (bytes.byteLength !== SHARE_BYTES) fail('INVALID_SHARE', 'an unseal share decodes to 33 bytes');
  return bytes;
}

/**
 * A share's fingerprint, stored at init so each share is checked as it is given: a mistyped,
 * tampered or foreign share never counts, so it can neither reset nor block anyone's progress.
 * Each share carries 256 random-looking bits, so its digest reveals nothing usable.
 */
export function shareDigest(share: Uint8Array): string {
  return createHash('sha256').update('keyhold/unseal-share/v1\u0000').update(share).digest('base64');
}

/** True when `share` is one of the shares `digests` were made from; compares against every digest, in constant time each. */
export function isKnownShare(share: Uint8Array, digests: readonly string[]): boolean {
  const mine = Buffer.from(shareDigest(share), 'base64');
  let known = false;
  for (const d of digests) known = constantTimeEqual(mine, Buffer.from(d, 'base64')) || known;
  return known;
}

/**
 * Reconstructs a candidate root key. The result is NOT verified here: the library returns a wrong
 * key from a tampered share, so the caller must check it against the stored key check value.
 */
export async function combineShares(shares: Buffer[]): Promise<Buffer> {
  const parts = shares.map((s) => new Uint8Array(s));
  try {
    if (parts.length === 1) return Buffer.from(parts[0]!.subarray(0, SHARE_BYTES - 1)); // one of one: the key itself
    const key = await combine(parts);
    return Buffer.from(key.buffer, key.byteOffset, key.byteLength); // the library's own array, not a copy left behind unwiped
  } finally {
    for (const p of parts) p.fill(0);
  }
}
