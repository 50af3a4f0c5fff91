import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * A user's e-mail address (`users.email`), where the SMTP notification channel mails them: escrow
 * requests to approve, decisions, break-glass alerts. Optional; users created before this migration
 * have none (null) and are mailed nothing until an admin sets one.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.alterTable('users').addColumn('email', 'text').execute();
}
