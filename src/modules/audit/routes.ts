import { Readable } from 'node:stream';
import type { FastifyInstance, FastifyReply } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type, type Static } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { errorResponses } from '../../http/schemas.ts';
import type { AuditQueryService } from './query-service.ts';

/** Streams an export as an attachment that no cache keeps. */
function sendDownload(reply: FastifyReply, body: AsyncIterable<string>, contentType: string, filename: string): FastifyReply {
  return reply
    .header('content-type', contentType)
    .header('content-disposition', `attachment; filename="${filename}"`)
    .header('cache-control', 'no-store')
    .send(Readable.from(body));
}

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const Seq = Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER });
const Limit = Type.Integer({ minimum: 1, maximum: 1000 });
const AllTenants = Type.Boolean({ description: 'Root only: every tenant, and system events (tenantId null)' });

const Filter = {
  from: Type.Optional(Type.String({ format: 'date-time', description: 'Events at or after this time' })),
  to: Type.Optional(Type.String({ format: 'date-time', description: 'Events before this time' })),
  actor: Type.Optional(Type.String({ minLength: 1, maxLength: 200, description: 'Actor id' })),
  action: Type.Optional(Type.String({ minLength: 1, maxLength: 100, description: 'Exact action, or a prefix ending in "." (e.g. secret.)' })),
  secret: Type.Optional(Type.String({ minLength: 1, maxLength: 256, description: 'Secret name' })),
  outcome: Type.Optional(Type.Union([Type.Literal('allowed'), Type.Literal('denied'), Type.Literal('failed')])),
  allTenants: Type.Optional(AllTenants),
};

const Event = {
  seq: Type.Integer(), id: Type.String(), time: Type.Integer({ description: 'Epoch milliseconds' }), tenantId: Nullable(Type.String()),
  actor: Type.Object({ type: Type.String(), id: Type.String() }),
  action: Type.String(),
  resource: Type.Object({ type: Type.String(), id: Nullable(Type.String()), name: Nullable(Type.String()) }),
  environment: Nullable(Type.String()), secretVersion: Nullable(Type.Integer()),
  outcome: Type.String(), reason: Nullable(Type.String()),
  context: Type.Record(Type.String(), Type.String()),
  prevHash: Type.String(), hash: Type.String(),
};
const EventSchema = Type.Object(Event);
const ListItemSchema = Type.Object({
  ...Event,
  repeat: Type.Integer({ description: 'How many identical denials this item stands for (1: just this event)' }),
  lastSeq: Type.Integer(), lastTime: Type.Integer(),
});
const ExportQuery = Type.Object({ ...Filter, format: Type.Optional(Type.Union([Type.Literal('json'), Type.Literal('csv')])) }, { additionalProperties: false });
const Span = Nullable(Type.Object({ first: Type.String(), last: Type.String(), count: Type.Integer() }));

