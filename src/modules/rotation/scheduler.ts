import type { Kysely } from 'kysely';
import type { Clock } from '../../platform/clock.ts';
import type { Database, RotationPoliciesTable } from '../../storage/schema.ts';
import { failureCode } from '../../storage/db-errors.ts';
import { SYSTEM_ACTOR, type TenantContext } from '../shared/context.ts';
import type { RotationEngine } from './engine.ts';
import { keepLead, type Leadership } from './leadership.ts';
import { createRotationRepository } from './repository.ts';
import type { RotationService } from './rotation-service.ts';
import { followingRun, MIN_INTERVAL_MS, missedWholePeriod, nextRun } from './schedule.ts';
import { RETRY_LIMITS } from './retries.ts';
import type { Trigger } from './types.ts';
import { startFailedNotification } from './notify.ts';
import type { Notifier } from '../notifications/notifier.ts';
import { runBounded } from '../../platform/run-bounded.ts';

const DAY = 86_400_000;
/** Due runs (and expiry runs, and retries) one tenant may start in one pass (of 50 each): the rest wait for the next pass, behind other tenants' first ones. */
const PER_TENANT = 10;
/**
 * Rotations a pass runs at once, and of one tenant at once: a rotation whose source hangs holds one slot until its
 * step deadline (KEYHOLD_ROTATION_STEP_TIMEOUT), and a tenant whose every source hangs holds half of them, while
 * the other slots work through the other tenants' runs.
 */
const CONCURRENCY = 4;
const TENANT_SLOTS = 2;

export interface TickReport {
  leader: boolean;
  recovered: number;
  started: number;
  skipped: number;
  /** Failed runs tried again. */
  retried: number;
  reminded: number;
}

/**
 * The rotation scheduler (SPEC §6, §13). Next-run times are stored, so a restart loses nothing;
 * each due run is claimed with a guarded UPDATE of its next-run time, so two schedulers never run
 * it twice even without a leader; leadership (lease row, and an advisory lock on PostgreSQL) keeps
 * the work on one node. Each tick also recovers rotations whose node died, starts rotations before
 * a secret's expiry, tries failed scheduler-driven runs again (retries.ts; the state is stored on the
 * policy, claimed like a due run), and reminds people of manual rotations waiting for a value.
 */
