import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * The generate-root attempts the audit trail shows started and not yet ended: a row written with an
 * attempt's start event and removed with the one event that ends it (system/root-generation-ledger.ts).
 * An attempt lives in one process's memory; a row left by a process that died is how the next one
 * knows to record its end. Holds at most one row per live process, plus any such leftovers.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.createTable('root_generation_attempts')
    .addColumn('nonce', 'text', (c) => c.primaryKey())
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .execute();
}
