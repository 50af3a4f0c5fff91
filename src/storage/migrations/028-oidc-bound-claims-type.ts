import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * How an OIDC identity's bound claims compare (`machine_identities.oidc_bound_claims_type`):
 * `string` (any of a list of exact values) or `glob` (`*` patterns). Identities saved before this
 * migration have none (null) and keep comparing each bound value as one JSON value, exactly as they
 * did: read as `exact`, so none of them starts admitting more than it did.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.alterTable('machine_identities').addColumn('oidc_bound_claims_type', 'text').execute();
}
