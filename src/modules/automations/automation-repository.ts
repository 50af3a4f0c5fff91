import type { Kysely } from 'kysely';
import type { Executor } from '../../storage/database.ts';
import type { AutomationRunsTable, AutomationsTable, Database } from '../../storage/schema.ts';

/** A run as the list reads it: every column but `steps`, which may hold megabytes of outputs. */
export type RunListRow = Omit<AutomationRunsTable, 'steps'>;
const RUN_LIST_COLUMNS = [
  'id', 'tenant_id', 'automation_id', 'automation_name', 'environment', 'trigger', 'status', 'revision',
  'actor_type', 'actor_id', 'started_at', 'finished_at', 'step_summary', 'error',
] as const satisfies ReadonlyArray<keyof RunListRow>;

/** Queries over automations and their runs; every one is scoped by tenant. */
export function createAutomationRepository(db: Kysely<Database>) {
  return {
    find(tenantId: string, name: string, executor: Executor = db): Promise<AutomationsTable | undefined> {
      return executor.selectFrom('automations').selectAll().where('tenant_id', '=', tenantId).where('name', '=', name).executeTakeFirst();
    },

    findById(tenantId: string, id: string): Promise<AutomationsTable | undefined> {
      return db.selectFrom('automations').selectAll().where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
    },

    list(tenantId: string): Promise<AutomationsTable[]> {
      return db.selectFrom('automations').selectAll().where('tenant_id', '=', tenantId).orderBy('name').execute();
    },

    /** Every automation of every tenant (the scheduler's start-up load). */
    listAll(): Promise<AutomationsTable[]> {
      return db.selectFrom('automations').selectAll().orderBy('tenant_id').orderBy('name').execute();
    },

    async insert(row: AutomationsTable, executor: Executor): Promise<void> {
      await executor.insertInto('automations').values(row).execute();
    },

    /** Replaces a definition if its revision is still `expected`; false when another writer won. */
    async update(tenantId: string, id: string, expected: number, patch: Pick<AutomationsTable, 'definition' | 'updated_at'> & { webhook_token_hash?: string | null }, executor: Executor): Promise<boolean> {
      const res = await executor.updateTable('automations').set({ ...patch, revision: expected + 1 })
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('revision', '=', expected).executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },

    /** Deletes an automation (only at revision `expected`, when given); false when nothing was deleted. */
    async remove(tenantId: string, id: string, executor: Executor, expected?: number): Promise<boolean> {
      let q = executor.deleteFrom('automations').where('tenant_id', '=', tenantId).where('id', '=', id);
      if (expected !== undefined) q = q.where('revision', '=', expected);
      const res = await q.executeTakeFirst();
      return Number(res.numDeletedRows) > 0;
    },

    async insertRun(row: AutomationRunsTable, executor: Executor = db): Promise<void> {
      await executor.insertInto('automation_runs').values(row).execute();
    },

    async finishRun(tenantId: string, id: string, patch: Pick<AutomationRunsTable, 'status' | 'finished_at' | 'steps' | 'step_summary' | 'error'>, executor: Executor = db): Promise<void> {
      await executor.updateTable('automation_runs').set(patch).where('tenant_id', '=', tenantId).where('id', '=', id).execute();
    },

    findRun(tenantId: string, id: string): Promise<AutomationRunsTable | undefined> {
      return db.selectFrom('automation_runs').selectAll().where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
    },

    /** Newest first, only in `environments`; without `steps` (the summary is `step_summary`). */
    listRuns(tenantId: string, opts: { environments: readonly string[]; automation?: string; limit: number }): Promise<RunListRow[]> {
      let q = db.selectFrom('automation_runs').select(RUN_LIST_COLUMNS).where('tenant_id', '=', tenantId).where('environment', 'in', opts.environments);
      if (opts.automation) q = q.where('automation_name', '=', opts.automation);
      return q.orderBy('started_at', 'desc').orderBy('id').limit(opts.limit).execute();
    },

    /** The `steps` of a run stored before `step_summary` existed (migration 025). */
    async legacyRunSteps(tenantId: string, id: string): Promise<string | undefined> {
      const row = await db.selectFrom('automation_runs').select('steps').where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
      return row?.steps;
    },

    /** The names the catalog of a definition may reference, in one pass per kind. */
    async catalog(tenantId: string) {
      const [secrets, environments, machines] = await Promise.all([
        db.selectFrom('secrets').select('name').where('tenant_id', '=', tenantId).where('deleted_at', 'is', null).execute(),
        db.selectFrom('environments').select('name').where('tenant_id', '=', tenantId).execute(),
        db.selectFrom('machine_identities').select('name').where('tenant_id', '=', tenantId).where('disabled_at', 'is', null).execute(),
      ]);
      return {
        secrets: new Set(secrets.map((r) => r.name)),
        environments: new Set(environments.map((r) => r.name)),
        machines: new Set(machines.map((r) => r.name)),
      };
    },

    environments(tenantId: string): Promise<Array<{ name: string }>> {
      return db.selectFrom('environments').select('name').where('tenant_id', '=', tenantId).orderBy('name').execute();
    },

    findMachineByName(tenantId: string, name: string) {
      return db.selectFrom('machine_identities').select(['id', 'name', 'disabled_at']).where('tenant_id', '=', tenantId).where('name', '=', name).executeTakeFirst();
    },
  };
}

export type AutomationRepository = ReturnType<typeof createAutomationRepository>;
