import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../database.ts';
import { makeAppendOnly } from './append-only.ts';

/**
 * Closes the last hole in the audit chain's tamper evidence: the chain hash is unkeyed, so anyone
 * holding the server's own database credentials could append well-formed events that the next
 * checkpoint would sign. From now on every event carries `mac`, an HMAC of its hash under a key
 * derived from the root key (modules/audit/event-mac.ts); only a server holding the root key can
 * write one, and the checkpointer refuses to sign past an event whose MAC is missing or wrong.
 *
 * `audit_keyed_from` remembers where that rule starts: the head at this migration. Events up to
 * it were written before MACs existed and are proved by the chain and checkpoints alone. It holds
 * one row, written here; the server may read it but never change it (append-only, as the audit
 * tables are, and on SQLite an insert is refused once the row exists, since REPLACE would
 * otherwise delete it without firing the DELETE trigger).
 */
export async function up(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  await db.schema.alterTable('audit_events').addColumn('mac', 'text').execute();
  await db.schema.createTable('audit_keyed_from')
    .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .execute();
  await sql`insert into audit_keyed_from (id, seq) select 1, seq from audit_head where id = 1`.execute(db);
  // A database with no head row yet (cannot happen after 003, which creates it) starts keyed at 0.
  await sql`insert into audit_keyed_from (id, seq) select 1, 0 where not exists (select 1 from audit_keyed_from)`.execute(db);
  await makeAppendOnly(db, dialect, 'audit_keyed_from', 'the audit MAC start');
  if (dialect === 'sqlite') {
    await sql.raw(`create trigger audit_keyed_from_no_insert before insert on audit_keyed_from
      begin select raise(abort, 'the audit MAC start is written once'); end`).execute(db);
  }
}
