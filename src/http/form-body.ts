import { isUtf8 } from 'node:buffer';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { fail, KeyholdError } from '../errors/index.ts';
import { printableField } from './errors.ts';

const FORM = 'application/x-www-form-urlencoded';

/**
 * Decodes one form-urlencoded name or value: `+` is a space, every `%XX` must be valid and the
 * bytes valid UTF-8; undefined when they are not. Callers fail with their own code, never echoing
 * the raw text (a value is often a secret).
 */
export function decodeFormComponent(raw: string): string | undefined {
  try {
    return decodeURIComponent(raw.replaceAll('+', ' '));
  } catch {
    return undefined;
  }
}

function decodeComponent(raw: string): string {
  return decodeFormComponent(raw) ?? fail('MALFORMED_FORM', 'the body has a broken percent-encoding or percent-encodes bytes that are not UTF-8');
}

/**
 * Parses an application/x-www-form-urlencoded body strictly, where URLSearchParams is lenient: a
 * broken `%` escape or invalid UTF-8 is an error rather than text the client never meant, and a
 * name given twice is an error rather than a silent first-or-last wins (RFC 6749 §3.2). Values
 * stay strings; the result is a plain object with own properties only (`__proto__` included, so
 * the schema rejects it as an unknown field).
 * @example parseFormBody(Buffer.from('grant_type=client_credentials&client_id=khc_a')) // { grant_type: 'client_credentials', client_id: 'khc_a' }
 */
export function parseFormBody(body: Buffer): Record<string, string> {
  if (!isUtf8(body)) fail('MALFORMED_FORM', 'the body is not valid UTF-8');
  const params = new Map<string, string>();
  for (const pair of body.toString('utf8').split('&')) {
    if (pair === '') continue; // "a=1&&b=2" and a trailing "&" carry no parameter (as in the WHATWG parser)
    const eq = pair.indexOf('=');
    const name = decodeComponent(eq === -1 ? pair : pair.slice(0, eq));
    const value = eq === -1 ? '' : decodeComponent(pair.slice(eq + 1));
    if (params.has(name)) fail('DUPLICATE_PARAMETER', `parameter ${printableField(name)} appears more than once`);
    params.set(name, value);
  }
  return Object.fromEntries(params);
}

/** The charset parameter of a Content-Type header, lower-cased and unquoted, or null when there is none. */
function charsetOf(contentType: string | undefined): string | null {
  const match = /;\s*charset\s*=\s*("?)([^";\s]*)\1\s*(?:;|$)/i.exec(contentType ?? '');
  return match ? match[2]!.toLowerCase() : null;
}

const ACCEPTED = `send the body as application/json or ${FORM}`;

/**
 * Lets the routes of this encapsulated scope (and only those) take form-encoded bodies as well as
 * JSON (the server's strict JSON parser is inherited unchanged). Any other content type, text/plain
 * included, is refused here with UNSUPPORTED_MEDIA_TYPE naming the two accepted ones. Register it
 * in a scope that holds nothing but the routes meant for OAuth clients.
 */
export function acceptFormBodies(scope: FastifyInstance): void {
  scope.addContentTypeParser(FORM, { parseAs: 'buffer' }, (request: FastifyRequest, body, done) => {
    const charset = charsetOf(request.headers['content-type']);
    if (charset !== null && charset !== 'utf-8') {
      return done(new KeyholdError('UNSUPPORTED_MEDIA_TYPE', `a form body must be UTF-8 (RFC 6749 appendix B); ${ACCEPTED}`), undefined);
    }
    try {
      done(null, parseFormBody(body as Buffer));
    } catch (err) {
      done(err as Error, undefined);
    }
  });
  scope.removeContentTypeParser('text/plain');
  scope.addContentTypeParser('*', (_request, _payload, done) => done(new KeyholdError('UNSUPPORTED_MEDIA_TYPE', ACCEPTED), undefined));
}
