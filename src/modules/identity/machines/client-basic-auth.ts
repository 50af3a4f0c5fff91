import { isUtf8 } from 'node:buffer';
import { fail } from '../../../errors/index.ts';
import { decodeFormComponent } from '../../../http/form-body.ts';

export interface BasicClientCredentials {
  clientId: string;
  clientSecret: string;
}

/** Standard base64 (RFC 4648 §4) with its padding, as RFC 7617 sends it; nothing else is decoded. */
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** The same bounds the body schema puts on these fields. */
const MAX_CLIENT_ID = 128;
const MAX_CLIENT_SECRET = 256;

// Messages never quote the header or any part of it: it holds the secret.
const malformed = (why: string): never => fail('MALFORMED_BASIC_AUTH', `the Authorization: Basic header ${why}`);

function formDecode(raw: string, what: string): string {
  return decodeFormComponent(raw) ?? malformed(`has a broken percent-encoding in the ${what}`);
}

/** Whether the request authenticates the client with HTTP Basic (the scheme name is case-insensitive). */
export function usesBasicScheme(authorization: string | undefined): boolean {
  return authorization !== undefined && /^basic(?:\s|$)/i.test(authorization);
}

/**
 * Client credentials from an `Authorization: Basic` header (client_secret_basic, RFC 6749 §2.3.1:
 * base64 of urlencoded client_id ":" urlencoded client_secret), null when the request does not use
 * Basic. Other schemes are ignored, as the token endpoint always has. A Basic header that does
 * not decode to that shape is MALFORMED_BASIC_AUTH.
 * @example basicClientCredentials('Basic a2hjX2E6a2hjc19i') // { clientId: 'khc_a', clientSecret: 'khcs_b' }
 */
export function basicClientCredentials(authorization: string | undefined): BasicClientCredentials | null {
  if (!usesBasicScheme(authorization)) return null;
  const encoded = authorization!.slice('basic'.length).trim();
  if (encoded === '' || !BASE64.test(encoded)) malformed('is not base64');
  const decoded = Buffer.from(encoded, 'base64');
  if (!isUtf8(decoded)) malformed('does not decode to UTF-8');
  const text = decoded.toString('utf8');
  const colon = text.indexOf(':');
  if (colon === -1) malformed('has no ":" between client_id and client_secret');
  const clientId = formDecode(text.slice(0, colon), 'client_id');
  const clientSecret = formDecode(text.slice(colon + 1), 'client_secret');
  if (clientId.length === 0 || clientId.length > MAX_CLIENT_ID) malformed(`needs a client_id of 1 to ${MAX_CLIENT_ID} characters`);
  if (clientSecret.length > MAX_CLIENT_SECRET) malformed(`has a client_secret longer than ${MAX_CLIENT_SECRET} characters`);
  return { clientId, clientSecret };
}

/**
 * The token request body with the Basic credentials put where the body would carry them, so one
 * schema validates both ways of sending them. The client must use one way (RFC 6749 §2.3): a
 * client_secret in the body, or a client_id there that differs from the header's, is
 * MULTIPLE_CLIENT_AUTH. The same client_id in both places is accepted (some clients always send it).
 */
export function withBasicCredentials(body: unknown, credentials: BasicClientCredentials): unknown {
  // Anything but an object is left for the schema to refuse.
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return body;
  const fields = body as Record<string, unknown>;
  if (Object.hasOwn(fields, 'client_secret')) {
    fail('MULTIPLE_CLIENT_AUTH', 'the client is authenticated twice: send client_secret in the Authorization: Basic header or in the body, not both');
  }
  if (Object.hasOwn(fields, 'client_id') && fields.client_id !== credentials.clientId) {
    fail('MULTIPLE_CLIENT_AUTH', 'the body names a different client_id than the Authorization: Basic header');
  }
  return { ...fields, client_id: credentials.clientId, client_secret: credentials.clientSecret };
}
