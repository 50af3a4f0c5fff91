import type { Transaction } from 'kysely';
import { onPostgres } from '../../storage/database.ts';
import type { Database } from '../../storage/schema.ts';

/**
 * Takes the audit head's lock in `trx` now, rather than at its first append (`appendInTx` moves the
 * head, which takes it anyway): what the transaction reads afterwards, no other appender can change
 * until it commits. PostgreSQL: the head row FOR UPDATE. SQLite: nothing more to take, as the
 * transaction already holds the one write lock (`begin immediate`). The head is the last lock of
 * every transaction that locks more than one row (docs/architecture.md, "Lock order").
 */
export async function lockAuditHead(trx: Transaction<Database>): Promise<void> {
  let query = trx.selectFrom('audit_head').select('seq').where('id', '=', 1);
  if (onPostgres(trx)) query = query.forUpdate();
  await query.executeTakeFirstOrThrow();
}
