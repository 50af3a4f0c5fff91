import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../../http/auth.ts';
import { errorResponses } from '../../../http/schemas.ts';
import type { MachineService } from './machine-service.ts';
import type { TokenExchange } from './token-exchange.ts';
import { tokenRoute } from './token-route.ts';
import { BOUND_CLAIMS_TYPES } from './claim-match.ts';
import { MACHINE_KINDS, MAX_OIDC_MAX_AGE_SECONDS, MAX_TOKEN_TTL_SECONDS, MIN_OIDC_MAX_AGE_SECONDS, MIN_TOKEN_TTL_SECONDS } from './types.ts';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const Text = (max: number) => Type.String({ minLength: 1, maxLength: max });
const Claims = Type.Record(Type.String(), Type.Unknown(), {
  maxProperties: 32, description: 'Claims the token must carry: each one value or a list of allowed values (any one matches), compared as boundClaimsType says',
});

const MachineSchema = Type.Object({
  id: Type.String(), name: Type.String(), kind: Type.String(), clientId: Type.String(), tokenTtlSeconds: Type.Integer(),
  ownerUserId: Nullable(Type.String()),
  oidc: Nullable(Type.Object({
    issuer: Type.String(), jwksUrl: Type.String(), audience: Type.String(), subject: Nullable(Type.String()), claims: Claims,
    boundClaimsType: Type.Enum(['string', 'glob', 'exact'], { description: 'exact: saved before claim lists and globs; each bound value compared whole' }),
    maxAgeSeconds: Type.Integer(),
  })),
  createdAt: Type.String(), disabledAt: Nullable(Type.String()),
});
const MachineWithSecretSchema = Type.Object({
  ...MachineSchema.properties,
  clientSecret: Type.Optional(Type.String({ description: 'Shown once: only its hash is stored' })),
});
const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: false });

/**
 * Machine identities under /v1/machines (tenant admins), the token exchange (POST /v1/auth/token,
 * in its own scope: see token-route.ts) and token revocation (DELETE /v1/auth/tokens/:id).
 */
export function machineRoutes(deps: { machines: MachineService; exchange: TokenExchange; seal: { isSealed(): boolean } }) {
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    const tenant = { auth: 'tenant' as const };

    r.post('/v1/machines', {
      config: tenant,
      schema: {
        tags: ['machines'], summary: 'Create a machine identity (a client secret is returned once)',
        body: Type.Object({
          name: Type.String({ maxLength: 128 }),
          kind: Type.Enum([...MACHINE_KINDS]),
          tokenTtlSeconds: Type.Optional(Type.Integer({ minimum: MIN_TOKEN_TTL_SECONDS, maximum: MAX_TOKEN_TTL_SECONDS })),
          ownerUserId: Type.Optional(Text(64)),
          oidc: Type.Optional(Type.Object({
            issuer: Text(500),
            jwksUrl: Type.String({ minLength: 1, maxLength: 2000, description: 'https, or http on loopback only' }),
            audience: Text(500),
            subject: Type.Optional(Text(500)),
            claims: Type.Optional(Claims),
            boundClaimsType: Type.Optional(Type.Enum([...BOUND_CLAIMS_TYPES], {
              description: 'string (default): exact values; glob: * matches any run of characters, including : and /',
            })),
            maxAgeSeconds: Type.Optional(Type.Integer({
              minimum: MIN_OIDC_MAX_AGE_SECONDS, maximum: MAX_OIDC_MAX_AGE_SECONDS,
              description: 'How long after its iat a JWT is accepted, whatever its exp (default 3600)',
            })),
          }, { additionalProperties: false })),
        }, { additionalProperties: false }),
        response: { 201: MachineWithSecretSchema, ...errorResponses },
      },
    }, async (req, reply) => {
      const created = await deps.machines.create(tenantContextOf(req), req.body);
      return reply.code(201).header('cache-control', 'no-store').send(created);
    });

    r.get('/v1/machines', {
      config: tenant,
      schema: { tags: ['machines'], summary: 'List machine identities', response: { 200: Type.Object({ items: Type.Array(MachineSchema) }), ...errorResponses } },
    }, (req) => deps.machines.list(tenantContextOf(req)));

    r.get('/v1/machines/:id', {
      config: tenant,
      schema: { tags: ['machines'], summary: 'Describe a machine identity', params: IdParams, response: { 200: MachineSchema, ...errorResponses } },
    }, (req) => deps.machines.get(tenantContextOf(req), req.params.id));

    r.post('/v1/machines/:id/disable', {
      config: tenant,
      schema: {
        tags: ['machines'], summary: 'Disable a machine identity and revoke its live tokens at once', params: IdParams,
        response: { 200: MachineSchema, ...errorResponses },
      },
    }, (req) => deps.machines.disable(tenantContextOf(req), req.params.id));

    r.post('/v1/machines/:id/rotate-secret', {
      config: tenant,
      schema: {
        tags: ['machines'], summary: 'Issue a new client secret (returned once); the old one stops working, live tokens stay valid',
        params: IdParams, response: { 200: MachineWithSecretSchema, ...errorResponses },
      },
    }, async (req, reply) => reply.header('cache-control', 'no-store').send(await deps.machines.rotateSecret(tenantContextOf(req), req.params.id)));

    r.get('/v1/machines/:id/tokens', {
      config: tenant,
      schema: {
        tags: ['machines'], summary: 'List the live access tokens of a machine identity (ids and times only)', params: IdParams,
        response: {
          200: Type.Object({ items: Type.Array(Type.Object({ id: Type.String(), createdAt: Type.String(), expiresAt: Nullable(Type.String()) })) }),
          ...errorResponses,
        },
      },
    }, (req) => deps.machines.liveTokens(tenantContextOf(req), req.params.id));

    await app.register(tokenRoute({ exchange: deps.exchange, seal: deps.seal }));

    r.delete('/v1/auth/tokens/:id', {
      config: tenant,
      schema: { tags: ['auth'], summary: 'Revoke one access token of this tenant', params: IdParams, response: { 204: Type.Null(), ...errorResponses } },
    }, async (req, reply) => {
      await deps.machines.revokeToken(tenantContextOf(req), req.params.id);
      return reply.code(204).send(null);
    });
  };
}
