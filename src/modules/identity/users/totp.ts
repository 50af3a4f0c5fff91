import { generateSecret, generateURI, verifySync } from 'otplib';
import type { VersionBinding } from '../../../crypto/envelope.ts';

/** RFC 6238 as every authenticator app does it: SHA-1, 6 digits, 30-second steps. */
export const TOTP_PERIOD_S = 30;
const CODE = /^\d{6}$/;

/** A fresh 160-bit TOTP secret, base32 (what authenticator apps take). */
export function newTotpSecret(): string {
  return generateSecret({ length: 20 });
}

/** The otpauth:// URI an authenticator app scans, labelled "username@tenant" under the Keyhold issuer. */
export function otpauthUri(secret: string, tenantName: string, username: string): string {
  return generateURI({ issuer: 'Keyhold', label: `${username}@${tenantName}`, secret, period: TOTP_PERIOD_S });
}

/**
 * The time step a code belongs to, if it is valid for the current step or one either side of it
 * (clock drift); null otherwise. Replay is the caller's business: it must refuse a step at or
 * below the last one it accepted.
 */
export function matchTotpStep(secret: string, code: string, nowMs: number): number | null {
  if (!CODE.test(code)) return null;
  try {
    const result = verifySync({ secret, token: code, epoch: Math.floor(nowMs / 1000), period: TOTP_PERIOD_S, epochTolerance: TOTP_PERIOD_S });
    return result.valid && 'timeStep' in result ? result.timeStep : null;
  } catch {
    return null;
  }
}

/** What the TOTP secret is sealed to: its tenant and user, so a row copied to another user fails to open. */
export function totpBinding(tenantId: string, userId: string): VersionBinding {
  return { tenantId, environmentId: 'totp', secretId: userId, version: 1 };
}

/**
 * The stored form of a sealed TOTP secret (users.totp_secret), one blob for the two envelope parts:
 * `[format 0x01][ciphertext length: u32 BE][ciphertext][wrapped DEK]`. The wrapped DEK carries its
 * own header (algorithm, KEK version), so KEK rotation and rewrap can read it like any other.
 */
export function encodeSealedTotp(ciphertext: Uint8Array, wrappedDek: Uint8Array): Buffer {
  const header = Buffer.alloc(5);
  header[0] = 0x01;
  header.writeUInt32BE(ciphertext.byteLength, 1);
  return Buffer.concat([header, ciphertext, wrappedDek]);
}

/** Splits a stored blob back into its parts; null when it is not in the one known format. */
export function decodeSealedTotp(blob: Uint8Array): { ciphertext: Buffer; wrappedDek: Buffer } | null {
  const buf = Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (buf.byteLength < 5 || buf[0] !== 0x01) return null;
  const length = buf.readUInt32BE(1);
  if (5 + length >= buf.byteLength) return null;
  return { ciphertext: buf.subarray(5, 5 + length), wrappedDek: buf.subarray(5 + length) };
}

/**
 * Whether two stored blobs seal the same secret: the same ciphertext, its data key wrapped under the
 * same KEK or another (a rewrap changes only the wrapped key). A re-enrolment seals a new one.
 */
export function sameSealedSecret(a: Uint8Array, b: Uint8Array): boolean {
  const x = decodeSealedTotp(a);
  const y = decodeSealedTotp(b);
  return x !== null && y !== null && x.ciphertext.equals(y.ciphertext);
}
