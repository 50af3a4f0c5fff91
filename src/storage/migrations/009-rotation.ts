import type { Kysely } from 'kysely';

/**
 * Rotation (SPEC §6): a policy per secret and environment (with its durable next-run time), every
 * rotation's state so a crash at any step resumes or rolls back, and named leases for leadership.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await db.schema.createTable('rotation_policies')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('secret_id', 'text', (c) => c.notNull())
    .addColumn('secret_name', 'text', (c) => c.notNull())
    .addColumn('environment_id', 'text', (c) => c.notNull())
    .addColumn('environment', 'text', (c) => c.notNull())
    .addColumn('rotator', 'text', (c) => c.notNull())
    // Non-secret settings as JSON; credentials the rotator needs are named secrets, never values.
    .addColumn('settings', 'text', (c) => c.notNull())
    // 'interval' (schedule = milliseconds), 'cron' (schedule = expression) or 'manual' (no schedule).
    .addColumn('schedule_kind', 'text', (c) => c.notNull())
    .addColumn('schedule', 'text', (c) => c.notNull())
    .addColumn('catch_up', 'text', (c) => c.notNull())
    .addColumn('notify', 'text', (c) => c.notNull())
    .addColumn('rollback_window_ms', 'bigint', (c) => c.notNull())
    .addColumn('expiry_lead_ms', 'bigint')
    // What a rotator must remember between rotations (which of two alternating roles is live). Never a value.
    .addColumn('rotator_state', 'text', (c) => c.notNull())
    .addColumn('next_run_at', 'bigint')
    // Why the next run is due when it is not the schedule (a policy change, compromise): set with next_run_at = now.
    .addColumn('due_trigger', 'text')
    .addColumn('last_run_at', 'bigint')
    .addColumn('last_result', 'text')
    .addColumn('last_error', 'text')
    .addColumn('failures', 'integer', (c) => c.notNull())
    .addColumn('revision', 'integer', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addUniqueConstraint('rotation_policies_target', ['tenant_id', 'secret_id', 'environment_id'])
    .execute();
  await db.schema.createIndex('rotation_policies_due').on('rotation_policies').columns(['next_run_at']).execute();

  await db.schema.createTable('rotations')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('secret_id', 'text', (c) => c.notNull())
    .addColumn('secret_name', 'text', (c) => c.notNull())
    .addColumn('environment_id', 'text', (c) => c.notNull())
    .addColumn('environment', 'text', (c) => c.notNull())
    .addColumn('rotator', 'text', (c) => c.notNull())
    .addColumn('trigger', 'text', (c) => c.notNull())
    .addColumn('rehearsal', 'integer', (c) => c.notNull())
    // running → promoted → succeeded; or awaiting_value (manual); or rolling_back → rolled_back; abandoned.
    .addColumn('state', 'text', (c) => c.notNull())
    .addColumn('step', 'text', (c) => c.notNull())
    .addColumn('attempt', 'integer', (c) => c.notNull())
    // Set while the rotation is live, null once it ends: the unique constraint lets one rotation per
    // secret and environment run at a time, on every node (NULLs never collide).
    .addColumn('active_key', 'text', (c) => c.unique())
    .addColumn('lease_owner', 'text')
    .addColumn('lease_until', 'bigint')
    .addColumn('heartbeat_at', 'bigint')
    .addColumn('from_version', 'integer')
    .addColumn('pending_version', 'integer')
    .addColumn('to_version', 'integer')
    .addColumn('rotator_state', 'text', (c) => c.notNull())
    .addColumn('error_code', 'text')
    .addColumn('error_step', 'text')
    .addColumn('error_detail', 'text')
    .addColumn('failed_connectors', 'text', (c) => c.notNull())
    .addColumn('checks', 'text', (c) => c.notNull())
    .addColumn('actor_type', 'text', (c) => c.notNull())
    .addColumn('actor_id', 'text', (c) => c.notNull())
    .addColumn('started_at', 'bigint', (c) => c.notNull())
    .addColumn('updated_at', 'bigint', (c) => c.notNull())
    .addColumn('finished_at', 'bigint')
    .addColumn('reminded_at', 'bigint')
    .execute();
  await db.schema.createIndex('rotations_target').on('rotations').columns(['tenant_id', 'secret_id', 'environment_id', 'started_at']).execute();
  await db.schema.createIndex('rotations_state').on('rotations').columns(['state', 'lease_until']).execute();

  // Named leases (the scheduler's leadership): taken and renewed with one guarded UPDATE.
  await db.schema.createTable('leases')
    .addColumn('name', 'text', (c) => c.primaryKey())
    .addColumn('owner', 'text', (c) => c.notNull())
    .addColumn('until', 'bigint', (c) => c.notNull())
    .execute();
}
