import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * A TOTP secret being enrolled lives in a column of its own until a code from it is confirmed, so
 * starting a re-enrolment neither disables the confirmed factor nor replaces its secret (before
 * this, it did both at once, and login fell back to the password alone). Enrolments started and
 * never confirmed before the upgrade move to the new column: their factor was not enabled anyway.
 */
export async function up(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  const blob = dialect === 'postgres' ? sql`bytea` : sql`blob`;
  // Sealed under the tenant KEK exactly like totp_secret (same binding); null when no enrolment is pending.
  await db.schema.alterTable('users').addColumn('totp_pending_secret', blob).execute();
  await sql`update users set totp_pending_secret = totp_secret, totp_secret = null, totp_last_step = null
    where totp_enabled = 0 and totp_secret is not null`.execute(db);
}
