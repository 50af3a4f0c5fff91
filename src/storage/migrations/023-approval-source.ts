import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * Where each escrow decision was given from (`access_approvals.source_ip`). Whether an earlier
 * approval still counts is decided again as its approver, and a tenant policy may read the source
 * address: it must be the approver's, not that of whoever is looking at the request. Approvals
 * recorded before this migration have none (null) and are judged as before.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.alterTable('access_approvals').addColumn('source_ip', 'text').execute();
}
