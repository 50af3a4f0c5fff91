import { createHash, createHmac } from 'node:crypto';

/**
 * The canonical string of an HMAC-signed HTTP request, one field per line:
 * `METHOD \n path?query \n unix-seconds \n hex(SHA-256(body))` (an empty body hashes the empty string).
 * @example canonicalRequest('POST', '/v1/charges?x=1', 1767225600, body)
 */
export function canonicalRequest(method: string, pathAndQuery: string, timestamp: number, body: Uint8Array | undefined): string {
  const bodyHash = createHash('sha256').update(body ?? new Uint8Array()).digest('hex');
  return `${method.toUpperCase()}\n${pathAndQuery}\n${timestamp}\n${bodyHash}`;
}

/** Hex HMAC-SHA256 of the canonical string under the signing key. */
export function signRequest(key: string, method: string, pathAndQuery: string, timestamp: number, body: Uint8Array | undefined): string {
  return createHmac('sha256', key).update(canonicalRequest(method, pathAndQuery, timestamp, body)).digest('hex');
}
