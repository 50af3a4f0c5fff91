import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { requestSourceOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import { addressBlock } from '../../platform/addresses.ts';
import type { Clock } from '../../platform/clock.ts';
import { createAttemptGuard } from '../identity/users/attempts.ts';
import type { RootGeneration } from './root-generation.ts';
import type { SystemService } from './system-service.ts';
import { UNSEAL_ATTEMPTS_PER_MINUTE } from './routes.ts';

const Progress = {
  nonce: Type.Union([Type.String(), Type.Null()]), progress: Type.Integer(), threshold: Type.Integer(),
};
const Status = Type.Object({ started: Type.Boolean(), ...Progress, expiresAt: Type.Union([Type.String(), Type.Null()]) });
const Nonce = Type.String({ minLength: 1, maxLength: 64 });

/**
 * A new root token from a threshold of unseal shares, and the root tokens there are (to revoke a
 * leaked one with DELETE /v1/tokens/:id). Starting, cancelling and giving shares need no token, as
 * unsealing does: the shares are the credential. Starts, cancels and shares count together against a
 * per-address bound as large as the unseal route's, and apart from it.
 */
export function generateRootRoutes(deps: { generation: RootGeneration; system: Pick<SystemService, 'rootTokens'>; clock: Clock }) {
  const attempts = createAttemptGuard({ limit: UNSEAL_ATTEMPTS_PER_MINUTE, windowMs: 60_000 }, deps.clock,
    'too many root generation calls from this address; wait before trying again');
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();

    r.get('/v1/sys/generate-root', {
      schema: { tags: ['sys'], summary: 'The root token generation in progress, if any: its nonce and progress', response: { 200: Status, ...errorResponses } },
    }, () => deps.generation.status());

    r.post('/v1/sys/generate-root', {
      schema: {
        tags: ['sys'], summary: 'Start generating a new root token from unseal shares: a nonce and a one-time key (shown once) that alone opens the result',
        response: { 200: Type.Object({ ...Progress, nonce: Type.String(), otp: Type.String(), expiresAt: Type.String() }), ...errorResponses },
      },
    }, async (req, reply) => {
      attempts.spend(`generate-root:ip:${addressBlock(req.ip)}`);
      return reply.header('cache-control', 'no-store').send(await deps.generation.start(requestSourceOf(req)));
    });

    r.delete('/v1/sys/generate-root', {
      schema: { tags: ['sys'], summary: 'Cancel the root token generation in progress; its shares are forgotten', response: { 204: Type.Null(), ...errorResponses } },
    }, async (req, reply) => {
      attempts.spend(`generate-root:ip:${addressBlock(req.ip)}`);
      await deps.generation.cancel(requestSourceOf(req));
      return reply.code(204).send(null);
    });

    r.post('/v1/sys/generate-root/share', {
      schema: {
        tags: ['sys'], summary: 'Give one unseal share towards the generation named by its nonce; the completing share gets the new token, sealed under the one-time key',
        body: Type.Object({ nonce: Nonce, share: Type.String({ minLength: 1, maxLength: 200 }) }, { additionalProperties: false }),
        response: {
          200: Type.Object({ started: Type.Boolean(), ...Progress, complete: Type.Boolean(), tokenId: Type.Optional(Type.String()), encodedToken: Type.Optional(Type.String()) }),
          ...errorResponses,
        },
      },
    }, async (req, reply) => {
      attempts.spend(`generate-root:ip:${addressBlock(req.ip)}`);
      return reply.header('cache-control', 'no-store').send(await deps.generation.submit(requestSourceOf(req), req.body.nonce, req.body.share));
    });

    r.get('/v1/sys/root-tokens', {
      config: { auth: 'root' },
      schema: {
        tags: ['sys'], summary: 'Every root token there is (ids and times, never a token): revoke one with DELETE /v1/tokens/:id',
        response: {
          200: Type.Object({
            items: Type.Array(Type.Object({
              id: Type.String(), createdAt: Type.String(), revokedAt: Type.Union([Type.String(), Type.Null()]),
              current: Type.Boolean({ description: 'The token this request was made with' }),
            })),
          }),
          ...errorResponses,
        },
      },
    }, async (req) => ({ items: await deps.system.rootTokens(req.principal?.credentialId ?? null) }));
  };
}
