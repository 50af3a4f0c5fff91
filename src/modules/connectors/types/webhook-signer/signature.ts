import { createHmac } from 'node:crypto';

/**
 * The outgoing webhook signature, Stripe's scheme: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
 * Several secrets give several `v1=` entries (an overlap window during rotation: a receiver holding either verifies).
 * @example signatureHeader('{"id":1}', ['whsec_...'], 1767225600) // "t=1767225600,v1=5f0c..."
 */
export function signatureHeader(body: Uint8Array | string, secrets: readonly string[], timestamp: number): string {
  const payload = Buffer.concat([Buffer.from(`${timestamp}.`, 'utf8'), typeof body === 'string' ? Buffer.from(body, 'utf8') : Buffer.from(body)]);
  return [`t=${timestamp}`, ...secrets.map((s) => `v1=${createHmac('sha256', s).update(payload).digest('hex')}`)].join(',');
}
