import { Cron } from 'croner';
import { SYSTEM_ACTOR } from '../shared/context.ts';
import type { AutomationListener } from './automation-service.ts';
import { createAutomationRepository } from './automation-repository.ts';
import type { Runner } from './runner.ts';
import type { AutomationDefinition } from './types.ts';
import type { Kysely } from 'kysely';
import type { Database } from '../../storage/schema.ts';

/**
 * Schedule triggers: one croner job per automation with a `schedule` trigger, kept in step with
 * the stored definitions (loaded at start, then told of every change). A run that is still going
 * when the next tick comes is not started twice (`protect`). Every process that loads the
 * definitions fires them, and learns only of its own changes: run scheduled automations on one node
 * until they get a leader like the rotation scheduler's (SPEC §13; docs/operations.md, "Scale-out").
 */
export function createAutomationScheduler(deps: { db: Kysely<Database>; runner: Pick<Runner, 'start'>; onError: (err: unknown) => void }) {
  const repo = createAutomationRepository(deps.db);
  const jobs = new Map<string, Cron>();
  const key = (tenantId: string, name: string) => `${tenantId}\u0000${name}`;

  function schedule(tenantId: string, def: AutomationDefinition | null, name: string): void {
    jobs.get(key(tenantId, name))?.stop();
    jobs.delete(key(tenantId, name));
    if (!def || def.trigger.type !== 'schedule') return;
    const environment = def.trigger.environment;
    const job = new Cron(def.trigger.cron, { timezone: 'UTC', protect: true, unref: true }, async () => {
      const ctx = { tenantId, actor: SYSTEM_ACTOR, requestId: `schedule:${name}` };
      await deps.runner.start(ctx, name, { environment, trigger: 'schedule', wait: true }).catch(deps.onError);
    });
    jobs.set(key(tenantId, name), job);
  }

  const listener: AutomationListener = (tenantId, automation, name) => schedule(tenantId, automation?.definition ?? null, name);

  return {
    listener,
    async start(): Promise<void> {
      for (const row of await repo.listAll()) schedule(row.tenant_id, JSON.parse(row.definition) as AutomationDefinition, row.name);
    },
    /** Next fire time of an automation's schedule, if it has one. */
    nextRun(tenantId: string, name: string): Date | null {
      return jobs.get(key(tenantId, name))?.nextRun() ?? null;
    },
    stop(): void {
      for (const job of jobs.values()) job.stop();
      jobs.clear();
    },
  };
}

export type AutomationScheduler = ReturnType<typeof createAutomationScheduler>;
