import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { SecretName, Slug, errorResponses } from '../../http/schemas.ts';
import type { RotationService } from './rotation-service.ts';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const Params = Type.Object({ name: SecretName, env: Slug }, { additionalProperties: false });
const Recipient = Type.Object({
  kind: Type.Union([Type.Literal('user'), Type.Literal('machine'), Type.Literal('group'), Type.Literal('email')]),
  id: Type.String({ minLength: 1, maxLength: 254 }),
}, { additionalProperties: false });
const Check = Type.Object({ connector: Type.String(), slots: Type.Array(Type.String()), ok: Type.Boolean(), latencyMs: Type.Number(), detail: Type.String() });
export const RotationSchema = Type.Object({
  id: Type.String(), secret: Type.String(), environment: Type.String(), rotator: Type.String(), trigger: Type.String(), rehearsal: Type.Boolean(),
  state: Type.String(), step: Type.String(), attempt: Type.Integer(), fromVersion: Nullable(Type.Integer()), pendingVersion: Nullable(Type.Integer()),
  toVersion: Nullable(Type.Integer()), error: Nullable(Type.Object({ code: Type.String(), step: Type.String(), detail: Type.String() })),
  failedConnectors: Type.Array(Check), checks: Type.Array(Check), startedAt: Type.String(), updatedAt: Type.String(), finishedAt: Nullable(Type.String()),
});
const policyFields = {
  secret: Type.String(), environment: Type.String(), rotator: Type.String(), settings: Type.Record(Type.String(), Type.Unknown()),
  intervalMs: Nullable(Type.Integer()), cron: Nullable(Type.String()), catchUp: Type.String(), notify: Type.Array(Recipient),
  rollbackWindowMs: Type.Integer(), expiryLeadMs: Nullable(Type.Integer()), nextRunAt: Nullable(Type.String()), lastRunAt: Nullable(Type.String()),
  lastResult: Nullable(Type.String()), lastError: Nullable(Type.String()), failures: Type.Integer(), revision: Type.Integer(), updatedAt: Type.String(), updatedBy: Nullable(Type.String()),
  retry: Nullable(Type.Object({
    trigger: Nullable(Type.String()), failedAttempts: Type.Integer(), maxAttempts: Type.Integer(), nextAttemptAt: Nullable(Type.String()), gaveUpAt: Nullable(Type.String()),
  })),
  attention: Type.Array(Type.String()),
};
const PolicySchema = Type.Object(policyFields);
const StatusSchema = Type.Object({ ...policyFields, active: Nullable(RotationSchema), last: Nullable(RotationSchema), overdue: Type.Boolean() });
const DAY = 86_400_000;

