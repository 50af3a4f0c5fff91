import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { SecretName, Slug, errorResponses } from '../../http/schemas.ts';
import type { ConnectorService } from './connector-service.ts';
import { CONNECTOR_TYPE_NAMES } from './model.ts';

const ConnectorName = Type.String({ description: 'Letters, digits, _ . -; starts with a letter; at most 128 characters' });
const Settings = Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { description: 'Non-secret settings of the type (docs/connectors.md)', maxProperties: 32 });
const Slots = Type.Record(Type.String({ maxLength: 64 }), SecretName, { description: 'Slot → secret name, resolved in this environment', maxProperties: 16 });
const Owner = Type.String({ minLength: 1, maxLength: 200, description: 'A person or team' });

export const ConnectorSchema = Type.Object({
  id: Type.String(), name: Type.String(), environment: Type.String(), type: Type.String(),
  settings: Type.Record(Type.String(), Type.Unknown()), slots: Type.Record(Type.String(), Type.String()), owner: Type.String(),
  personal: Type.Boolean(), createdAt: Type.String(), updatedAt: Type.String(), createdBy: Type.String(), revision: Type.Integer(),
});
const HealthSchema = Type.Object({
  ok: Type.Boolean(), latencyMs: Type.Integer(), status: Type.Optional(Type.Integer()), detail: Type.String(), reason: Type.String(),
});
const EnvParams = Type.Object({ environment: Slug }, { additionalProperties: false });
const NameParams = Type.Object({ environment: Slug, name: ConnectorName }, { additionalProperties: false });

/** Connectors under /v1/connectors/:environment (the environment is always in the path), and a secret's dependents. */
export function connectorRoutes(deps: { connectors: ConnectorService }) {
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    const config = { auth: 'tenant' as const };

    r.get('/v1/connectors', {
      config,
      schema: { tags: ['connectors'], summary: 'List connectors of every environment', response: { 200: Type.Object({ items: Type.Array(ConnectorSchema) }), ...errorResponses } },
    }, async (req) => ({ items: await deps.connectors.list(tenantContextOf(req)) }));

    r.get('/v1/connectors/:environment', {
      config,
      schema: { tags: ['connectors'], summary: 'List connectors of one environment', params: EnvParams, response: { 200: Type.Object({ items: Type.Array(ConnectorSchema) }), ...errorResponses } },
    }, async (req) => ({ items: await deps.connectors.list(tenantContextOf(req), req.params.environment) }));

    r.post('/v1/connectors/:environment', {
      config,
      schema: {
        tags: ['connectors'], summary: 'Create a connector (needs write on every slot secret here)', params: EnvParams,
        body: Type.Object({ name: ConnectorName, type: Type.Union(CONNECTOR_TYPE_NAMES.map((t) => Type.Literal(t))), settings: Settings, slots: Slots, owner: Owner }, { additionalProperties: false }),
        response: { 201: ConnectorSchema, ...errorResponses },
      },
    }, async (req, reply) => reply.code(201).send(await deps.connectors.create(tenantContextOf(req), req.params.environment, req.body)));

    r.get('/v1/connectors/:environment/:name', {
      config,
      schema: { tags: ['connectors'], summary: 'Show a connector (settings and slot names, never values)', params: NameParams, response: { 200: ConnectorSchema, ...errorResponses } },
    }, (req) => deps.connectors.get(tenantContextOf(req), req.params.environment, req.params.name));

    r.patch('/v1/connectors/:environment/:name', {
      config,
      schema: {
        tags: ['connectors'], summary: 'Replace settings and/or slots (check-and-set on revision)', params: NameParams,
        body: Type.Object({ settings: Type.Optional(Settings), slots: Type.Optional(Slots), owner: Type.Optional(Owner), revision: Type.Optional(Type.Integer({ minimum: 1, maximum: 2_147_483_647 })) }, { additionalProperties: false }),
        response: { 200: ConnectorSchema, ...errorResponses },
      },
    }, (req) => deps.connectors.update(tenantContextOf(req), req.params.environment, req.params.name, req.body));

    r.delete('/v1/connectors/:environment/:name', {
      config,
      schema: {
        tags: ['connectors'], summary: 'Delete a connector', params: NameParams,
        querystring: Type.Object({ revision: Type.Optional(Type.Integer({ minimum: 1, maximum: 2_147_483_647 })) }, { additionalProperties: false }),
        response: { 200: ConnectorSchema, ...errorResponses },
      },
    }, (req) => deps.connectors.remove(tenantContextOf(req), req.params.environment, req.params.name, req.query));

    // Overrides are in-process only (rotation): over HTTP they would make the health check a password-guessing oracle.
    r.post('/v1/connectors/:environment/:name/test', {
      config,
      schema: { tags: ['connectors'], summary: 'Run the health check with the current values (needs use on the slot secrets)', params: NameParams, body: Type.Optional(Type.Object({}, { additionalProperties: false })), response: { 200: HealthSchema, ...errorResponses } },
    }, (req) => deps.connectors.test(tenantContextOf(req), req.params.environment, req.params.name));

    r.get('/v1/secrets/:name/connectors', {
      config,
      schema: {
        tags: ['connectors'], summary: 'Connectors whose slots name this secret, in every environment',
        params: Type.Object({ name: SecretName }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(Type.Object({ environment: Type.String(), connector: Type.String(), slot: Type.String() })) }), ...errorResponses },
      },
    }, async (req) => ({ items: await deps.connectors.dependentsOf(tenantContextOf(req), req.params.name) }));
  };
}
