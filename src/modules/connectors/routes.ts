import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import type { ProxyService } from '../proxy/proxy-service.ts';
import type { ConnectorService } from './connector-service.ts';
import { CONNECTOR_TYPES } from './types.ts';

const ConnectorSchema = Type.Object({
  id: Type.String(), name: Type.String(), environment: Type.String(), type: Type.String(),
  settings: Type.Record(Type.String(), Type.Unknown()), slots: Type.Record(Type.String(), Type.String()),
  owner: Type.String(), personal: Type.Boolean(), createdAt: Type.String(), updatedAt: Type.String(), createdBy: Type.String(), revision: Type.Integer(),
});
const Settings = Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 32 });
const Slots = Type.Record(Type.String({ maxLength: 64 }), Type.String({ maxLength: 128 }), { maxProperties: 16 });
const Params = Type.Object({ env: Type.String({ maxLength: 63 }), name: Type.String({ maxLength: 64 }) }, { additionalProperties: false });
const StringMap = Type.Record(Type.String({ maxLength: 256 }), Type.String({ maxLength: 8192 }), { maxProperties: 64 });
const tenant = { auth: 'tenant' as const };

/** Connectors under /v1/connectors/:env/:name, and the credential proxy under /v1/proxy/:env/:name. */
export function connectorRoutes(deps: { connectors: ConnectorService; proxy: ProxyService }) {
  const { connectors, proxy } = deps;
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();

    r.post('/v1/connectors', {
      config: tenant,
      schema: {
        tags: ['connectors'], summary: 'Create a connector in an environment (needs write on every secret it binds)',
        body: Type.Object({
          name: Type.String({ minLength: 1, maxLength: 64 }), environment: Type.String({ minLength: 1, maxLength: 63 }),
          type: Type.Union(CONNECTOR_TYPES.map((t) => Type.Literal(t))), settings: Settings, slots: Slots,
          owner: Type.String({ minLength: 1, maxLength: 200 }),
        }, { additionalProperties: false }),
        response: { 201: ConnectorSchema, ...errorResponses },
      },
    }, async (req, reply) => reply.code(201).send(await connectors.create(tenantContextOf(req), req.body)));

    r.get('/v1/connectors', {
      config: tenant,
      schema: {
        tags: ['connectors'], summary: 'List connectors (optionally of one environment)',
        querystring: Type.Object({ environment: Type.Optional(Type.String({ maxLength: 63 })) }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(ConnectorSchema) }), ...errorResponses },
      },
    }, async (req) => ({ items: await connectors.list(tenantContextOf(req), req.query.environment ? { environment: req.query.environment } : {}) }));

    r.get('/v1/connectors/:env/:name', {
      config: tenant,
      schema: { tags: ['connectors'], summary: 'One connector', params: Params, response: { 200: ConnectorSchema, ...errorResponses } },
    }, (req) => connectors.get(tenantContextOf(req), req.params.env, req.params.name));

    r.put('/v1/connectors/:env/:name', {
      config: tenant,
      schema: {
        tags: ['connectors'], summary: 'Replace settings and slots (check-and-set on revision)', params: Params,
        body: Type.Object({ settings: Settings, slots: Slots, owner: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })), revision: Type.Integer({ minimum: 1 }) }, { additionalProperties: false }),
        response: { 200: ConnectorSchema, ...errorResponses },
      },
    }, (req) => connectors.update(tenantContextOf(req), req.params.env, req.params.name, req.body));

    r.delete('/v1/connectors/:env/:name', {
      config: tenant,
      schema: { tags: ['connectors'], summary: 'Delete a connector', params: Params, response: { 204: Type.Null(), ...errorResponses } },
    }, async (req, reply) => {
      await connectors.remove(tenantContextOf(req), req.params.env, req.params.name);
      return reply.code(204).send(null);
    });

    r.post('/v1/connectors/:env/:name/test', {
      config: tenant,
      schema: {
        tags: ['connectors'], summary: 'Run the health check with the current values', params: Params,
        response: { 200: Type.Object({ ok: Type.Boolean(), latencyMs: Type.Number(), status: Type.Optional(Type.Integer()), detail: Type.String() }), ...errorResponses },
      },
    }, (req) => connectors.test(tenantContextOf(req), req.params.env, req.params.name));

    r.post('/v1/proxy/:env/:name', {
      config: tenant,
      schema: {
        tags: ['proxy'], summary: 'Send a request through a connector: Keyhold injects the credential; the caller never sees it',
        params: Params,
        body: Type.Object({
          method: Type.String({ minLength: 1, maxLength: 10 }), path: Type.String({ minLength: 1, maxLength: 2048 }),
          query: Type.Optional(StringMap), headers: Type.Optional(StringMap), body: Type.Optional(Type.Unknown()),
          run: Type.Optional(Type.Object({ runId: Type.String({ maxLength: 64 }), automation: Type.String({ maxLength: 64 }), step: Type.String({ maxLength: 64 }) }, { additionalProperties: false })),
        }, { additionalProperties: false }),
        response: { 200: Type.Object({ status: Type.Integer(), headers: Type.Record(Type.String(), Type.String()), body: Type.Unknown(), truncated: Type.Boolean() }), ...errorResponses },
      },
    }, (req) => {
      const { run, ...request } = req.body;
      return proxy.call(tenantContextOf(req), { environment: req.params.env, connector: req.params.name, request, ...(run ? { run } : {}) });
    });
  };
}
