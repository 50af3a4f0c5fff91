import { sql, type RawBuilder } from 'kysely';
import type { Executor } from '../../storage/database.ts';
import type { RotationPoliciesTable, RotationsTable } from '../../storage/schema.ts';
import type { Recipient } from '../notifications/notifier.ts';
import type { ConnectorCheck, Rotation, RotationPolicy, RotationState, RotationStep } from './types.ts';
import { isoTime as iso } from '../../platform/clock.ts';
import { afterFailure, policyAttention, RETRIED_TRIGGERS, RETRY_LIMITS, type RetryOutcome } from './retries.ts';

export function toPolicy(r: RotationPoliciesTable): RotationPolicy {
  return {
    secret: r.secret_name, environment: r.environment, rotator: r.rotator, settings: JSON.parse(r.settings) as Record<string, unknown>,
    intervalMs: r.schedule_kind === 'interval' ? Number(r.schedule) : null, cron: r.schedule_kind === 'cron' ? r.schedule : null,
    catchUp: r.catch_up as RotationPolicy['catchUp'], notify: JSON.parse(r.notify) as Recipient[], rollbackWindowMs: r.rollback_window_ms,
    expiryLeadMs: r.expiry_lead_ms, nextRunAt: iso(r.next_run_at), lastRunAt: iso(r.last_run_at), lastResult: r.last_result,
    lastError: r.last_error, failures: r.failures, revision: r.revision, updatedAt: iso(r.updated_at)!, updatedBy: r.updated_by,
    retry: r.retry_attempts > 0 || r.gave_up_at !== null
      ? { trigger: r.retry_trigger, failedAttempts: r.retry_attempts, maxAttempts: RETRY_LIMITS.maxAttempts, nextAttemptAt: iso(r.retry_at), gaveUpAt: iso(r.gave_up_at) }
      : null,
    attention: policyAttention(r),
  };
}

export function toRotation(r: RotationsTable): Rotation {
  return {
    id: r.id, secret: r.secret_name, environment: r.environment, rotator: r.rotator, trigger: r.trigger, rehearsal: r.rehearsal === 1,
    state: r.state as RotationState, step: r.step as RotationStep, attempt: r.attempt,
    fromVersion: r.from_version, pendingVersion: r.pending_version, toVersion: r.to_version,
    error: r.error_code ? { code: r.error_code, step: r.error_step ?? '', detail: r.error_detail ?? '' } : null,
    failedConnectors: JSON.parse(r.failed_connectors) as ConnectorCheck[], checks: JSON.parse(r.checks) as ConnectorCheck[],
    startedAt: iso(r.started_at)!, updatedAt: iso(r.updated_at)!, finishedAt: iso(r.finished_at),
  };
}

/**
 * A policy's place among its tenant's in a scheduler pass's query, in `order`: the passes keep the first few of each
 * tenant (`tenant_rank <= perTenant`), so one tenant's backlog waits behind other tenants' first runs.
 */
function tenantRank(order: RawBuilder<unknown>) {
  return sql<number>`row_number() over (partition by rotation_policies.tenant_id order by ${order})`.as('tenant_rank');
}

