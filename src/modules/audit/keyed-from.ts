import type { Kysely } from 'kysely';
import type { Database } from '../../storage/schema.ts';

/** Events after this seq must be covered by a commit MAC (migration 019); those before it were written before MACs existed. */
export async function keyedFrom(db: Kysely<Database>): Promise<number | null> {
  // Written by the migration, never changed or removed: null means the audit tables were tampered with.
  const row = await db.selectFrom('audit_keyed_from').select('seq').where('id', '=', 1).executeTakeFirst();
  return row?.seq ?? null;
}

export const KEYED_FROM_MISSING = 'the record of where event MACs start (audit_keyed_from) was removed';
