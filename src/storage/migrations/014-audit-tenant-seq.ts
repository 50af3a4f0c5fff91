import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * Audit pages and tails in `seq` order within a tenant, on SQLite. With only (tenant_id, time), its
 * planner answered the newest page of `audit list` by reading and sorting the tenant's whole history
 * (229 ms on a 1,000,000-event log over four tenants, 634 ms in one tenant, on the event loop) and a
 * tail page in 18-51 ms; with this index 0.7 ms and 0.6 ms (`node bench/audit-usage.ts`). Appends
 * land at the right edge of each tenant's range: the appender's cost per event did not move
 * measurably (bench/audit-writer.ts). PostgreSQL already walks the primary key backwards for these
 * (0.7-0.8 ms either way), so it does not pay for a second index.
 */
export async function up(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  if (dialect !== 'sqlite') return;
  await db.schema.createIndex('audit_events_tenant_seq').on('audit_events').columns(['tenant_id', 'seq']).execute();
}
