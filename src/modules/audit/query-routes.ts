import { Readable } from 'node:stream';
import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import type { AuditQueries } from './queries.ts';

const Filter = {
  from: Type.Optional(Type.String({ format: 'date-time' })),
  to: Type.Optional(Type.String({ format: 'date-time' })),
  actor: Type.Optional(Type.String({ maxLength: 100 })),
  action: Type.Optional(Type.String({ maxLength: 64 })),
  secret: Type.Optional(Type.String({ maxLength: 128 })),
  outcome: Type.Optional(Type.Union([Type.Literal('allowed'), Type.Literal('denied'), Type.Literal('failed')])),
  allTenants: Type.Optional(Type.Boolean()),
};

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const EventSchema = Type.Object({
  seq: Type.Integer(), id: Type.String(), time: Type.Integer(), tenantId: Nullable(Type.String()),
  actor: Type.Object({ type: Type.String(), id: Type.String() }), action: Type.String(),
  resource: Type.Object({ type: Type.String(), id: Nullable(Type.String()), name: Nullable(Type.String()) }),
  environment: Nullable(Type.String()), secretVersion: Nullable(Type.Integer()), outcome: Type.String(), reason: Nullable(Type.String()),
  context: Type.Record(Type.String(), Type.String()), prevHash: Type.String(), hash: Type.String(),
  repeat: Type.Optional(Type.Integer()), lastSeq: Type.Optional(Type.Integer()), lastTime: Type.Optional(Type.Integer()),
});

/** The audit trail for auditors: list (denials collapsed), tail, export, per-secret usage, verify. */
export function auditRoutes(deps: { queries: AuditQueries }) {
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    const tenant = { auth: 'tenant' as const };

    r.get('/v1/audit/events', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'Events, filtered; identical denials within a minute collapsed with a repeat count',
        querystring: Type.Object({
          ...Filter,
          after: Type.Optional(Type.Integer({ minimum: 0 })),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 1000 })),
          order: Type.Optional(Type.Union([Type.Literal('asc'), Type.Literal('desc')])),
        }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(EventSchema), next: Nullable(Type.Integer()) }), ...errorResponses },
      },
    }, (req) => deps.queries.list(tenantContextOf(req), req.query));

    r.get('/v1/audit/tail', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'Events after a sequence number, oldest first (poll to follow)',
        querystring: Type.Object({ after: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(EventSchema) }), ...errorResponses },
      },
    }, async (req) => ({ items: await deps.queries.tail(tenantContextOf(req), req.query.after) }));

    r.get('/v1/audit/export', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'Every matching event as JSON lines or CSV (uncollapsed)',
        querystring: Type.Object({ ...Filter, format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('csv')])) }, { additionalProperties: false }),
      },
    }, async (req, reply) => {
      const format = req.query.format ?? 'json';
      const ctx = tenantContextOf(req);
      const chunks = deps.queries.export(ctx, req.query, format);
      // Authorization happens on the first page: pull it before the headers go out, so a refusal is a clean 403.
      const first = await chunks.next();
      async function* rest() {
        if (!first.done) yield first.value;
        yield* chunks;
      }
      return reply
        .header('content-type', format === 'csv' ? 'text/csv; charset=utf-8' : 'application/x-ndjson')
        .header('content-disposition', `attachment; filename="keyhold-audit.${format === 'csv' ? 'csv' : 'jsonl'}"`)
        .header('cache-control', 'no-store')
        .send(Readable.from(rest()));
    });

    r.get('/v1/audit/usage', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'First and last use/reveal of a secret, per actor',
        querystring: Type.Object({ secret: Type.String({ minLength: 1, maxLength: 128 }) }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            secret: Type.String(),
            actors: Type.Array(Type.Object({ actorType: Type.String(), actorId: Type.String(), action: Type.String(), count: Type.Integer(), firstAt: Type.String(), lastAt: Type.String() })),
          }),
          ...errorResponses,
        },
      },
    }, (req) => deps.queries.usage(tenantContextOf(req), req.query.secret));

    r.get('/v1/audit/verify', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'Prove the chain and its signed checkpoints (the answer only)',
        response: {
          200: Type.Object({
            ok: Type.Boolean(), events: Type.Integer(), lastSeq: Nullable(Type.Integer()), checkpoints: Type.Integer(),
            firstBadSeq: Nullable(Type.Integer()), problem: Nullable(Type.String()),
          }),
          ...errorResponses,
        },
      },
    }, (req) => deps.queries.verify(tenantContextOf(req)));
  };
}
