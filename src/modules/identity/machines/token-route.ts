import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { fail } from '../../../errors/index.ts';
import { requestSourceOf } from '../../../http/auth.ts';
import { acceptFormBodies } from '../../../http/form-body.ts';
import { OAuthErrorResponse, sendOAuthError } from './oauth-errors.ts';
import { basicClientCredentials, usesBasicScheme, withBasicCredentials } from './client-basic-auth.ts';
import type { TokenExchange } from './token-exchange.ts';
import { CLIENT_CREDENTIALS_GRANT, JWT_BEARER_GRANT, type TokenRequest } from './types.ts';

/** Client ids are logged only when they look like one: a caller may paste anything (even the secret) there. */
const CLIENT_ID_SHAPE = /^khc_[A-Za-z0-9_-]{1,64}$/;

/** Where RFC 6749 §5.2 wants it: a 401 to a client that used Basic names the scheme to use. */
const BASIC_CHALLENGE = 'Basic realm="keyhold", charset="UTF-8"';

/**
 * POST /v1/auth/token (no auth: the request is the credential), in a scope of its own: it alone
 * takes the form-encoded bodies and Basic client authentication that OAuth 2.0 clients send
 * (RFC 6749 §4.4, RFC 7523 §2.1), so no other route gets a second way in; and its errors take
 * the RFC's shape (oauth-errors.ts).
 */
export function tokenRoute(deps: { exchange: TokenExchange; seal: { isSealed(): boolean } }) {
  return async function register(app: FastifyInstance): Promise<void> {
    acceptFormBodies(app);
    // Errors here answer in RFC 6749 §5.2's shape (`error` a string), which OAuth client libraries parse.
    app.setErrorHandler((err, req, reply) => sendOAuthError(reply, err, (req.body as { grant_type?: unknown } | undefined)?.grant_type));
    const r = app.withTypeProvider<TypeBoxTypeProvider>();

    r.post('/v1/auth/token', {
      config: { auth: 'none' },
      schema: {
        tags: ['auth'], summary: 'Exchange a client secret or an identity provider\'s JWT for a short-lived access token',
        description: 'The body is JSON or application/x-www-form-urlencoded (UTF-8; each parameter at most once). '
          + 'client_id and client_secret may instead come in an Authorization: Basic header (client_secret_basic), never in both.',
        consumes: ['application/json', 'application/x-www-form-urlencoded'],
        security: [{}, { clientBasic: [] }],
        body: Type.Object({
          grant_type: Type.Enum([CLIENT_CREDENTIALS_GRANT, JWT_BEARER_GRANT]),
          client_id: Type.String({ minLength: 1, maxLength: 128 }),
          client_secret: Type.Optional(Type.String({ maxLength: 256 })),
          assertion: Type.Optional(Type.String({ maxLength: 16_384, description: 'A JWT from the identity provider the identity trusts' })),
        }, { additionalProperties: false }),
        response: {
          200: Type.Object({ access_token: Type.String(), token_type: Type.Literal('Bearer'), expires_in: Type.Integer() }),
          '4xx': OAuthErrorResponse,
          '5xx': OAuthErrorResponse,
        },
      },
      // Before validation, so the credentials from the header meet the same schema as the body's.
      preValidation: async (req) => {
        const basic = basicClientCredentials(req.headers.authorization);
        if (basic) req.body = withBasicCredentials(req.body, basic) as TokenRequest;
      },
    }, async (req, reply) => {
      if (deps.seal.isSealed()) fail('SEALED', 'the server is sealed; unseal it with the key shares');
      const result = await deps.exchange.exchange(req.body, requestSourceOf(req));
      if (result.ok) return reply.header('cache-control', 'no-store').header('pragma', 'no-cache').send(result.token);
      if (result.reason === 'rate_limited') {
        reply.header('retry-after', String(Math.max(1, Math.ceil(result.retryAfterMs / 1000))));
        return fail('RATE_LIMITED', 'too many token requests; retry after the Retry-After header');
      }
      const clientId = CLIENT_ID_SHAPE.test(req.body.client_id) ? req.body.client_id : '(malformed)';
      req.log.info({ clientId, reason: result.detail }, 'token exchange refused');
      if (usesBasicScheme(req.headers.authorization)) reply.header('www-authenticate', BASIC_CHALLENGE);
      return fail('INVALID_CREDENTIALS', 'invalid client credentials');
    });
  };
}