/** The audit trail under /v1/audit, for principals with audit:read. */
export function auditRoutes(deps: { queries: AuditQueryService }) {
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    const tenant = { auth: 'tenant' as const };

    r.get('/v1/audit/events', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'List events; identical denials within a minute are one item with a repeat count',
        querystring: Type.Object({
          ...Filter,
          after: Type.Optional(Type.Integer({ minimum: 0, maximum: Number.MAX_SAFE_INTEGER, description: 'The next of the previous page' })),
          limit: Type.Optional(Limit),
          order: Type.Optional(Type.Union([Type.Literal('desc'), Type.Literal('asc')], { description: 'desc (newest first, default) or asc' })),
        }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(ListItemSchema), next: Nullable(Type.Integer()) }), ...errorResponses },
      },
    }, (req) => deps.queries.list(tenantContextOf(req), req.query));

    r.get('/v1/audit/tail', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'Events after a sequence number, oldest first (poll with next to follow); without after, the latest',
        querystring: Type.Object({ after: Type.Optional(Seq), limit: Type.Optional(Limit), allTenants: Type.Optional(AllTenants) }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(EventSchema), next: Type.Integer() }), ...errorResponses },
      },
    }, (req) => deps.queries.tail(tenantContextOf(req), req.query));

    // Untyped reply: the body is a stream, which the typed provider would hold to the documented string schema.
    app.get<{ Querystring: Static<typeof ExportQuery> }>('/v1/audit/export', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'Every matching event, oldest first and uncollapsed, as JSON lines or CSV',
        querystring: ExportQuery,
        response: {
          200: {
            description: 'JSON lines (one stored event per line) or CSV (a header record, then one record per event; time ISO 8601, context as JSON; a text field gets a \' before = + - @ TAB CR or \' at its start, and before those or " right after a ; or line break in it; docs/audit.md)',
            content: { 'application/x-ndjson': { schema: { type: 'string' } }, 'text/csv': { schema: { type: 'string' } } },
          },
          ...errorResponses,
        },
      },
    }, async (req, reply) => {
      const { format = 'json', ...filter } = req.query;
      // Authorized and validated before the first byte: a refusal is a clean error response, not a cut stream.
      const body = await deps.queries.export(tenantContextOf(req), filter, format);
      return format === 'csv'
        ? sendDownload(reply, body, 'text/csv; charset=utf-8', 'keyhold-audit.csv')
        : sendDownload(reply, body, 'application/x-ndjson; charset=utf-8', 'keyhold-audit.jsonl');
    });

    r.get('/v1/audit/usage', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'Per actor, first and last use and reveal of a secret, with counts (dormancy, forensics)',
        querystring: Type.Object({ secret: Type.String({ minLength: 1, maxLength: 256 }) }, { additionalProperties: false }),
        response: {
          200: Type.Object({
            secret: Type.String(),
            actors: Type.Array(Type.Object({
              actor: Type.Object({ type: Type.String(), id: Type.String() }),
              first: Type.String(), last: Type.String(), count: Type.Integer(), use: Span, reveal: Span,
            })),
          }),
          ...errorResponses,
        },
      },
    }, (req) => deps.queries.usage(tenantContextOf(req), req.query.secret));

    r.get('/v1/audit/verify', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'Prove the hash chain and its signed checkpoints (the result only, no events)',
        description: 'Walks are shared: the answer comes from a walk that started less than 10 seconds before the call, or after it (docs/audit.md).',
        response: {
          200: Type.Object({
            ok: Type.Boolean(), events: Type.Integer(), headSeq: Type.Integer(), checkpoints: Type.Integer(),
            lastSeq: Nullable(Type.Integer()), firstBadSeq: Nullable(Type.Integer()), problem: Nullable(Type.String()),
          }),
          ...errorResponses,
        },
      },
    }, (req) => deps.queries.verify(tenantContextOf(req)));

    app.get('/v1/audit/checkpoints', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'Root only: every signed checkpoint, oldest first, as JSON lines (for offline verification)',
        response: {
          200: {
            description: 'One stored checkpoint per line: {"seq","hash","time","signature","public_key"} (docs/audit.md)',
            content: { 'application/x-ndjson': { schema: { type: 'string' } } },
          },
          ...errorResponses,
        },
      },
    }, async (req, reply) => {
      const body = await deps.queries.checkpoints(tenantContextOf(req));
      return sendDownload(reply, body, 'application/x-ndjson; charset=utf-8', 'keyhold-audit-checkpoints.jsonl');
    });

    r.get('/v1/audit/public-key', {
      config: tenant,
      schema: {
        tags: ['audit'], summary: 'The key that signs checkpoints (Ed25519, SPKI DER, base64): pin it for offline verification',
        response: { 200: Type.Object({ publicKey: Type.String() }), ...errorResponses },
      },
    }, (req) => deps.queries.publicKey(tenantContextOf(req)));
  };
}
