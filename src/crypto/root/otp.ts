import { aeadOpen, aeadSeal, toKeyObject } from '../aead.ts';
import { fail } from '../../errors/index.ts';

/** Encoded root token text: "khr1." + the attempt's nonce + "." + base64url(AES-256-GCM blob). */
const PREFIX = 'khr1.';

const aadFor = (nonce: string) => Buffer.from(`keyhold/generate-root/v1\u0000${nonce}`);

/**
 * A root token generated from unseal shares goes back sealed under the one-time key (OTP) that
 * only whoever started the generation was shown: the share holders, and anyone who sees the last
 * answer, get a blob they cannot open. The attempt's nonce is bound in as additional data.
 */
export function encodeRootToken(otp: Uint8Array, nonce: string, token: string): string {
  return `${PREFIX}${nonce}.${aeadSeal(toKeyObject(otp), Buffer.from(token, 'utf8'), aadFor(nonce)).toString('base64url')}`;
}

/** Opens an encoded root token with the OTP shown at start (base64url). INVALID_OTP if either is wrong or altered. */
export function decodeRootToken(otpText: string, encoded: string): string {
  const otp = Buffer.from(otpText.trim(), 'base64url');
  const parts = encoded.trim().split('.');
  if (otp.byteLength !== 32 || parts.length !== 3 || `${parts[0]}.` !== PREFIX || !parts[1]) {
    fail('INVALID_OTP', 'the one-time key or the encoded token is malformed');
  }
  try {
    return aeadOpen(toKeyObject(otp), Buffer.from(parts[2]!, 'base64url'), aadFor(parts[1]!)).toString('utf8');
  } catch {
    return fail('INVALID_OTP', 'the one-time key does not open this encoded token (another attempt\'s key, or either was altered)');
  } finally {
    otp.fill(0);
  }
}
