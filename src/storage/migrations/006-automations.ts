import type { Kysely } from 'kysely';

/** Automation definitions (references only) and their runs (outputs and logs stored redacted). */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createTable('automations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    .addColumn('definition', 'text', (c) => c.notNull())
    // Bumped on every save: check-and-set for concurrent editors.
    .addColumn('revision', 'integer', (c) => c.notNull())
    // SHA-256 of the webhook trigger token (shown once); null unless the trigger is a webhook.
    .addColumn('webhook_token_hash', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addUniqueConstraint('automations_tenant_name', ['tenant_id', 'name'])
    .execute();

  await db.schema.createTable('automation_runs')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('automation_id', 'text', (c) => c.notNull())
    .addColumn('automation_name', 'text', (c) => c.notNull())
    .addColumn('environment', 'text', (c) => c.notNull())
    .addColumn('trigger', 'text', (c) => c.notNull())
    .addColumn('status', 'text', (c) => c.notNull())
    .addColumn('revision', 'integer', (c) => c.notNull())
    .addColumn('actor_type', 'text', (c) => c.notNull())
    .addColumn('actor_id', 'text', (c) => c.notNull())
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .addColumn('finished_at', 'bigint')
    .addColumn('steps', 'text', (c) => c.notNull())
    .addColumn('error', 'text')
    .execute();
  await db.schema.createIndex('automation_runs_tenant_started').on('automation_runs').columns(['tenant_id', 'started_at']).execute();
}
