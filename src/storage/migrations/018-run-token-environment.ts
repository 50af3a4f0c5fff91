import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * A token can be bound to one environment of its tenant: an automation run's token admits its
 * machine identity only in the run's environment (SPEC §1: a staging run never resolves a
 * production value). Null, as every token issued before this migration has, means unbound.
 * Stored by name, as every authorization decision names the environment it touches; a renamed
 * environment leaves such a token bound to a name that no longer exists, which admits nothing.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.alterTable('tokens').addColumn('environment', 'text').execute();
}
