import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../../src/storage/database.ts';

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
