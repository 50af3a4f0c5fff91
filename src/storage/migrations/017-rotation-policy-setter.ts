import type { Kysely } from 'kysely';

/**
 * Who last set each rotation policy. Its settings may name other secrets (an admin password, a
 * bearer token) that the run resolves as Keyhold itself, and setting it requires `use` of those:
 * the row says whose permission that was. Policies set before this migration keep null (unknown;
 * the `rotation.policy.set` audit events still name the actor).
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.alterTable('rotation_policies').addColumn('updated_by', 'text').execute();
}
