import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * One row per scheduled fire of an automation (tenant, automation name, the instant the schedule
 * named): the node whose insert lands starts the run, so several nodes on one database fire each
 * schedule once (automations/scheduler.ts). Rows older than a week are deleted by the scheduler.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.createTable('automation_fires')
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('automation', 'text', (c) => c.notNull())
    .addColumn('fire_at', 'bigint', (c) => c.notNull())
    .addColumn('node', 'text', (c) => c.notNull())
    .addColumn('claimed_at', 'bigint', (c) => c.notNull())
    .addPrimaryKeyConstraint('automation_fires_pk', ['tenant_id', 'automation', 'fire_at'])
    .execute();
  await db.schema.createIndex('automation_fires_claimed_at').on('automation_fires').column('claimed_at').execute();
}
