import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { EnvironmentStateSchema, SecretName, Slug, VersionInfoSchema, errorResponses } from '../../http/schemas.ts';
import type { SecretService } from './secret-service.ts';
import type { ValueService } from './value-service.ts';
import { CLASSIFICATIONS, LABELS } from './types.ts';

const Tag = Type.String({ minLength: 1, maxLength: 64 });
const Meta = {
  label: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
  owner: Type.String({ minLength: 1, maxLength: 200, description: 'A person or team; required' }),
  purpose: Type.Optional(Type.String({ maxLength: 2000 })),
  classification: Type.Optional(Type.Union(CLASSIFICATIONS.map((c) => Type.Literal(c)))),
  tags: Type.Optional(Type.Array(Tag, { maxItems: 32 })),
  expiresAt: Type.Optional(Type.Union([Type.String({ format: 'date-time' }), Type.Null()])),
};
const SecretMetaSchema = Type.Object({
  id: Type.String(), name: Type.String(), label: Type.String(), owner: Type.String(), purpose: Type.String(),
  classification: Type.String(), tags: Type.Array(Type.String()), expiresAt: Type.Union([Type.String(), Type.Null()]),
  createdAt: Type.String(), createdBy: Type.String(), updatedAt: Type.String(), deletedAt: Type.Union([Type.String(), Type.Null()]),
  revision: Type.Integer(),
});
const NameParams = Type.Object({ name: SecretName }, { additionalProperties: false });
const ValueParams = Type.Object({ name: SecretName, env: Slug }, { additionalProperties: false });
const VersionNumber = Type.Integer({ minimum: 1, maximum: 2_147_483_647 });
const Cas = Type.Integer({ minimum: 0, maximum: 2_147_483_647, description: 'Expected current version (0: no value yet)' });
const WriteResult = Type.Object({
  name: Type.String(), environment: Type.String(), version: Type.Integer(), previousVersion: Type.Union([Type.Integer(), Type.Null()]),
});

