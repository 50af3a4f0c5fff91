import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * A run's steps without their outputs and logs (`automation_runs.step_summary`, JSON of
 * `{ id, type, status, startedAt, durationMs, error }` per step), written with `steps`: the run list
 * reads it instead of the full records, which may hold megabytes of output per run. Runs stored
 * before this migration have none (null); the list computes theirs from `steps`.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.alterTable('automation_runs').addColumn('step_summary', 'text').execute();
}
