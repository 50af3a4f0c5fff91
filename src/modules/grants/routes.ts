import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import { ROLES } from '../policy/actions.ts';
import type { GrantService } from './grant-service.ts';

const GrantSchema = Type.Object({
  id: Type.String(), principalType: Type.String(), principalId: Type.String(), role: Type.String(),
  environments: Type.Union([Type.Array(Type.String()), Type.Null()]), namePatterns: Type.Union([Type.Array(Type.String()), Type.Null()]),
  expiresAt: Type.Union([Type.String(), Type.Null()]), createdAt: Type.String(), createdBy: Type.String(), revokedAt: Type.Union([Type.String(), Type.Null()]),
  state: Type.Union([Type.Literal('live'), Type.Literal('expired'), Type.Literal('revoked')]),
});

/** Role grants of the caller's tenant (admin). */
export function grantRoutes(deps: { grants: GrantService }) {
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    r.post('/v1/grants', {
      config: { auth: 'tenant' },
      schema: {
        tags: ['grants'], summary: 'Grant a built-in role to a user or machine, optionally narrowed and expiring',
        body: Type.Object({
          principalType: Type.Union([Type.Literal('user'), Type.Literal('machine')]),
          principalId: Type.String({ minLength: 1, maxLength: 64 }),
          role: Type.Union(ROLES.map((role) => Type.Literal(role))),
          environments: Type.Optional(Type.Array(Type.String({ maxLength: 63 }), { minItems: 1, maxItems: 32 })),
          namePatterns: Type.Optional(Type.Array(Type.String({ maxLength: 128 }), { minItems: 1, maxItems: 32 })),
          expiresAt: Type.Optional(Type.String({ format: 'date-time' })),
        }, { additionalProperties: false }),
        response: { 201: GrantSchema, ...errorResponses },
      },
    }, async (req, reply) => reply.code(201).send(await deps.grants.create(tenantContextOf(req), req.body)));

    r.get('/v1/grants', {
      config: { auth: 'tenant' },
      schema: {
        tags: ['grants'], summary: 'List live grants; includeRevoked and includeExpired add revoked and expired ones',
        querystring: Type.Object({
          principalId: Type.Optional(Type.String({ maxLength: 64 })), includeRevoked: Type.Optional(Type.Boolean()), includeExpired: Type.Optional(Type.Boolean()),
        }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(GrantSchema) }), ...errorResponses },
      },
    }, async (req) => ({ items: await deps.grants.list(tenantContextOf(req), req.query) }));

    r.delete('/v1/grants/:id', {
      config: { auth: 'tenant' },
      schema: {
        tags: ['grants'], summary: 'Revoke a grant early',
        params: Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: false }),
        response: { 200: GrantSchema, ...errorResponses },
      },
    }, (req) => deps.grants.revoke(tenantContextOf(req), req.params.id));
  };
}
