import { createHmac, type KeyObject } from 'node:crypto';
import { aeadOpen, aeadSeal, toKeyObject } from '../aead.ts';
import { bindFields, wipe } from '../bytes.ts';

const CHECK_PLAINTEXT = Buffer.from('keyhold root key check v1');
const CHECK_AAD = bindFields('keyhold/root-check/v1');

/**
 * A key for one purpose, derived from the root key: HMAC-SHA256(root, "keyhold/<purpose>/v1"). It
 * exists only while unsealed, is never stored, and no database writer can replace it. The caller
 * wipes the bytes once it has made its key from them.
 */
export function deriveFromRoot(root: KeyObject, purpose: 'audit-event-mac' | 'audit-identifiers' | 'audit-checkpoint-signing' | 'secret-list-cursor'): Buffer {
  return createHmac('sha256', root).update(`keyhold/${purpose}/v1`).digest();
}

/**
 * A key check value for the root key: an AES-GCM blob that only the right key opens.
 * Needed because Shamir reconstruction from a wrong or tampered share silently yields a wrong key.
 */
export function makeRootCheck(root: KeyObject): Buffer {
  return aeadSeal(root, CHECK_PLAINTEXT, CHECK_AAD);
}

/** True when `candidate` is the root key that produced `check`. */
export function verifyRootCheck(candidate: KeyObject, check: Uint8Array): boolean {
  try {
    return aeadOpen(candidate, check, CHECK_AAD).equals(CHECK_PLAINTEXT);
  } catch {
    return false;
  }
}

/**
 * The root key made from `candidate` bytes (reconstructed from shares, or read from the dev key
 * file), or null when it is not the key that produced `check`. The bytes are wiped either way.
 */
export function verifiedRootKey(candidate: Buffer, check: Uint8Array): KeyObject | null {
  try {
    const key = toKeyObject(candidate);
    return verifyRootCheck(key, check) ? key : null;
  } finally {
    wipe(candidate);
  }
}

function kekAad(tenantId: string, version: number): Buffer {
  return bindFields('keyhold/kek/v1', tenantId, version);
}

/** Wraps a tenant KEK under the root key, bound to its tenant and version. */
export function wrapKek(root: KeyObject, tenantId: string, version: number, kek: Uint8Array): Buffer {
  return aeadSeal(root, kek, kekAad(tenantId, version));
}

export function unwrapKek(root: KeyObject, tenantId: string, version: number, wrapped: Uint8Array): Buffer {
  return aeadOpen(root, wrapped, kekAad(tenantId, version));
}
