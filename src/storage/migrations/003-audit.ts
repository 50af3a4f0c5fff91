import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../database.ts';
import { makeAppendOnly } from './append-only.ts';

/** The audit log: append-only events in one hash chain, its head, and each sink's delivery cursor. */
export async function up(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  await db.schema.createTable('audit_events')
    .addColumn('seq', 'bigint', (c) => c.primaryKey())
    .addColumn('id', 'text', (c) => c.notNull().unique())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('tenant_id', 'text')
    .addColumn('actor_type', 'text', (c) => c.notNull())
    .addColumn('actor_id', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('resource_type', 'text', (c) => c.notNull())
    .addColumn('resource_id', 'text')
    .addColumn('resource_name', 'text')
    .addColumn('environment', 'text')
    .addColumn('secret_version', 'integer')
    .addColumn('outcome', 'text', (c) => c.notNull())
    .addColumn('reason', 'text')
    .addColumn('context', 'text', (c) => c.notNull())
    .addColumn('prev_hash', 'text', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .execute();
  await db.schema.createIndex('audit_events_tenant_time').on('audit_events').columns(['tenant_id', 'time']).execute();

  // One row: the last sequence number and hash. Appenders lock it, so the chain has one order.
  await db.schema.createTable('audit_head')
    .addColumn('id', 'integer', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .addColumn('hash', 'text', (c) => c.notNull())
    .execute();
  await sql`insert into audit_head (id, seq, hash) values (1, 0, ${'0'.repeat(64)})`.execute(db);

  await db.schema.createTable('audit_cursors')
    .addColumn('sink', 'text', (c) => c.primaryKey())
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .execute();

  // Append-only in the database itself, whatever the application does.
  if (dialect === 'postgres') {
    await sql`create function keyhold_audit_append_only() returns trigger language plpgsql as $$
      begin raise exception 'audit events are append-only'; end $$`.execute(db);
  }
  await makeAppendOnly(db, dialect, 'audit_events', 'audit events');
}