/** Secret inventory and values under /v1/secrets. */
export function secretRoutes(deps: { secrets: SecretService; values: ValueService }) {
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    const tenant = { auth: 'tenant' as const };

    r.get('/v1/secrets', {
      config: tenant,
      schema: {
        tags: ['secrets'], summary: 'List secrets (metadata only)',
        querystring: Type.Object({
          includeDeleted: Type.Optional(Type.Boolean()),
          prefix: Type.Optional(Type.String({ maxLength: 128 })),
          after: Type.Optional(Type.String({ maxLength: 256, description: 'A name to list after, or the `next` of the previous page' })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
        }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(SecretMetaSchema), next: Type.Union([Type.String(), Type.Null()]) }), ...errorResponses },
      },
    }, (req) => deps.secrets.list(tenantContextOf(req), req.query));

    r.post('/v1/secrets', {
      config: tenant,
      schema: {
        tags: ['secrets'], summary: 'Create a secret (metadata; values are written per environment)',
        body: Type.Object({ name: SecretName, ...Meta }, { additionalProperties: false }),
        response: { 201: SecretMetaSchema, ...errorResponses },
      },
    }, async (req, reply) => reply.code(201).send(await deps.secrets.create(tenantContextOf(req), req.body)));

    r.get('/v1/secrets/:name', {
      config: tenant,
      schema: {
        tags: ['secrets'], summary: 'Describe a secret and its per-environment versions', params: NameParams,
        response: { 200: Type.Object({ ...SecretMetaSchema.properties, environments: Type.Array(EnvironmentStateSchema) }), ...errorResponses },
      },
    }, (req) => deps.secrets.describe(tenantContextOf(req), req.params.name));

    r.patch('/v1/secrets/:name', {
      config: tenant,
      schema: {
        tags: ['secrets'], summary: 'Update metadata (optionally guarded by revision)', params: NameParams,
        body: Type.Object({ ...Meta, owner: Type.Optional(Meta.owner), revision: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false }),
        response: { 200: SecretMetaSchema, ...errorResponses },
      },
    }, (req) => deps.secrets.update(tenantContextOf(req), req.params.name, req.body));

    r.delete('/v1/secrets/:name', {
      config: tenant,
      schema: { tags: ['secrets'], summary: 'Soft-delete a secret (restorable)', params: NameParams, response: { 200: SecretMetaSchema, ...errorResponses } },
    }, (req) => deps.secrets.remove(tenantContextOf(req), req.params.name));

    r.post('/v1/secrets/:name/restore', {
      config: tenant,
      schema: { tags: ['secrets'], summary: 'Restore a soft-deleted secret', params: NameParams, response: { 200: SecretMetaSchema, ...errorResponses } },
    }, (req) => deps.secrets.restore(tenantContextOf(req), req.params.name));

    r.post('/v1/secrets/:name/destroy', {
      config: tenant,
      schema: {
        tags: ['secrets'], summary: 'Destroy versions (crypto-shred) or a whole soft-deleted secret', params: NameParams,
        body: Type.Optional(Type.Object({
          environment: Type.Optional(Slug),
          versions: Type.Optional(Type.Array(VersionNumber, { minItems: 1, maxItems: 1000 })),
        }, { additionalProperties: false })),
        response: { 200: Type.Object({ destroyed: Type.Union([Type.Integer(), Type.Literal('all')]) }), ...errorResponses },
      },
    }, (req) => deps.secrets.destroy(tenantContextOf(req), req.params.name, req.body ?? {}));

    r.put('/v1/secrets/:name/values/:env', {
      config: tenant,
      schema: {
        tags: ['values'], summary: 'Write a new version and make it current', params: ValueParams,
        body: Type.Object({
          value: Type.String({ description: 'UTF-8; at most the configured value size in bytes (VALUE_TOO_LARGE otherwise)' }),
          cas: Type.Optional(Cas),
          reason: Type.Optional(Type.String({ maxLength: 500 })),
        }, { additionalProperties: false }),
        response: { 200: WriteResult, ...errorResponses },
      },
    }, (req) => deps.values.write(tenantContextOf(req), req.params.name, req.params.env, req.body));

    r.get('/v1/secrets/:name/values/:env', {
      config: tenant,
      schema: {
        tags: ['values'], summary: 'Read (decrypt) a value: current by default, or a label or a version (not both)', params: ValueParams,
        querystring: Type.Object({
          version: Type.Optional(VersionNumber),
          label: Type.Optional(Type.Union(LABELS.map((l) => Type.Literal(l)))),
        }, { additionalProperties: false }),
        response: {
          200: Type.Object({ name: Type.String(), environment: Type.String(), version: Type.Integer(), value: Type.String(), createdAt: Type.String() }),
          ...errorResponses,
        },
      },
    }, (req, reply) => deps.values.read(tenantContextOf(req), req.params.name, req.params.env, req.query)
      .then((revealed) => {
        reply.header('cache-control', 'no-store');
        return revealed;
      }));

    r.get('/v1/secrets/:name/values/:env/versions', {
      config: tenant,
      schema: {
        tags: ['values'], summary: 'Version history (no values)', params: ValueParams,
        response: { 200: Type.Object({ versions: Type.Array(VersionInfoSchema) }), ...errorResponses },
      },
    }, async (req) => ({ versions: await deps.values.history(tenantContextOf(req), req.params.name, req.params.env) }));

    r.post('/v1/secrets/:name/values/:env/rollback', {
      config: tenant,
      schema: {
        tags: ['values'], summary: 'Make the previous version current again (within the rollback window)', params: ValueParams,
        body: Type.Optional(Type.Object({ cas: Type.Optional(Cas) }, { additionalProperties: false })),
        response: { 200: WriteResult, ...errorResponses },
      },
    }, (req) => deps.values.rollback(tenantContextOf(req), req.params.name, req.params.env, req.body ?? {}));
  };
}
