import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { errorResponses, Nullable } from '../../http/schemas.ts';
import type { AuditDelivery } from './delivery.ts';
import { isoTime as iso } from '../../platform/clock.ts';

/** Where the process that starts streaming (server.ts, tests) leaves its delivery, for the status route. */
export interface AuditStreamingSlot {
  delivery: Pick<AuditDelivery, 'status'> | null;
}

const SinkStatusSchema = Type.Object({
  sink: Type.String(),
  state: Type.String({ description: 'stopped, starting, idle, reading, delivering or backoff' }),
  cursor: Type.Integer({ description: 'The last seq the sink acknowledged' }),
  headSeq: Type.Integer({ description: 'The highest seq this node knows exists' }),
  lag: Type.Integer({ description: 'Events that exist and the sink has not acknowledged' }),
  consecutiveFailures: Type.Integer(),
  lastError: Nullable(Type.String()), lastErrorAt: Nullable(Type.String()), lastDeliveredAt: Nullable(Type.String()),
  delivered: Type.Integer({ description: 'Events acknowledged since this node started' }),
});

/**
 * How far behind each streaming sink is, on this node (SPEC §7): a sink that is down shows its lag
 * growing and its last error, so an operator learns of it before the SIEM's gap does. Root only:
 * a sink carries every tenant's events.
 */
export function auditSinkRoutes(deps: { streaming: AuditStreamingSlot }) {
  return async function register(app: FastifyInstance): Promise<void> {
    app.withTypeProvider<TypeBoxTypeProvider>().get('/v1/audit/sinks', {
      config: { auth: 'root' },
      schema: {
        tags: ['audit'], summary: "The streaming sinks' delivery on this node: cursor, lag, failures (root)",
        response: { 200: Type.Object({ items: Type.Array(SinkStatusSchema) }), ...errorResponses },
      },
    }, () => ({
      items: (deps.streaming.delivery?.status() ?? []).map((s) => ({
        ...s, lastErrorAt: iso(s.lastErrorAt), lastDeliveredAt: iso(s.lastDeliveredAt),
      })),
    }));
  };
}