/** Rotation policies, rotations, rehearsals, manual values and rollback. */
export function rotationRoutes(deps: { rotation: RotationService }) {
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    const tenant = { auth: 'tenant' as const };
    const base = '/v1/secrets/:name/rotation/:env';

    r.put(base, {
      config: tenant,
      schema: {
        tags: ['rotation'], summary: 'Set the rotation policy of a secret in an environment', params: Params,
        body: Type.Object({
          rotator: Type.String({ minLength: 1, maxLength: 32 }),
          settings: Type.Optional(Type.Record(Type.String({ maxLength: 64 }), Type.Unknown(), { maxProperties: 32 })),
          intervalMs: Type.Optional(Type.Integer({ minimum: 60_000, maximum: 3650 * DAY })),
          cron: Type.Optional(Type.String({ minLength: 1, maxLength: 120 })),
          catchUp: Type.Optional(Type.Union([Type.Literal('skip'), Type.Literal('once')])),
          notify: Type.Optional(Type.Array(Recipient, { maxItems: 32 })),
          rollbackWindowMs: Type.Optional(Type.Integer({ minimum: 0, maximum: 365 * DAY })),
          expiryLeadMs: Type.Optional(Nullable(Type.Integer({ minimum: 60_000, maximum: 365 * DAY }))),
          revision: Type.Optional(Type.Integer({ minimum: 1 })),
        }, { additionalProperties: false }),
        response: { 200: PolicySchema, ...errorResponses },
      },
    }, (req) => deps.rotation.setPolicy(tenantContextOf(req), req.params.name, req.params.env, req.body));

    r.get(base, {
      config: tenant,
      schema: { tags: ['rotation'], summary: 'Show the rotation policy', params: Params, response: { 200: PolicySchema, ...errorResponses } },
    }, (req) => deps.rotation.getPolicy(tenantContextOf(req), req.params.name, req.params.env));

    r.delete(base, {
      config: tenant,
      schema: { tags: ['rotation'], summary: 'Delete the rotation policy', params: Params, response: { 204: Type.Null(), ...errorResponses } },
    }, async (req, reply) => {
      await deps.rotation.deletePolicy(tenantContextOf(req), req.params.name, req.params.env);
      return reply.code(204).send(null);
    });

    r.post(`${base}/rotate`, {
      config: tenant,
      schema: {
        tags: ['rotation'], summary: 'Rotate now (or rehearse against a sandbox); answers once the rotation has ended', params: Params,
        body: Type.Optional(Type.Object({
          rehearse: Type.Optional(Type.Boolean()),
          trigger: Type.Optional(Type.Union([Type.Literal('manual'), Type.Literal('compromised')])),
        }, { additionalProperties: false })),
        response: { 200: RotationSchema, ...errorResponses },
      },
    }, (req) => deps.rotation.rotate(tenantContextOf(req), req.params.name, req.params.env, { trigger: req.body?.trigger ?? 'manual', rehearse: req.body?.rehearse ?? false }));

    r.post(`${base}/rollback`, {
      config: tenant,
      schema: {
        tags: ['rotation'], summary: 'Make the previous version current again (source first), within the rollback window', params: Params,
        response: { 200: Type.Object({ name: Type.String(), environment: Type.String(), version: Type.Integer(), previousVersion: Nullable(Type.Integer()) }), ...errorResponses },
      },
    }, (req) => deps.rotation.rollback(tenantContextOf(req), req.params.name, req.params.env));

    r.post(`${base}/supply`, {
      config: tenant,
      schema: {
        tags: ['rotation'], summary: 'Supply the value a manual rotation is waiting for', params: Params,
        body: Type.Object({ value: Type.String({ minLength: 1 }) }, { additionalProperties: false }),
        response: { 200: RotationSchema, ...errorResponses },
      },
    }, (req) => deps.rotation.supply(tenantContextOf(req), req.params.name, req.params.env, req.body.value));

    r.post(`${base}/cancel`, {
      config: tenant,
      schema: { tags: ['rotation'], summary: 'Abandon a manual rotation waiting for a value', params: Params, response: { 200: RotationSchema, ...errorResponses } },
    }, (req) => deps.rotation.cancel(tenantContextOf(req), req.params.name, req.params.env));

    r.get(`${base}/history`, {
      config: tenant,
      schema: {
        tags: ['rotation'], summary: 'Rotations of a secret in an environment, newest first', params: Params,
        querystring: Type.Object({ limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })) }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(RotationSchema) }), ...errorResponses },
      },
    }, async (req) => ({ items: await deps.rotation.history(tenantContextOf(req), req.params.name, req.params.env, req.query.limit) }));

    r.get('/v1/rotations/status', {
      config: tenant,
      schema: { tags: ['rotation'], summary: 'Every rotation policy: next run, last result, failures, live and overdue rotations', response: { 200: Type.Object({ items: Type.Array(StatusSchema) }), ...errorResponses } },
    }, async (req) => ({ items: await deps.rotation.status(tenantContextOf(req)) }));

    r.get('/v1/rotations/:id', {
      config: tenant,
      schema: {
        tags: ['rotation'], summary: 'One rotation', params: Type.Object({ id: Type.String({ maxLength: 64 }) }, { additionalProperties: false }),
        response: { 200: RotationSchema, ...errorResponses },
      },
    }, (req) => deps.rotation.get(tenantContextOf(req), req.params.id));
  };
}
