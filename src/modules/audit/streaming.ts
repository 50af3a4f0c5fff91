import type { Kysely } from 'kysely';
import type { AuditSettings } from '../../config/config.ts';
import type { Clock } from '../../platform/clock.ts';
import type { Logger } from '../../platform/logger.ts';
import type { Database } from '../../storage/schema.ts';
import type { AuditLog } from './audit-log.ts';
import type { SinkCursorStore } from './delivery-ports.ts';
import { createAuditDelivery, type AuditDelivery } from './delivery.ts';
import type { AuditSink } from './event.ts';
import { createJsonlSink } from './sinks/jsonl/index.ts';
import { createSyslogSink } from './sinks/syslog/index.ts';
import { createWebhookSink } from './sinks/webhook/index.ts';

/** Each sink's last delivered seq, in the database, so a restart resumes where delivery stopped. */
export function createDbCursorStore(db: Kysely<Database>): SinkCursorStore {
  return {
    async get(sink) {
      return (await db.selectFrom('audit_cursors').select('seq').where('sink', '=', sink).executeTakeFirst())?.seq ?? 0;
    },
    async set(sink, seq) {
      await db.insertInto('audit_cursors').values({ sink, seq })
        .onConflict((oc) => oc.column('sink').doUpdateSet({ seq })).execute();
    },
  };
}

/** The sinks the settings name; none when no sink is configured. */
export function sinksFrom(settings: AuditSettings): AuditSink[] {
  const sinks: AuditSink[] = [];
  if (settings.file) sinks.push(createJsonlSink({ name: 'file', path: settings.file }));
  if (settings.syslog) sinks.push(createSyslogSink({ name: `syslog-${settings.syslog.transport}`, ...settings.syslog }));
  if (settings.webhook) {
    sinks.push(createWebhookSink({
      name: 'webhook', url: settings.webhook.url, ...(settings.webhook.secret ? { secret: settings.webhook.secret } : {}),
      settingNames: { url: 'KEYHOLD_AUDIT_WEBHOOK', secret: 'KEYHOLD_AUDIT_WEBHOOK_SECRET' },
    }));
  }
  return sinks;
}

/**
 * Streams the durable log to the configured sinks, one cursor each, at least once. Requests never
 * wait on a sink: they only poke the loops, which read from the database.
 */
export function startAuditStreaming(deps: { db: Kysely<Database>; log: AuditLog; sinks: AuditSink[]; clock: Clock; logger: Logger }): AuditDelivery | null {
  const { sinks } = deps;
  if (sinks.length === 0) return null;
  const delivery = createAuditDelivery({
    source: deps.log, sinks, cursors: createDbCursorStore(deps.db), clock: deps.clock,
    timeoutMs: 10_000, batchSize: 200, backoff: { baseMs: 500, maxMs: 60_000 }, pollMs: 1_000, logger: deps.logger,
  });
  deps.log.onAppended((seq) => delivery.poke(seq));
  delivery.start();
  return delivery;
}
