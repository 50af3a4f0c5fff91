import { sql, type Kysely } from 'kysely';
import { onPostgres, type Executor } from './database.ts';
import type { Database } from './schema.ts';

/**
 * Runs `read` free of the pool's statement timeout (KEYHOLD_DB_STATEMENT_TIMEOUT), for the few reads
 * whose length grows with the audit log and that must finish however long it has become (verify's
 * scan for published checkpoints, an export's pages). PostgreSQL: in a transaction of its own with
 * `SET LOCAL statement_timeout = 0`, which ends with it, so the connection goes back to the pool
 * bounded; the lock timeout still applies. SQLite has no statement timeout: `read` runs as is.
 *
 * @example
 * const rows = await withoutStatementTimeout(db, (on) => on.selectFrom('audit_events').select('seq').where('action', '=', a).execute());
 */
export async function withoutStatementTimeout<T>(db: Kysely<Database>, read: (on: Executor) => Promise<T>): Promise<T> {
  if (!onPostgres(db)) return read(db);
  return db.transaction().execute(async (trx) => {
    await sql`set local statement_timeout = 0`.execute(trx);
    return read(trx);
  });
}
