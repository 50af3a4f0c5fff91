import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * Makes a table append-only in the database itself: SQLite triggers abort UPDATE and DELETE;
 * PostgreSQL's statement trigger (function created by 003-audit) refuses UPDATE, DELETE, TRUNCATE.
 */
export async function makeAppendOnly(db: Kysely<unknown>, dialect: DialectName, table: string, what: string): Promise<void> {
  if (dialect === 'sqlite') {
    for (const op of ['update', 'delete']) {
      await sql.raw(`create trigger ${table}_no_${op} before ${op} on ${table}
        begin select raise(abort, '${what} are append-only'); end`).execute(db);
    }
  } else {
    await sql.raw(`create trigger ${table}_append_only before update or delete or truncate on ${table}
      for each statement execute function keyhold_audit_append_only()`).execute(db);
  }
}
