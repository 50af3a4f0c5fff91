import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * Indexes for the sweep that deletes dead sessions and machine tokens (identity/credential-sweep.ts).
 * Each batch looks for rows expired or revoked before a cutoff; without these, every batch of a
 * large backlog would scan the whole table. Creating them takes a write lock on each table for as
 * long as the build lasts (once, at upgrade).
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  for (const table of ['sessions', 'tokens']) {
    for (const column of ['expires_at', 'revoked_at']) {
      await db.schema.createIndex(`${table}_${column}`).on(table).column(column).execute();
    }
  }
}
