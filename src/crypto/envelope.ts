import { ALG_AES_256_GCM, aeadOpen, aeadSeal, toKeyObject } from './aead.ts';
import { bindFields, randomKey, wipe } from './bytes.ts';
import type { KeyObject } from 'node:crypto';

/** Where a secret version lives; bound into both the value and the wrapped data key as AAD. */
export interface VersionBinding {
  tenantId: string;
  environmentId: string;
  secretId: string;
  version: number;
}

export function valueAad(b: VersionBinding): Buffer {
  return bindFields('keyhold/value/v1', b.tenantId, b.environmentId, b.secretId, b.version);
}

export function dekAad(b: VersionBinding): Buffer {
  return bindFields('keyhold/dek/v1', b.tenantId, b.environmentId, b.secretId, b.version);
}

/** Wrapped DEK header: [alg:1][kek version:u32be]. The KEK version is the key id and is authenticated. */
export const WRAPPED_DEK_HEADER_BYTES = 5;

export function wrappedDekHeader(kekVersion: number): Buffer {
  const header = Buffer.alloc(WRAPPED_DEK_HEADER_BYTES);
  header[0] = ALG_AES_256_GCM;
  header.writeUInt32BE(kekVersion, 1);
  return header;
}

/** Reads the KEK version (key id) out of a wrapped DEK without decrypting anything. */
export function kekVersionOf(wrappedDek: Uint8Array): number {
  if (wrappedDek.byteLength < WRAPPED_DEK_HEADER_BYTES) return -1;
  return Buffer.from(wrappedDek.buffer, wrappedDek.byteOffset, wrappedDek.byteLength).readUInt32BE(1);
}

export interface SealedValue {
  ciphertext: Buffer;
  wrappedDek: Buffer;
  kekVersion: number;
}

/** Seals a value under a fresh DEK, and wraps the DEK under the given KEK. */
export function sealValue(kek: KeyObject, kekVersion: number, binding: VersionBinding, plaintext: Uint8Array): SealedValue {
  const dekBytes = randomKey(32);
  try {
    const ciphertext = aeadSeal(toKeyObject(dekBytes), plaintext, valueAad(binding));
    const wrappedDek = aeadSeal(kek, dekBytes, dekAad(binding), wrappedDekHeader(kekVersion));
    return { ciphertext, wrappedDek, kekVersion };
  } finally {
    wipe(dekBytes);
  }
}

/** Unwraps the DEK with the KEK and opens the value; either step failing is INTEGRITY_FAILURE. */
export function openValue(kek: KeyObject, binding: VersionBinding, ciphertext: Uint8Array, wrappedDek: Uint8Array): Buffer {
  const dekBytes = unwrapDek(kek, binding, wrappedDek);
  try {
    return aeadOpen(toKeyObject(dekBytes), ciphertext, valueAad(binding));
  } finally {
    wipe(dekBytes);
  }
}

export function unwrapDek(kek: KeyObject, binding: VersionBinding, wrappedDek: Uint8Array): Buffer {
  return aeadOpen(kek, wrappedDek, dekAad(binding), WRAPPED_DEK_HEADER_BYTES);
}

/** Rewraps a DEK from one KEK to another; the value ciphertext is untouched. */
export function rewrapDek(from: KeyObject, to: KeyObject, toVersion: number, binding: VersionBinding, wrappedDek: Uint8Array): Buffer {
  const dekBytes = unwrapDek(from, binding, wrappedDek);
  try {
    return aeadSeal(to, dekBytes, dekAad(binding), wrappedDekHeader(toVersion));
  } finally {
    wipe(dekBytes);
  }
}
