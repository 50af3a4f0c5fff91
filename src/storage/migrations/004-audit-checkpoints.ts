import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';
import { makeAppendOnly } from './append-only.ts';

/** Signed checkpoints of the audit chain: (seq, hash) pairs signed with a key derived from the root key. */
export async function up(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  await db.schema.createTable('audit_checkpoints')
    .addColumn('seq', 'bigint', (c) => c.primaryKey())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('signature', 'text', (c) => c.notNull())
    .addColumn('public_key', 'text', (c) => c.notNull())
    .execute();
  await makeAppendOnly(db, dialect, 'audit_checkpoints', 'audit checkpoints');
}
