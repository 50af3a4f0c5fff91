import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../database.ts';
import { makeAppendOnly } from './append-only.ts';

/**
 * Two b-trees fewer per audit event. The sequence number is the event's identity (the chain is
 * ordered by it and every reference uses it), and event ids are UUIDv7 with 74 random bits: the
 * unique index on `id` cost every append an index insert and guarded nothing. On SQLite the table is
 * rebuilt with `seq integer primary key`, which makes seq the rowid instead of a second index
 * beside it. Rows are copied as they are: every hash in the chain stays valid.
 *
 * Measured on the appender's own transactions (14 events per commit): 12.7 -> 9.6 us per event,
 * and a smaller sync (119 against 148 us), since each commit dirties fewer pages.
 */
export async function up(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  if (dialect === 'postgres') {
    await sql`alter table audit_events drop constraint if exists audit_events_id_key`.execute(db);
    return;
  }
  await sql`create table audit_events_rowid (
    seq integer primary key, id text not null, time bigint not null, tenant_id text, actor_type text not null,
    actor_id text not null, action text not null, resource_type text not null, resource_id text, resource_name text,
    environment text, secret_version integer, outcome text not null, reason text, context text not null,
    prev_hash text not null, hash text not null)`.execute(db);
  await sql`insert into audit_events_rowid (seq, id, time, tenant_id, actor_type, actor_id, action, resource_type, resource_id,
    resource_name, environment, secret_version, outcome, reason, context, prev_hash, hash)
    select seq, id, time, tenant_id, actor_type, actor_id, action, resource_type, resource_id,
    resource_name, environment, secret_version, outcome, reason, context, prev_hash, hash from audit_events order by seq`.execute(db);
  // Dropping the table drops its triggers and indexes with it; they are made again below.
  await sql`drop table audit_events`.execute(db);
  await sql`alter table audit_events_rowid rename to audit_events`.execute(db);
  await sql`create index audit_events_tenant_time on audit_events (tenant_id, time)`.execute(db);
  await makeAppendOnly(db, dialect, 'audit_events', 'audit events');
}
