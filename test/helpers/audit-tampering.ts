import { sql, type Kysely } from 'kysely';
import { fromRow } from '../../src/modules/audit/audit-log.ts';
import { chainHash } from '../../src/modules/audit/chain.ts';
import type { DialectName } from '../../src/storage/database.ts';
import type { AuditEventsTable, Database } from '../../src/storage/schema.ts';

/**
 * Drops every append-only guard of the audit tables, as someone with the database owner's rights
 * could: the starting point of every tampering test (what remains to catch it is the chain, the
 * checkpoints and what the server remembers).
 */
export async function dropAuditGuards<DB>(db: Kysely<DB>, dialect: DialectName): Promise<void> {
  for (const table of ['audit_events', 'audit_checkpoints']) {
    const triggers = dialect === 'sqlite'
      ? [`${table}_no_update`, `${table}_no_delete`, `${table}_no_replace`].map((name) => `drop trigger if exists ${name}`)
      : [`drop trigger if exists ${table}_append_only on ${table}`];
    for (const statement of triggers) await sql.raw(statement).execute(db);
  }
}

/**
 * Replaces the whole log with `events`, numbered on from the first one's seq, every hash
 * recomputed and the head moved to match: a rewrite the chain alone cannot tell (guards dropped first).
 */
export async function rewriteChain(db: Kysely<Database>, events: AuditEventsTable[]): Promise<void> {
  let prev = events[0]!.prev_hash;
  const out = events.map((r, i) => {
    const row = { ...r, seq: events[0]!.seq + i, prev_hash: prev };
    row.hash = chainHash(prev, fromRow(row));
    prev = row.hash;
    return row;
  });
  await sql`delete from audit_events`.execute(db);
  await db.insertInto('audit_events').values(out).execute();
  await db.updateTable('audit_head').set({ seq: out.at(-1)!.seq, hash: prev }).where('id', '=', 1).execute();
}
