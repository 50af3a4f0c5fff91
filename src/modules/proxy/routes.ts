import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { Slug, errorResponses } from '../../http/schemas.ts';
import type { ProxyService } from './proxy-service.ts';

const Text = (max: number) => Type.String({ maxLength: max });
const RunLabel = Type.String({ minLength: 1, maxLength: 128, pattern: '^[A-Za-z0-9_.:/-]+$' });

/** POST /v1/proxy/:environment/:connector: one request through a connector's credential and allowlist. */
export function proxyRoutes(deps: { proxy: ProxyService }) {
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    r.post('/v1/proxy/:environment/:connector', {
      config: { auth: 'tenant' },
      schema: {
        tags: ['proxy'], summary: 'Send a request through a connector: the credential is injected here and never returned',
        params: Type.Object({ environment: Slug, connector: Type.String({ maxLength: 128 }) }, { additionalProperties: false }),
        body: Type.Object({
          method: Type.Union(['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'].map((m) => Type.Literal(m))),
          path: Type.String({ maxLength: 2048, description: 'Relative to the destination root, starting with / ("" is the root itself)' }),
          query: Type.Optional(Type.Record(Text(256), Text(8192), { maxProperties: 64 })),
          headers: Type.Optional(Type.Record(Text(128), Text(8192), { maxProperties: 64 })),
          body: Type.Optional(Type.Unknown({ description: 'A string is sent as is; anything else as JSON' })),
          destination: Type.Optional(Type.String({ maxLength: 63, description: 'A named extra destination of the connector' })),
          run: Type.Optional(Type.Object({ runId: RunLabel, automation: RunLabel, step: RunLabel }, { additionalProperties: false })),
          // The proxy refuses NUL in a path, header or query itself, as an audited PROXY_HEADER_NOT_ALLOWED
          // (an exfiltration attempt is worth an event); a proxied body may carry any characters.
        }, { additionalProperties: false, 'x-nul-allowed': true }),
        response: {
          200: Type.Object({ status: Type.Integer(), headers: Type.Record(Type.String(), Type.String()), body: Type.Unknown(), truncated: Type.Boolean() }),
          ...errorResponses,
        },
      },
    }, async (req, reply) => {
      const { run, ...request } = req.body;
      const res = await deps.proxy.call(tenantContextOf(req), { environment: req.params.environment, connector: req.params.connector, request, ...(run ? { run } : {}) });
      return reply.header('cache-control', 'no-store').send(res);
    });
  };
}
