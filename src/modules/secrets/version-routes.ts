import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { SecretName, Slug, errorResponses } from '../../http/schemas.ts';
import { MAX_VERSION_CHECK_NAMES, type VersionCheckService } from './version-check.ts';

/** POST /v1/secrets/versions: the batch version check the SDK polls (numbers only, never values). */
export function versionCheckRoutes(deps: { versions: VersionCheckService }) {
  return async function register(app: FastifyInstance): Promise<void> {
    app.withTypeProvider<TypeBoxTypeProvider>().post('/v1/secrets/versions', {
      config: { auth: 'tenant' },
      schema: {
        tags: ['values'],
        summary: 'Current version numbers of up to 100 secrets in one environment (null: unknown, forbidden or unset)',
        body: Type.Object({
          environment: Slug,
          names: Type.Array(SecretName, { minItems: 1, maxItems: MAX_VERSION_CHECK_NAMES }),
        }, { additionalProperties: false }),
        response: {
          200: Type.Object({ versions: Type.Record(Type.String(), Type.Union([Type.Integer(), Type.Null()])) }),
          ...errorResponses,
        },
      },
    }, async (req, reply) => {
      const versions = await deps.versions.currentVersions(tenantContextOf(req), req.body.environment, req.body.names);
      return reply.header('cache-control', 'no-store').send({ versions });
    });
  };
}
