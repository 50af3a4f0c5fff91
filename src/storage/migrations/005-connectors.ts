import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * Connectors: configured integration instances per (tenant, environment, name). They hold settings and
 * the names of the secrets in their slots, never values. `connector_slots` indexes slot → secret name so
 * "what depends on this secret" (inventory, rotation fan-out) is one indexed query.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.createTable('connectors')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('environment_id', 'text', (c) => c.notNull().references('environments.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('type', 'text', (c) => c.notNull())
    // JSON: the type's normalised, non-secret settings.
    .addColumn('settings', 'text', (c) => c.notNull())
    // JSON: slot name → secret name (resolved in the connector's own environment).
    .addColumn('slots', 'text', (c) => c.notNull())
    .addColumn('owner', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('revision', 'integer', (c) => c.notNull())
    .addUniqueConstraint('connectors_tenant_env_name', ['tenant_id', 'environment_id', 'name'])
    .execute();

  await db.schema.createTable('connector_slots')
    .addColumn('connector_id', 'text', (c) => c.notNull().references('connectors.id'))
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('slot', 'text', (c) => c.notNull())
    .addColumn('secret_name', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('connector_slots_pk', ['connector_id', 'slot'])
    .execute();
  await db.schema.createIndex('connector_slots_secret').on('connector_slots').columns(['tenant_id', 'secret_name']).execute();
}
