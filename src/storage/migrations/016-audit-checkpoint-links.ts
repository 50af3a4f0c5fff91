import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * Two holes in the audit log's tamper evidence, closed in the database:
 *
 * 1. Each new checkpoint names the one before it (`prev_seq`, inside the signed message), so a
 *    checkpoint removed from the middle is missed by the next one. Checkpoints signed before this
 *    migration keep `prev_seq` null and their old message.
 * 2. SQLite's `INSERT OR REPLACE` deletes the row it conflicts with without firing DELETE triggers
 *    (unless a connection sets recursive_triggers), which walked round the append-only triggers: an
 *    insert that names an existing key is now refused before it runs. PostgreSQL has no REPLACE,
 *    and its `ON CONFLICT DO UPDATE` fires the UPDATE trigger that already refuses it.
 */
export async function up(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  await db.schema.alterTable('audit_checkpoints').addColumn('prev_seq', 'bigint').execute();
  if (dialect !== 'sqlite') return;
  for (const [table, what] of [['audit_events', 'audit events'], ['audit_checkpoints', 'audit checkpoints']] as const) {
    await sql.raw(`create trigger ${table}_no_replace before insert on ${table}
      when exists (select 1 from ${table} where seq = new.seq)
      begin select raise(abort, '${what} are append-only'); end`).execute(db);
  }
}