export function createRotationScheduler(deps: {
  db: Kysely<Database>;
  clock: Clock;
  leadership: Leadership;
  service: Pick<RotationService, 'runScheduled'>;
  engine: Pick<RotationEngine, 'recover' | 'remind'>;
  notifier: Notifier;
  /** How long a claimed run may take to start before another pass tries it again (the rotation lease). */
  holdMs: number;
  onError(err: unknown): void;
}) {
  const { db, clock, leadership, service, engine, holdMs } = deps;
  const repo = createRotationRepository(db);
  let busy: Promise<TickReport> | null = null;
  let timer: NodeJS.Timeout | null = null;
  const ctxOf = (p: RotationPoliciesTable): TenantContext => ({ tenantId: p.tenant_id, actor: SYSTEM_ACTOR, requestId: `rotation-scheduler:${p.id}` });

  async function run(p: RotationPoliciesTable, trigger: Trigger, report: TickReport): Promise<void> {
    try {
      await service.runScheduled(ctxOf(p), p, trigger);
      report.started++;
    } catch (err) {
      // Left marked for a retry: once the live rotation ends, a success clears it and anything else tries again.
      const code = (err as { code?: string }).code;
      if (code === 'ROTATION_IN_PROGRESS') report.skipped++;
      // Deleted since it was read: nothing is left to run, record or tell anyone about.
      else if (code === 'ROTATION_POLICY_NOT_FOUND') report.skipped++;
      else {
        deps.onError(err);
        const at = clock.now();
        const retry = await db.transaction().execute((trx) => createRotationRepository(trx)
          .recordResult(p.tenant_id, p.secret_id, p.environment_id, { result: 'error', error: failureCode(err), at, trigger }));
        void deps.notifier.notify(startFailedNotification(p, trigger, failureCode(err), retry)).catch(deps.onError);
      }
    }
  }

  async function scheduled(p: RotationPoliciesTable, report: TickReport): Promise<void> {
    const now = clock.now();
    const trigger = (p.due_trigger ?? 'schedule') as Trigger;
    let next: number | null;
    let skip: boolean;
    try {
      next = followingRun(p.schedule_kind, p.schedule, p.next_run_at!, now);
      skip = trigger === 'schedule' && p.catch_up === 'skip' && missedWholePeriod(p.schedule_kind, p.schedule, p.next_run_at!, now);
    } catch (err) {
      // A stored schedule that no longer parses: it stops coming due (status says why) rather than failing every pass.
      if (await repo.claimRun(p.id, p.next_run_at!, null, now, null)) {
        await repo.recordResult(p.tenant_id, p.secret_id, p.environment_id, { result: 'error', error: `schedule: ${(err as Error).message}`.slice(0, 500), at: now });
      }
      return;
    }
    if (!(await repo.claimRun(p.id, p.next_run_at!, next, now, skip ? null : { trigger, until: now + holdMs }))) return;
    if (skip) {
      await repo.recordResult(p.tenant_id, p.secret_id, p.environment_id, { result: 'skipped', error: 'missed while no scheduler ran (catch-up: skip)', at: now });
      report.skipped++;
      return;
    }
    await run(p, trigger, report);
  }

  /** One expiry run per due point (expiry minus lead; the query returns only those not rotated or claimed since). */
  async function expiring(p: RotationPoliciesTable & { due_at: number }, report: TickReport): Promise<void> {
    const now = clock.now();
    if (!(await repo.claimExpiry(p.id, p.expiry_claimed_for, p.due_at, now + holdMs, now))) return;
    await run(p, 'expiry', report);
  }

  async function retry(p: RotationPoliciesTable, report: TickReport): Promise<void> {
    const now = clock.now();
    if (!(await repo.claimRetry(p.id, p.retry_at!, now + holdMs, now))) return;
    report.retried++;
    await run(p, (p.retry_trigger ?? 'schedule') as Trigger, report);
  }

  /**
   * A clock that ran ahead (a node's, or this one's before it was put right) leaves next runs and retries as far in the
   * future as it was wrong: each pass pulls those of rows written "in the future" back to where the schedule puts them
   * from now. Nothing runs twice: a run is still claimed on its stored time.
   */
  async function pullInAfterClockJump(): Promise<void> {
    const now = clock.now();
    for (const p of await repo.writtenAhead(now, MIN_INTERVAL_MS, 100)) {
      let next = p.next_run_at;
      try {
        const sane = nextRun(p.schedule_kind, p.schedule, now);
        if (next !== null && sane !== null && next > sane) next = sane;
      } catch {
        // A stored schedule that does not parse: the due pass deals with it.
      }
      const retryAt = p.retry_at !== null && p.retry_at > now + RETRY_LIMITS.capMs + holdMs ? now : p.retry_at;
      await repo.pullIn(p.id, p.updated_at, { next_run_at: next, retry_at: retryAt, updated_at: now });
    }
  }

  async function tick(): Promise<TickReport> {
    const report: TickReport = { leader: false, recovered: 0, started: 0, skipped: 0, retried: 0, reminded: 0 };
    if (!(await leadership.acquire())) return report;
    report.leader = true;
    const lead = keepLead(leadership, deps.onError);
    try {
      await pass(report, lead.leading);
    } finally {
      lead.stop();
    }
    return report;
  }

  /** The pass of a leader; `leading` renews the lead and says whether this node still has it (nothing starts once it is lost). */
  async function pass(report: TickReport, leading: () => Promise<boolean>): Promise<void> {
    report.recovered = await engine.recover();
    await pullInAfterClockJump();

    const now = clock.now();
    const runs: Array<{ p: RotationPoliciesTable; go: () => Promise<void> }> = [
      ...(await repo.duePolicies(now, 50, PER_TENANT)).map((p) => ({ p, go: () => scheduled(p, report) })),
      ...(await repo.expiringPolicies(now, 50, PER_TENANT)).map((p) => ({ p, go: () => expiring(p, report) })),
      ...(await repo.retriesDue(now, 50, PER_TENANT)).map((p) => ({ p, go: () => retry(p, report) })),
    ];
    // One run per policy per pass (a due run before its expiry or retry): the next pass sees how this one ended.
    const taken = new Set<string>();
    const distinct = runs.filter(({ p }) => !taken.has(p.id) && Boolean(taken.add(p.id)));
    // A run waiting for a slot starts only while this node leads: one that lost the lead leaves it to the new leader.
    await runBounded(distinct, { concurrency: CONCURRENCY, perKey: TENANT_SLOTS, keyOf: ({ p }) => p.tenant_id, onError: deps.onError },
      async ({ go }) => { if (await leading()) await go(); });
    if (!(await leading())) return;

    for (const r of await repo.awaitingValue()) {
      const p = await repo.findPolicy(r.tenant_id, r.secret_id, r.environment_id);
      const settings = JSON.parse(p?.settings ?? '{}') as { reminderMs?: number; overdueMs?: number };
      const now = clock.now();
      if (now - (r.reminded_at ?? r.started_at) < (settings.reminderMs ?? DAY)) continue;
      const res = await db.updateTable('rotations').set({ reminded_at: now }).where('id', '=', r.id).where('reminded_at', r.reminded_at === null ? 'is' : '=', r.reminded_at).executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) continue;
      engine.remind(r, p?.notify ?? '[]', now >= r.started_at + (settings.overdueMs ?? 7 * DAY));
      report.reminded++;
    }
  }

  /** Overlapping calls share the pass in flight. */
  function once(): Promise<TickReport> {
    busy ??= tick().finally(() => {
      busy = null;
    });
    return busy;
  }

  return {
    /** One pass (tests call it directly with a manual clock). */
    tick: once,
    start(intervalMs: number): void {
      const fire = () => void once().catch(deps.onError);
      timer = setInterval(fire, intervalMs);
      timer.unref();
      fire();
    },
    async stop(): Promise<void> {
      if (timer) clearInterval(timer);
      timer = null;
      await busy?.catch(() => null);
      await leadership.release().catch(deps.onError);
    },
  };
}

export type RotationScheduler = ReturnType<typeof createRotationScheduler>;
