import type { Kysely } from 'kysely';
import { fail, isKeyholdError } from '../../errors/index.ts';
import type { AutomationRunsTable, Database } from '../../storage/schema.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import type { TenantContext } from '../shared/context.ts';
import { createAutomationRepository } from './automation-repository.ts';
import type { RunListRow } from './automation-repository.ts';
import type { Run, RunStatus, RunSummary, RunTrigger, StepRecord, StepSummary } from './types.ts';
import { isoTime as iso } from '../../platform/clock.ts';

/** What the run list keeps of each step: everything but its output and log. */
export function summarizeSteps(records: readonly StepRecord[]): StepSummary[] {
  return records.map(({ id, type, status, startedAt, durationMs, error }) => ({ id, type, status, startedAt, durationMs, error }));
}

function runFields(row: Omit<AutomationRunsTable, 'steps' | 'step_summary'>): Omit<Run, 'steps'> {
  return {
    id: row.id, automation: row.automation_name, environment: row.environment, trigger: row.trigger as RunTrigger,
    status: row.status as RunStatus, startedAt: iso(row.started_at)!, finishedAt: iso(row.finished_at),
    actor: { type: row.actor_type, id: row.actor_id }, revision: row.revision, error: row.error,
  };
}

export function toRun(row: AutomationRunsTable): Run {
  return { ...runFields(row), steps: JSON.parse(row.steps) as StepRecord[] };
}

/** A listed run; `legacySteps` is the `steps` column of a run stored before `step_summary` existed. */
export function toRunSummary(row: RunListRow, legacySteps?: string): RunSummary {
  const steps = row.step_summary !== null ? JSON.parse(row.step_summary) as StepSummary[]
    : summarizeSteps(JSON.parse(legacySteps ?? '[]') as StepRecord[]);
  return { ...runFields(row), steps };
}

/**
 * Run history: what each run did, as stored (already redacted). Reading it needs `list` on the tenant
 * and, for each run, `list` in the run's environment: a run's steps hold what that environment's
 * upstreams answered, so a person narrowed to staging, or a staging run's token, sees staging runs
 * only. A run the caller may not see is answered as a miss (the denial is audited by the authorizer).
 */
export function createRunQueries(deps: { db: Kysely<Database>; authz: Authorizer }) {
  const repo = createAutomationRepository(deps.db);
  const TENANT = { type: 'tenant' } as const;
  return {
    async get(ctx: TenantContext, id: string): Promise<Run> {
      await deps.authz.require(ctx, 'list', TENANT);
      const row = id.length <= 64 ? await repo.findRun(ctx.tenantId, id) : undefined;
      if (!row) fail('RUN_NOT_FOUND', 'no such run in this tenant');
      try {
        await deps.authz.require(ctx, 'list', TENANT, row.environment);
      } catch (err) {
        if (isKeyholdError(err) && err.code === 'FORBIDDEN') fail('RUN_NOT_FOUND', 'no such run in this tenant');
        throw err;
      }
      return toRun(row);
    },

    /** Newest first, as summaries: a run's outputs and logs are read with `get`, one run at a time. */
    async list(ctx: TenantContext, opts: { automation?: string; limit?: number }): Promise<RunSummary[]> {
      await deps.authz.require(ctx, 'list', TENANT);
      const environments: string[] = [];
      for (const { name } of await repo.environments(ctx.tenantId)) {
        if (await deps.authz.allowed(ctx, 'list', TENANT, name)) environments.push(name);
      }
      if (environments.length === 0) return [];
      const rows = await repo.listRuns(ctx.tenantId, { environments, ...(opts.automation ? { automation: opts.automation } : {}), limit: opts.limit ?? 50 });
      const out: RunSummary[] = [];
      // A run stored before the summary column: its steps are read one run at a time, so the list never holds many at once.
      for (const r of rows) out.push(toRunSummary(r, r.step_summary === null ? await repo.legacyRunSteps(ctx.tenantId, r.id) : undefined));
      return out;
    },
  };
}

export type RunQueries = ReturnType<typeof createRunQueries>;
