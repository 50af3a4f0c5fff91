import type { FastifyReply } from 'fastify';
import { Type } from 'typebox';
import type { ErrorCode } from '../../../errors/index.ts';
import { sendError, type ErrorBody } from '../../../http/errors.ts';
import { JWT_BEARER_GRANT } from './types.ts';

/** RFC 6749 §5.2 error codes (with RFC 7523 §3.1's use of invalid_grant for a bad assertion). */
export type OAuthErrorCode = 'invalid_request' | 'invalid_client' | 'invalid_grant' | 'unsupported_grant_type' | 'temporarily_unavailable' | 'server_error';

/**
 * A token endpoint's error body as OAuth 2.0 clients parse it: `error` is a string (RFC 6749 §5.2).
 * Keyhold's own code and request id ride along as extension members, so the catalogue still
 * names every refusal and Keyhold's CLI can show it.
 */
export interface OAuthErrorBody {
  error: OAuthErrorCode;
  error_description: string;
  code: ErrorCode;
  request_id: string;
}

/** The body above, for the route's schema (serialization and the OpenAPI document). */
export const OAuthErrorResponse = Type.Object({
  error: Type.String({ description: 'RFC 6749 §5.2: invalid_request, invalid_client, invalid_grant, unsupported_grant_type, temporarily_unavailable or server_error' }),
  error_description: Type.String(),
  code: Type.String({ description: 'The Keyhold error code (docs/errors.md)' }),
  request_id: Type.String(),
}, { description: 'An OAuth 2.0 error (RFC 6749 §5.2) with the Keyhold code' });

interface ValidationIssue { instancePath?: string }

/** Which RFC error a catalogued refusal is, given the grant the client asked for. */
export function oauthErrorOf(code: ErrorCode, grantType: unknown, validation: readonly ValidationIssue[] | undefined): OAuthErrorCode {
  switch (code) {
    // RFC 7523 §3.1: an assertion that is not valid is invalid_grant; a client secret that is not is invalid_client.
    case 'INVALID_CREDENTIALS': return grantType === JWT_BEARER_GRANT ? 'invalid_grant' : 'invalid_client';
    case 'VALIDATION_FAILED':
      // Only a grant_type that is present but not one we take; a missing one is a malformed request.
      return validation?.some((i) => i.instancePath === '/grant_type') ? 'unsupported_grant_type' : 'invalid_request';
    case 'RATE_LIMITED':
    case 'SEALED':
      return 'temporarily_unavailable';
    case 'INTERNAL': return 'server_error';
    default: return 'invalid_request';
  }
}

/**
 * Sends any error thrown in the token endpoint's scope: the catalogue decides code, status and
 * headers (and logs what it cannot map), as everywhere; only the body takes RFC 6749's shape.
 */
export function sendOAuthError(reply: FastifyReply, err: unknown, grantType: unknown): FastifyReply {
  return sendError(reply, err, (body: ErrorBody, thrown): OAuthErrorBody => ({
    error: oauthErrorOf(body.error.code, grantType, (thrown as { validation?: ValidationIssue[] } | null)?.validation),
    error_description: body.error.message,
    code: body.error.code,
    request_id: body.error.requestId,
  }));
}
