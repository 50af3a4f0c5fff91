import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * How long after its `iat` an OIDC identity accepts a JWT (`machine_identities.oidc_max_age_ms`).
 * Identities saved before this migration have none (null) and get the default, an hour: until now a
 * JWT was good until its own `exp`, however far off.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.alterTable('machine_identities').addColumn('oidc_max_age_ms', 'integer').execute();
}
