import type { Kysely } from 'kysely';
import type { Database } from '../../storage/schema.ts';

/** Events after this seq must be covered by a commit MAC (migration 019); those before it were written before MACs existed. */
export async function keyedFrom(db: Kysely<Database>): Promise<number | null> {
  // Written by the migration, never changed or removed: null means the audit tables were tampered with.
  const row = await db.selectFrom('audit_keyed_from').select('seq').where('id', '=', 1).executeTakeFirst();
  return row?.seq ?? null;
}

/**
 * Where the MAC rule starts, for a proof of the log up to `headSeq`: the seq, or what is wrong with
 * the record (removed, or moved past the end of the log: either is tampering). Verify and the
 * checkpointer both start here.
 */
export async function macStart(db: Kysely<Database>, headSeq: number): Promise<{ seq: number } | { problem: string; firstBadSeq: number }> {
  const seq = await keyedFrom(db);
  if (seq === null) return { problem: 'the record of where event MACs start (audit_keyed_from) was removed', firstBadSeq: 1 };
  if (seq > headSeq) return { problem: `event MACs start after event ${seq}, past the end of the log (${headSeq})`, firstBadSeq: headSeq + 1 };
  return { seq };
}
