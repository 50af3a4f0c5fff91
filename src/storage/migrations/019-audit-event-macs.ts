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
 * `audit_keyed_from` remembers where that rule starts: the last event at this migration. Events up
 * to it were written before MACs existed and are proved by the chain and checkpoints alone. It is
 * taken from the events, not from `audit_head` (which the server's role may write, so whoever held
 * its credentials could have moved the start past any forgery), and the migration refuses a log
 * whose events have gaps or whose head does not name its last event: that log was tampered with,
 * and starting the MAC rule on it would bless the tampering. It holds
 * one row, written here; the server may read it but never change it (append-only, as the audit
 * tables are, and on SQLite an insert is refused once the row exists, since REPLACE would
 * otherwise delete it without firing the DELETE trigger).
 */
export async function up(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  // Checked before any change: SQLite runs this migration outside a transaction.
  const last = (await sql<{ seq: number | string | null; n: number | string }>`select max(seq) as seq, count(*) as n from audit_events`.execute(db)).rows[0];
  const lastSeq = Number(last?.seq ?? 0);
  const head = (await sql<{ seq: number | string; hash: string }>`select seq, hash from audit_head where id = 1`.execute(db)).rows[0];
  const lastHash = lastSeq === 0 ? '0'.repeat(64)
    : (await sql<{ hash: string }>`select hash from audit_events where seq = ${lastSeq}`.execute(db)).rows[0]?.hash;
  if (Number(last?.n ?? 0) !== lastSeq || !head || Number(head.seq) !== lastSeq || head.hash !== lastHash) {
    throw new Error(`the audit log is inconsistent (${Number(last?.n ?? 0)} events, the last at ${lastSeq}, the head at ${head ? Number(head.seq) : 'none'}): `
      + 'it was tampered with; run `keyhold audit verify` on the previous version and restore from a backup before upgrading');
  }
  await db.schema.alterTable('audit_events').addColumn('mac', 'text').execute();
  await db.schema.createTable('audit_keyed_from')
    .addColumn('id', 'integer', (c) => c.primaryKey().check(sql`id = 1`))
    .addColumn('seq', 'bigint', (c) => c.notNull())
    .execute();
  await sql`insert into audit_keyed_from (id, seq) values (1, ${lastSeq})`.execute(db);
  await makeAppendOnly(db, dialect, 'audit_keyed_from', 'the audit MAC start');
  if (dialect === 'sqlite') {
    await sql.raw(`create trigger audit_keyed_from_no_insert before insert on audit_keyed_from
      begin select raise(abort, 'the audit MAC start is written once'); end`).execute(db);
  }
}
