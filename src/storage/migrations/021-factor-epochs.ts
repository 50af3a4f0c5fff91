import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * A fence between an admin's reset of a lost second factor and work already in flight for the old
 * one (a login checking a code, a step-up, a replacement being enrolled): `users.factor_epoch` moves
 * on at every reset, and a session's second factor (`sessions.mfa_epoch`, the epoch it was verified
 * under) counts only while the two agree. Sessions verified before this migration keep theirs (0).
 *
 * Enrolments started before tickets existed (020) and never confirmed are dropped: confirming one
 * would give a first factor without a ticket.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.alterTable('users').addColumn('factor_epoch', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable('sessions').addColumn('mfa_epoch', 'integer').execute();
  await sql`update sessions set mfa_epoch = 0 where mfa_at is not null`.execute(db);
  await sql`update users set totp_pending_secret = null where totp_enabled = 0`.execute(db);
}