/** Queries over rotation policies and rotations. Every tenant query filters by tenant. */
export function createRotationRepository(db: Executor) {
  /** Policies joined with their secret, those of deleted secrets left out: what the scheduler's passes read. */
  const ofLiveSecrets = () => db.selectFrom('rotation_policies')
    .innerJoin('secrets', (j) => j.onRef('secrets.id', '=', 'rotation_policies.secret_id').onRef('secrets.tenant_id', '=', 'rotation_policies.tenant_id'))
    .where('secrets.deleted_at', 'is', null);
  return {
    findPolicy(tenantId: string, secretId: string, environmentId: string) {
      return db.selectFrom('rotation_policies').selectAll().where('tenant_id', '=', tenantId)
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId).executeTakeFirst();
    },
    listPolicies(tenantId: string) {
      return db.selectFrom('rotation_policies').selectAll().where('tenant_id', '=', tenantId).orderBy('secret_name').orderBy('environment').execute();
    },
    /**
     * Policies whose next run is due, across tenants (the scheduler). A deleted secret's stay due
     * untouched: nothing is generated or issued for it, and restored, it catches up.
     */
    duePolicies(now: number, limit: number, perTenant: number) {
      const ranked = ofLiveSecrets()
        .selectAll('rotation_policies')
        // A tenant's share of one pass: a storm of its own (a bulk change, downtime) cannot hold every other tenant's back.
        .select(tenantRank(sql`rotation_policies.next_run_at`))
        .where('rotation_policies.next_run_at', '<=', now);
      return db.selectFrom(ranked.as('due')).selectAll().where('tenant_rank', '<=', perTenant).orderBy('next_run_at').limit(limit).execute();
    },
    /**
     * Policies whose expiry run is due (the secret's expiry minus the lead time has passed) and neither rotated
     * successfully nor claimed since that due point, across tenants, earliest due point first; `limit` and
     * `perTenant` bound one pass as duePolicies does, so a backlog is worked through over passes.
     */
    expiringPolicies(now: number, limit: number, perTenant: number) {
      const dueAt = sql<number>`secrets.expires_at - rotation_policies.expiry_lead_ms`;
      const ranked = ofLiveSecrets()
        .selectAll('rotation_policies').select('secrets.expires_at').select(dueAt.as('due_at'))
        .select(tenantRank(dueAt))
        .where('rotation_policies.expiry_lead_ms', 'is not', null).where('secrets.expires_at', 'is not', null)
        .where(dueAt, '<=', now)
        .where((eb) => eb.or([eb('rotation_policies.last_succeeded_at', 'is', null), eb('rotation_policies.last_succeeded_at', '<', dueAt)]))
        .where((eb) => eb.or([eb('rotation_policies.expiry_claimed_for', 'is', null), eb('rotation_policies.expiry_claimed_for', '<', dueAt)]));
      return db.selectFrom(ranked.as('expiring')).selectAll().where('tenant_rank', '<=', perTenant).orderBy('due_at').limit(limit).execute();
    },
    /**
     * Moves a policy's next run from `expected` to `next`: of several schedulers reading the same
     * due row, exactly one matches (the no-double-run guarantee, with or without a leader). A run that
     * will start (`inFlight`) is also marked for a retry at `inFlight.until` unless one is pending: a node
     * dying before its rotation row exists leaves it to be tried again, not lost.
     */
    async claimRun(id: string, expected: number, next: number | null, now: number, inFlight: { trigger: string; until: number } | null) {
      const res = await db.updateTable('rotation_policies').set((eb) => ({
        next_run_at: next, due_trigger: null, updated_at: now,
        ...(inFlight ? { retry_at: eb.fn.coalesce('retry_at', eb.val(inFlight.until)), retry_trigger: eb.fn.coalesce('retry_trigger', eb.val(inFlight.trigger)) } : {}),
      })).where('id', '=', id).where('next_run_at', '=', expected).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },
    /** Claims the expiry run for due point `dueAt` (one per due point, across schedulers), marked for a retry as claimRun does. */
    async claimExpiry(id: string, expected: number | null, dueAt: number, until: number, now: number) {
      const res = await db.updateTable('rotation_policies').set((eb) => ({
        expiry_claimed_for: dueAt, updated_at: now,
        retry_at: eb.fn.coalesce('retry_at', eb.val(until)), retry_trigger: eb.fn.coalesce('retry_trigger', eb.val('expiry')),
      })).where('id', '=', id).where('expiry_claimed_for', expected === null ? 'is' : '=', expected).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },
    /** Policies last written by a clock ahead of `now` by more than `slackMs` (the scheduler's clock-jump repair). */
    writtenAhead(now: number, slackMs: number, limit: number) {
      return db.selectFrom('rotation_policies').selectAll().where('updated_at', '>', now + slackMs).limit(limit).execute();
    },
    /** Pulls times a clock that was ahead pushed out back to `patch` (only if the row is as read). */
    async pullIn(id: string, expectedUpdatedAt: number, patch: { next_run_at: number | null; retry_at: number | null; updated_at: number }) {
      await db.updateTable('rotation_policies').set(patch).where('id', '=', id).where('updated_at', '=', expectedUpdatedAt).execute();
    },
    /**
     * Policies whose retry is due and which no live rotation holds, across tenants, deleted secrets left alone, earliest
     * first; `limit` and `perTenant` bound one pass as duePolicies does, so one tenant's failing rotations (a source
     * down for all of them) cannot take every retry of a pass.
     */
    retriesDue(now: number, limit: number, perTenant: number) {
      const ranked = ofLiveSecrets()
        .selectAll('rotation_policies').select(tenantRank(sql`rotation_policies.retry_at`))
        .where('rotation_policies.retry_at', '<=', now)
        .where((eb) => eb.not(eb.exists(eb.selectFrom('rotations').select('rotations.id').whereRef('rotations.tenant_id', '=', 'rotation_policies.tenant_id')
          .whereRef('rotations.secret_id', '=', 'rotation_policies.secret_id').whereRef('rotations.environment_id', '=', 'rotation_policies.environment_id')
          .where('rotations.active_key', 'is not', null).where('rotations.rehearsal', '=', 0))));
      return db.selectFrom(ranked.as('retries')).selectAll().where('tenant_rank', '<=', perTenant).orderBy('retry_at').limit(limit).execute();
    },
    /** Takes a due retry (moving it to `until`, in case this node dies before the rotation starts); one scheduler matches. */
    async claimRetry(id: string, expected: number, until: number, now: number) {
      const res = await db.updateTable('rotation_policies').set({ retry_at: until, updated_at: now }).where('id', '=', id).where('retry_at', '=', expected).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },
    /** A person gave up the run (cancelled a manual rotation): nothing is retried for it. */
    async dropRetry(tenantId: string, secretId: string, environmentId: string) {
      await db.updateTable('rotation_policies').set({ retry_at: null, retry_trigger: null }).where('tenant_id', '=', tenantId)
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId).execute();
    },
    /**
     * A run's outcome on its policy. A success clears the retries; a failure of a scheduler-driven trigger
     * counts an attempt and sets the next one (or gives up), answering where the retries stand. Call it in the
     * transaction that ends the run: the first write locks the policy's row, so the count cannot be lost.
     */
    async recordResult(tenantId: string, secretId: string, environmentId: string, patch: { result: string; error: string | null; at: number; rotatorState?: string; trigger?: string }): Promise<RetryOutcome | null> {
      const failed = patch.result !== 'succeeded' && patch.result !== 'skipped';
      const retried = failed && patch.trigger !== undefined && RETRIED_TRIGGERS.has(patch.trigger);
      await db.updateTable('rotation_policies')
        .set((eb) => ({
          last_result: patch.result, last_error: patch.error, last_run_at: patch.at,
          failures: patch.result === 'succeeded' ? 0 : patch.result === 'skipped' ? eb.ref('failures') : eb('failures', '+', 1),
          ...(patch.rotatorState !== undefined ? { rotator_state: patch.rotatorState } : {}),
          ...(patch.result === 'succeeded' ? { last_succeeded_at: patch.at, retry_at: null, retry_trigger: null, retry_attempts: 0, gave_up_at: null } : {}),
          ...(retried ? { retry_attempts: eb('retry_attempts', '+', 1) } : {}),
        }))
        .where('tenant_id', '=', tenantId).where('secret_id', '=', secretId).where('environment_id', '=', environmentId).execute();
      if (!retried) return null;
      const row = await db.selectFrom('rotation_policies').select('retry_attempts').where('tenant_id', '=', tenantId)
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId).executeTakeFirst();
      if (!row) return null;
      const { outcome, patch: retry } = afterFailure(row.retry_attempts, patch.trigger!, patch.at);
      await db.updateTable('rotation_policies').set(retry).where('tenant_id', '=', tenantId)
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId).execute();
      return outcome;
    },
    findRotation(tenantId: string, id: string) {
      return db.selectFrom('rotations').selectAll().where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
    },
    getRotation(id: string) {
      return db.selectFrom('rotations').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    },
    activeRotation(tenantId: string, secretId: string, environmentId: string) {
      return db.selectFrom('rotations').selectAll().where('tenant_id', '=', tenantId).where('secret_id', '=', secretId)
        .where('environment_id', '=', environmentId).where('active_key', 'is not', null).where('rehearsal', '=', 0).executeTakeFirst();
    },
    /** Any live rotation (rehearsals too) of a secret in an environment: while one runs, its policy's source must not change. */
    liveRotation(tenantId: string, secretId: string, environmentId: string) {
      return db.selectFrom('rotations').select(['id', 'state']).where('tenant_id', '=', tenantId).where('secret_id', '=', secretId)
        .where('environment_id', '=', environmentId).where('active_key', 'is not', null).executeTakeFirst();
    },
    /**
     * Locks a policy's row until the transaction ends (a no-op write, so both dialects take it) and
     * returns it as it is then: rotation starts and policy changes or deletes serialise on it.
     */
    async holdPolicy(tenantId: string, secretId: string, environmentId: string) {
      await db.updateTable('rotation_policies').set((eb) => ({ revision: eb.ref('revision') })).where('tenant_id', '=', tenantId)
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId).execute();
      return db.selectFrom('rotation_policies').selectAll().where('tenant_id', '=', tenantId)
        .where('secret_id', '=', secretId).where('environment_id', '=', environmentId).executeTakeFirst();
    },
    /** The rotation that made `version` current: its rotator state belongs to that value. */
    rotationTo(tenantId: string, secretId: string, environmentId: string, version: number) {
      return db.selectFrom('rotations').selectAll().where('tenant_id', '=', tenantId).where('secret_id', '=', secretId)
        .where('environment_id', '=', environmentId).where('to_version', '=', version).where('rehearsal', '=', 0).executeTakeFirst();
    },
    listRotations(tenantId: string, opts: { secretId?: string; environmentId?: string; limit: number }) {
      let q = db.selectFrom('rotations').selectAll().where('tenant_id', '=', tenantId);
      if (opts.secretId) q = q.where('secret_id', '=', opts.secretId);
      if (opts.environmentId) q = q.where('environment_id', '=', opts.environmentId);
      return q.orderBy('started_at', 'desc').limit(opts.limit).execute();
    },
    /** Live rotations whose holder stopped renewing its lease (crashed or cut off), across tenants. */
    orphaned(now: number, limit: number) {
      return db.selectFrom('rotations').selectAll().where('state', 'in', ['running', 'promoted', 'rolling_back'])
        .where('lease_until', '<', now).limit(limit).execute();
    },
    awaitingValue() {
      return db.selectFrom('rotations').selectAll().where('state', '=', 'awaiting_value').execute();
    },
    /** Takes over an orphaned rotation: matches only if nobody renewed or took it since it was read. */
    async takeOver(id: string, expectedUntil: number, owner: string, until: number, now: number) {
      const res = await db.updateTable('rotations').set((eb) => ({ lease_owner: owner, lease_until: until, heartbeat_at: now, attempt: eb('attempt', '+', 1), updated_at: now }))
        .where('id', '=', id).where('lease_until', '=', expectedUntil).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },
    /** Changes a rotation this node holds; false when the lease was lost (another node took over). */
    async update(id: string, owner: string, patch: Partial<RotationsTable>) {
      const res = await db.updateTable('rotations').set(patch).where('id', '=', id).where('lease_owner', '=', owner).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },
    async renew(id: string, owner: string, until: number, now: number) {
      const res = await db.updateTable('rotations').set({ lease_until: until, heartbeat_at: now }).where('id', '=', id)
        .where('lease_owner', '=', owner).where('active_key', 'is not', null).executeTakeFirst();
      return Number(res.numUpdatedRows) === 1;
    },
  };
}

export type RotationRepository = ReturnType<typeof createRotationRepository>;
