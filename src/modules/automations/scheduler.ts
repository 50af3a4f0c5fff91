import { randomUUID } from 'node:crypto';
import { Cron } from 'croner';
import type { Kysely } from 'kysely';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../storage/schema.ts';
import { SYSTEM_ACTOR } from '../shared/context.ts';
import type { AutomationListener } from './automation-service.ts';
import { createAutomationRepository } from './automation-repository.ts';
import type { Runner } from './runner.ts';
import type { AutomationDefinition } from './types.ts';

/** How often every node reloads the schedules (changes made on another node reach this one within it). */
export const SCHEDULE_RESYNC_MS = 60_000;
/** Claims older than this are deleted at a resync: long past any clock skew between nodes. */
const CLAIMS_KEPT_MS = 7 * 24 * 3600_000;

type ScheduleTrigger = { cron: string; environment: string };

/**
 * The instant a schedule named at or before `firedAt`: the key every node claims. croner hands its
 * callback the moment the timer woke (`currentRun`), which a busy event loop or a paused VM puts
 * seconds late on one node and not on another; claiming that would run the instant once per node.
 */
function scheduledInstant(cron: string, firedAt: number): number {
  return new Cron(cron, { paused: true, timezone: 'UTC' }).previousRuns(1, new Date(firedAt + 1))[0]?.getTime() ?? firedAt;
}

function scheduleOf(def: AutomationDefinition | null): ScheduleTrigger | null {
  return def && def.trigger.type === 'schedule' ? { cron: def.trigger.cron, environment: def.trigger.environment } : null;
}

/**
 * Schedule triggers: one croner job per automation with a `schedule` trigger. Every node runs the
 * jobs; a fire starts a run only on the node that claims it: one row per (tenant, automation,
 * scheduled instant) in `automation_fires`, so N nodes on one database run each fire once. Before
 * claiming, a fire re-reads its definition (a schedule changed or removed on another node does not
 * fire here), and every node reloads all schedules every SCHEDULE_RESYNC_MS; changes on this node
 * apply at once (the listener). A run still going when the next tick comes is not started twice on
 * one node (`protect`); across nodes the claim decides.
 *
 * @example
 * const scheduler = createAutomationScheduler({ db, runner, clock, onError });
 * await scheduler.start(); // load every schedule and start the resync
 */
export function createAutomationScheduler(deps: {
  db: Kysely<Database>; runner: Pick<Runner, 'start'>; clock: Clock; onError: (err: unknown) => void; nodeId?: string;
  /** While sealed this node claims nothing: it could not run or record the run, and another node may. */
  isSealed?: () => boolean;
}) {
  const { db, runner, clock, onError } = deps;
  const node = deps.nodeId ?? randomUUID();
  const repo = createAutomationRepository(db);
  const jobs = new Map<string, { job: Cron; trigger: ScheduleTrigger }>();
  const key = (tenantId: string, name: string) => `${tenantId}\u0000${name}`;
  let resync: ReturnType<typeof setInterval> | null = null;

  /** Starts, replaces or stops the job of one automation to match its definition. */
  function schedule(tenantId: string, def: AutomationDefinition | null, name: string): void {
    const trigger = scheduleOf(def);
    const current = jobs.get(key(tenantId, name));
    if (current && trigger && current.trigger.cron === trigger.cron && current.trigger.environment === trigger.environment) return;
    current?.job.stop();
    jobs.delete(key(tenantId, name));
    if (!trigger) return;
    const job = new Cron(trigger.cron, { timezone: 'UTC', protect: true, unref: true }, async (self: Cron) => {
      await fire(tenantId, name, trigger, self.currentRun()?.getTime() ?? clock.now()).catch(onError);
    });
    jobs.set(key(tenantId, name), { job, trigger });
  }

  /**
   * One scheduled instant of one automation: runs it if the schedule is still what this node
   * holds and no node claimed that instant first. Returns whether this node started the run.
   */
  async function fire(tenantId: string, name: string, trigger: ScheduleTrigger, firedAt: number): Promise<boolean> {
    if (deps.isSealed?.()) return false;
    const at = scheduledInstant(trigger.cron, firedAt);
    const row = await repo.find(tenantId, name);
    const def = row ? (JSON.parse(row.definition) as AutomationDefinition) : null;
    const stored = scheduleOf(def);
    if (!stored || stored.cron !== trigger.cron || stored.environment !== trigger.environment) {
      // Changed or removed on another node since this one loaded it.
      schedule(tenantId, def, name);
      return false;
    }
    const claimed = await db.insertInto('automation_fires')
      .values({ tenant_id: tenantId, automation: name, fire_at: at, node, claimed_at: clock.now() })
      .onConflict((oc) => oc.columns(['tenant_id', 'automation', 'fire_at']).doNothing())
      .executeTakeFirst();
    if (Number(claimed.numInsertedOrUpdatedRows ?? 0) !== 1) return false;
    const ctx = { tenantId, actor: SYSTEM_ACTOR, requestId: `schedule:${name}` };
    await runner.start(ctx, name, { environment: trigger.environment, trigger: 'schedule', wait: true });
    return true;
  }

  /** Makes the jobs match every stored definition, and forgets claims nobody needs any more. */
  async function load(): Promise<void> {
    const seen = new Set<string>();
    for (const row of await repo.listAll()) {
      seen.add(key(row.tenant_id, row.name));
      schedule(row.tenant_id, JSON.parse(row.definition) as AutomationDefinition, row.name);
    }
    for (const [k, { job }] of jobs) {
      if (!seen.has(k)) {
        job.stop();
        jobs.delete(k);
      }
    }
    await db.deleteFrom('automation_fires').where('claimed_at', '<', clock.now() - CLAIMS_KEPT_MS).execute();
  }

  const listener: AutomationListener = (tenantId, automation, name) => schedule(tenantId, automation?.definition ?? null, name);

  return {
    listener,
    async start(): Promise<void> {
      await load();
      resync ??= setInterval(() => void load().catch(onError), SCHEDULE_RESYNC_MS);
      resync.unref();
    },
    /** Reloads every schedule now (the resync timer does this every SCHEDULE_RESYNC_MS). */
    resync: load,
    /** One fire, as the job would make it waking at `at` (tests, and a node catching up): it claims the instant the schedule named at or before `at`. */
    fire(tenantId: string, name: string, at: number): Promise<boolean> {
      const held = jobs.get(key(tenantId, name));
      return held ? fire(tenantId, name, held.trigger, at) : Promise.resolve(false);
    },
    /** Next fire time of an automation's schedule, if it has one. */
    nextRun(tenantId: string, name: string): Date | null {
      return jobs.get(key(tenantId, name))?.job.nextRun() ?? null;
    },
    stop(): void {
      if (resync) clearInterval(resync);
      resync = null;
      for (const { job } of jobs.values()) job.stop();
      jobs.clear();
    },
  };
}

export type AutomationScheduler = ReturnType<typeof createAutomationScheduler>;
