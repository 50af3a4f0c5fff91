import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * First and last use per secret and actor, folded from the audit log (audit/usage-summary.ts):
 * one row per tenant, secret name, actor and action, and a watermark saying which events are in.
 * Derived data, mutable by design; the chain stays the record, and a fold from seq 0 rebuilds it.
 * The watermark starts at 0, so a database with a long history catches up in chunks after upgrade.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.createTable('audit_usage')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('resource_name', 'text', (c) => c.notNull())
    .addColumn('actor_type', 'text', (c) => c.notNull())
    .addColumn('actor_id', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('first_time', 'bigint', (c) => c.notNull())
    .addColumn('last_time', 'bigint', (c) => c.notNull())
    .addColumn('count', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('audit_usage_pk', ['tenant_id', 'resource_name', 'actor_type', 'actor_id', 'action'])
    .execute();
  // One row: every event with seq <= this is in audit_usage. Folders lock it, so two never fold the same events.
  await db.schema.createTable('audit_usage_head')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .execute();
  await sql`insert into audit_usage_head (id, seq) values (1, 0)`.execute(db);
}
