import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/** Signed checkpoints of the audit chain: (seq, hash) pairs signed with a key derived from the root key. */
export async function up(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  await db.schema.createTable('audit_checkpoints')
    .addColumn('seq', 'bigint', (c) => c.primaryKey())
    .addColumn('hash', 'text', (c) => c.notNull())
    .addColumn('time', 'bigint', (c) => c.notNull())
    .addColumn('signature', 'text', (c) => c.notNull())
    .addColumn('public_key', 'text', (c) => c.notNull())
    .execute();
  if (dialect === 'sqlite') {
    await sql`create trigger audit_checkpoints_no_update before update on audit_checkpoints
      begin select raise(abort, 'audit checkpoints are append-only'); end`.execute(db);
    await sql`create trigger audit_checkpoints_no_delete before delete on audit_checkpoints
      begin select raise(abort, 'audit checkpoints are append-only'); end`.execute(db);
  } else {
    await sql`create trigger audit_checkpoints_append_only before update or delete or truncate on audit_checkpoints
      for each statement execute function keyhold_audit_append_only()`.execute(db);
  }
}
