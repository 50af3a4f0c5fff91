import { createHash, createHmac, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';

const ITERATIONS = 4096;

function keys(password: string, salt: Buffer, iterations: number) {
  // PostgreSQL applies SASLprep; Keyhold generates ASCII passwords, for which it is the identity.
  const salted = pbkdf2Sync(password.normalize('NFKC'), salt, iterations, 32, 'sha256');
  const clientKey = createHmac('sha256', salted).update('Client Key').digest();
  return { storedKey: createHash('sha256').update(clientKey).digest(), serverKey: createHmac('sha256', salted).update('Server Key').digest() };
}

/**
 * A SCRAM-SHA-256 verifier in PostgreSQL's stored format (RFC 5803). `ALTER ROLE ... PASSWORD
 * '<verifier>'` sets the password without the plaintext ever reaching the server's statement log.
 */
export function scramVerifier(password: string): string {
  const salt = randomBytes(16);
  const k = keys(password, salt, ITERATIONS);
  return `SCRAM-SHA-256$${ITERATIONS}:${salt.toString('base64')}$${k.storedKey.toString('base64')}:${k.serverKey.toString('base64')}`;
}

/** Whether `password` matches a stored verifier: what the server's SCRAM exchange would accept. */
export function scramMatches(verifier: string, password: string): boolean {
  const m = /^SCRAM-SHA-256\$(\d+):([^$]+)\$([^:]+):(.+)$/.exec(verifier);
  if (!m) return false;
  const k = keys(password, Buffer.from(m[2]!, 'base64'), Number(m[1]));
  const stored = Buffer.from(m[3]!, 'base64');
  return stored.length === k.storedKey.length && timingSafeEqual(stored, k.storedKey);
}
