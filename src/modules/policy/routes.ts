import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import type { PolicyService } from './policy-service.ts';

const Version = Type.Object({
  version: Type.Integer(), text: Type.String(), comment: Type.String(), createdAt: Type.String(), createdBy: Type.String(), active: Type.Boolean(),
});
/** A version number as the database stores it (a 32-bit integer); past it, every route answers 400 before any lookup. */
const VersionNumber = Type.Integer({ minimum: 0, maximum: 2_147_483_647 });
const VersionParam = Type.Object({ version: VersionNumber }, { additionalProperties: false });

/** The tenant's own Cedar policies: versioned, validated before they take effect, diffable, rolled back. */
export function policyRoutes(deps: { policies: PolicyService }) {
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    const Cas = Type.Integer({ minimum: 0, maximum: 2_147_483_647, description: 'The version you expect in force (0: built-ins only); another one there answers 409 CAS_MISMATCH' });
    const PolicyBody = Type.Object({ text: Type.String({ maxLength: 65_536 }), comment: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: false });
    const PutBody = Type.Object({ ...PolicyBody.properties, cas: Type.Optional(Cas) }, { additionalProperties: false });

    r.get('/v1/policies', {
      config: { auth: 'tenant' },
      schema: { tags: ['policies'], summary: 'The tenant policy set in force', response: { 200: Version, ...errorResponses } },
    }, (req) => deps.policies.current(tenantContextOf(req)));

    r.put('/v1/policies', {
      config: { auth: 'tenant' },
      schema: { tags: ['policies'], summary: 'Replace the tenant policy set (validated first; a new version)', body: PutBody, response: { 200: Version, ...errorResponses } },
    }, (req) => deps.policies.put(tenantContextOf(req), req.body));

    r.post('/v1/policies/validate', {
      config: { auth: 'tenant' },
      schema: {
        tags: ['policies'], summary: 'Dry run: would this policy set validate?', body: PolicyBody,
        response: { 200: Type.Object({ valid: Type.Boolean(), errors: Type.Array(Type.String()) }), ...errorResponses },
      },
    }, (req) => deps.policies.validate(tenantContextOf(req), req.body.text));

    r.get('/v1/policies/versions', {
      config: { auth: 'tenant' },
      schema: { tags: ['policies'], summary: 'Policy versions', response: { 200: Type.Object({ items: Type.Array(Type.Omit(Version, ['text'])) }), ...errorResponses } },
    }, async (req) => ({ items: await deps.policies.history(tenantContextOf(req)) }));

    r.get('/v1/policies/versions/:version', {
      config: { auth: 'tenant' },
      schema: { tags: ['policies'], summary: 'One policy version', params: VersionParam, response: { 200: Version, ...errorResponses } },
    }, (req) => deps.policies.get(tenantContextOf(req), req.params.version));

    r.get('/v1/policies/diff', {
      config: { auth: 'tenant' },
      schema: {
        tags: ['policies'], summary: 'Line diff between two versions (0 = built-ins only)',
        querystring: Type.Object({ from: VersionNumber, to: VersionNumber }, { additionalProperties: false }),
        response: { 200: Type.Object({ from: Type.Integer(), to: Type.Integer(), diff: Type.String() }), ...errorResponses },
      },
    }, (req) => deps.policies.diff(tenantContextOf(req), req.query.from, req.query.to));

    r.post('/v1/policies/rollback', {
      config: { auth: 'tenant' },
      schema: {
        tags: ['policies'], summary: 'Re-apply an older version as a new version',
        body: Type.Object({ version: VersionNumber, cas: Type.Optional(Cas) }, { additionalProperties: false }),
        response: { 200: Version, ...errorResponses },
      },
    }, (req) => deps.policies.rollback(tenantContextOf(req), req.body.version, req.body.cas));
  };
}
