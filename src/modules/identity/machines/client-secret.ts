import { createHash } from 'node:crypto';
import { constantTimeEqual, randomToken } from '../../../crypto/bytes.ts';

export const CLIENT_ID_PREFIX = 'khc_';
export const CLIENT_SECRET_PREFIX = 'khcs_';

/** A public client id: random, so it reveals neither the tenant nor how many identities exist. */
export function newClientId(): string {
  return CLIENT_ID_PREFIX + randomToken(16);
}

/** A client secret: 256 random bits, returned once and stored only as its hash. */
export function newClientSecret(): string {
  return CLIENT_SECRET_PREFIX + randomToken(32);
}

/** SHA-256 is enough for 256-bit random secrets: there is nothing to guess, so nothing to slow down. */
export function hashClientSecret(secret: string): string {
  return createHash('sha256').update(secret, 'utf8').digest('base64url');
}

// Compared against when the client is unknown, so that path does the same work as a wrong secret.
const DUMMY_HASH = hashClientSecret(CLIENT_SECRET_PREFIX + 'no-such-client');

/** Whether a presented secret matches a stored hash, in constant time; a missing hash never matches. */
export function clientSecretMatches(presented: string, storedHash: string | null): boolean {
  const given = Buffer.from(hashClientSecret(presented), 'base64url');
  const stored = Buffer.from(storedHash ?? DUMMY_HASH, 'base64url');
  return constantTimeEqual(given, stored) && storedHash !== null;
}
