import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { rootContextOf, tenantContextOf } from '../../http/auth.ts';
import { EnvironmentSchema, Slug, errorResponses } from '../../http/schemas.ts';
import type { SystemService } from '../system/system-service.ts';
import type { TenantService } from './tenant-service.ts';

const TenantSchema = Type.Object({ id: Type.String(), name: Type.String(), createdAt: Type.String() });

/** Tenants and token revocation (root only), and environments of the caller's tenant. */
export function tenantRoutes(deps: { tenants: TenantService; system: Pick<SystemService, 'revokeToken'> }) {
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();

    r.get('/v1/tenants', {
      config: { auth: 'root' },
      schema: { tags: ['tenants'], summary: 'List tenants', response: { 200: Type.Object({ items: Type.Array(TenantSchema) }), ...errorResponses } },
    }, async () => ({ items: await deps.tenants.list() }));

    r.post('/v1/tenants', {
      config: { auth: 'root' },
      schema: {
        tags: ['tenants'], summary: 'Create a tenant (own KEK, default environments)',
        body: Type.Object({ name: Slug }, { additionalProperties: false }),
        response: { 201: TenantSchema, ...errorResponses },
      },
    }, async (req, reply) => reply.code(201).send(await deps.tenants.create(req.body.name, { by: rootContextOf(req) })));

    r.delete('/v1/tokens/:id', {
      config: { auth: 'root' },
      schema: { tags: ['tenants'], summary: 'Revoke a token', params: Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: false }), response: { 204: Type.Null(), ...errorResponses } },
    }, async (req, reply) => {
      await deps.system.revokeToken(rootContextOf(req), req.params.id);
      return reply.code(204).send(null);
    });

    r.get('/v1/environments', {
      config: { auth: 'tenant' },
      schema: { tags: ['environments'], summary: 'List environments of the tenant', response: { 200: Type.Object({ items: Type.Array(EnvironmentSchema) }), ...errorResponses } },
    }, async (req) => ({ items: await deps.tenants.listEnvironments(tenantContextOf(req).tenantId) }));

    r.post('/v1/environments', {
      config: { auth: 'tenant' },
      schema: {
        tags: ['environments'], summary: 'Create an environment',
        body: Type.Object({ name: Slug }, { additionalProperties: false }),
        response: { 201: EnvironmentSchema, ...errorResponses },
      },
    }, async (req, reply) => reply.code(201).send(await deps.tenants.createEnvironment(tenantContextOf(req), req.body.name)));
  };
}
