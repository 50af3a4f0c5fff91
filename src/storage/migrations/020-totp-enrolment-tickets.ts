import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * A user's first TOTP factor needs a one-time enrolment ticket from a tenant admin: before this, a
 * session from the password alone could enrol one, and confirming it counted as a fresh step-up.
 * The ticket is kept only as its SHA-256 (like session tokens) with its expiry; both are null when
 * none is outstanding, as they are for every user when this migration runs.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.alterTable('users').addColumn('totp_ticket_hash', 'text').execute();
  await db.schema.alterTable('users').addColumn('totp_ticket_expires_at', 'bigint').execute();
}
