import type { Kysely } from 'kysely';

/**
 * Retries of failed scheduler-driven rotations (SPEC §6), stored on the policy so a restart or a
 * change of leader neither loses nor repeats one: when the next attempt is due (`retry_at`, also
 * set while a claimed run is in flight, so a node dying before it starts brings it back), for
 * which trigger, how many attempts in a row failed, and when Keyhold gave up. `last_succeeded_at`
 * and `expiry_claimed_for` (the expiry due point a scheduler has claimed) decide expiry runs: a
 * failed run no longer counts as "rotated since", and two schedulers never both start one.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  for (const [name, type] of [
    ['retry_at', 'bigint'], ['retry_trigger', 'text'], ['gave_up_at', 'bigint'], ['last_succeeded_at', 'bigint'], ['expiry_claimed_for', 'bigint'],
  ] as const) {
    await db.schema.alterTable('rotation_policies').addColumn(name, type).execute();
  }
  await db.schema.alterTable('rotation_policies').addColumn('retry_attempts', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.createIndex('rotation_policies_retry').on('rotation_policies').columns(['retry_at']).execute();
  // Policies stored before this knew their last success only as the last result.
  await (db as Kysely<{ rotation_policies: { last_succeeded_at: number | null; last_run_at: number | null; last_result: string | null } }>)
    .updateTable('rotation_policies').set((eb) => ({ last_succeeded_at: eb.ref('last_run_at') })).where('last_result', '=', 'succeeded').execute();
}
