import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import { errorCatalogue, isKeyholdError, type ErrorCode } from '../errors/index.ts';
import { SECURITY_HEADERS } from './security-headers.ts';
import { isDatabaseTimeout, isDataException, isTransactionConflict, PoolWaitTimeout } from '../storage/db-errors.ts';

export interface ErrorBody {
  error: { code: ErrorCode; message: string; requestId: string };
}

interface ValidationIssue {
  keyword?: string;
  instancePath?: string;
  message?: string;
  params?: Record<string, unknown>;
}

/** Echo a field name only when it looks like one: a caller could put anything (a value, 100 KB) in a key. */
export function printableField(name: string): string {
  return /^[A-Za-z0-9_.-]{1,40}$/.test(name) ? name : '(an unprintable or overlong name)';
}

function describeValidation(err: FastifyError & { validation?: ValidationIssue[]; validationContext?: string }): { code: ErrorCode; message: string } {
  const issues = err.validation ?? [];
  const context = err.validationContext ?? 'request';
  // A JSON pointer's segments are the caller's keys (a record's, an unknown field's): each is echoed only when it looks like a name.
  const path = (p: string | undefined) => context + (p ?? '').split('/').slice(1).map((segment) => `.${printableField(segment.replace(/~1/g, '/').replace(/~0/g, '~'))}`).join('');
  // TypeBox reports an unknown field twice: as the parent's additionalProperties and as "schema is false" at the field.
  const unknown = issues.find((i) => i.keyword === 'additionalProperties');
  if (unknown) {
    const fields = unknown.params?.additionalProperties;
    const list = (Array.isArray(fields) ? fields.map(String) : [String(fields ?? '')]).map(printableField);
    const shown = list.slice(0, 5).join(', ') + (list.length > 5 ? `, and ${list.length - 5} more` : '');
    return { code: 'UNKNOWN_FIELD', message: `${path(unknown.instancePath)} has unknown field(s): ${shown}` };
  }
  const issue: ValidationIssue = issues[0] ?? {};
  return { code: 'VALIDATION_FAILED', message: `${path(issue.instancePath)} ${issue.message ?? 'is invalid'}` };
}

/** Maps anything thrown in a request to a catalogued code. Unknown errors become INTERNAL and are logged in full. */
export function toErrorBody(err: unknown, request: FastifyRequest): { status: number; body: ErrorBody } {
  const requestId = request.id;
  if (isKeyholdError(err)) {
    return { status: err.status, body: { error: { code: err.code, message: err.message, requestId } } };
  }
  const fe = err as FastifyError & { validation?: ValidationIssue[]; validationContext?: string };
  let mapped: { code: ErrorCode; message: string } | null = null;
  if (fe.validation) mapped = describeValidation(fe);
  else if (fe.code === 'FST_ERR_BAD_URL') mapped = { code: 'VALIDATION_FAILED', message: 'the path has a broken percent-encoding, or percent-encodes bytes that are not UTF-8' };
  else if (fe.code === 'FST_ERR_MAX_PARAM_LENGTH') mapped = { code: 'VALIDATION_FAILED', message: 'a path parameter is longer than 200 characters' };
  else if (fe.statusCode === 413) mapped = { code: 'BODY_TOO_LARGE', message: 'the request body is too large' };
  else if (fe.statusCode === 415) mapped = { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'send the body as application/json' };
  else if (fe.statusCode === 400 && (fe.code?.startsWith('FST_ERR_CTP_') || fe instanceof SyntaxError)) {
    mapped = { code: 'MALFORMED_JSON', message: 'the body is not valid JSON' };
  } else if (fe.statusCode !== undefined && fe.statusCode >= 400 && fe.statusCode < 500) {
    mapped = { code: 'VALIDATION_FAILED', message: 'the request is malformed' };
  } else if (isDataException(err)) {
    // Input the validators let through but PostgreSQL cannot hold (a NUL in text, a number past bigint): the caller's, not ours.
    mapped = { code: 'VALIDATION_FAILED', message: 'the request holds a value the database cannot store (a NUL character, or a number out of range)' };
  } else if (isTransactionConflict(err)) {
    mapped = { code: 'TRANSACTION_CONFLICT', message: 'a concurrent request changed the same data; nothing was done, try again' };
  } else if (isDatabaseTimeout(err)) {
    // Not the caller's fault and not a bug, but an operator should see the database falling behind.
    request.log.warn({ requestId }, err instanceof PoolWaitTimeout ? err.message : 'a database statement ran past KEYHOLD_DB_STATEMENT_TIMEOUT and was cancelled (DATABASE_TIMEOUT)');
    mapped = { code: 'DATABASE_TIMEOUT', message: 'the database took too long to answer; nothing was done, try again later' };
  }
  if (mapped) return { status: errorCatalogue[mapped.code].status, body: { error: { ...mapped, requestId } } };
  request.log.error({ err }, 'unhandled error');
  return { status: 500, body: { error: { code: 'INTERNAL', message: `internal error; quote request id ${requestId}`, requestId } } };
}

/**
 * Sends the catalogued answer to any error: status, Retry-After, no-store. `format` reshapes the
 * body for an endpoint that speaks another protocol's error format (the OAuth token endpoint).
 */
export function sendError(reply: FastifyReply, err: unknown, format: (body: ErrorBody, err: unknown) => unknown = (body) => body): FastifyReply {
  const { status, body } = toErrorBody(err, reply.request);
  // RATE_LIMITED says when to come back (seconds), for clients that honour Retry-After.
  const retryAfter = isKeyholdError(err) && err.code === 'RATE_LIMITED' ? err.details?.retryAfterSeconds : undefined;
  if (typeof retryAfter === 'number') reply.header('retry-after', String(retryAfter));
  // The security headers again: fastify answers some errors (an undecodable path) before any hook of the server runs.
  return reply.code(status).headers(SECURITY_HEADERS).header('cache-control', 'no-store').send(format(body, err));
}
