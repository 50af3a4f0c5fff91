import type { Kysely, Transaction } from 'kysely';
import { fail, isKeyholdError, KeyholdError } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import { isMailAddress } from '../../platform/mail-address.ts';
import { failureCode, isUniqueViolation } from '../../storage/db-errors.ts';
import type { Database, RotationPoliciesTable } from '../../storage/schema.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import { secretResource, type SecretService } from '../secrets/secret-service.ts';
import type { PendingTarget } from '../secrets/pending-versions.ts';
import type { ValueService } from '../secrets/value-service.ts';
import type { TenantContext } from '../shared/context.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import type { RotationEngine } from './engine.ts';
import { createRotationRepository, toPolicy, toRotation } from './repository.ts';
import type { RotatorRegistry } from './rotators/registry.ts';
import { requireUseOfRefs } from './secret-refs.ts';
import { nextRun, parseSchedule } from './schedule.ts';
import type { PolicyInput, Rotation, RotationPolicy, Trigger } from './types.ts';

const MAX_NOTIFY = 32;
const MAX_SETTINGS_BYTES = 8192;

/** What the source holds after a rollback that moved no label (the failed event's `source`). */
type RollbackSource = 'unchanged' | 'current-set-again' | 'holds-previous';

/** The secret and environment a call is about, once authorized. */
type Target = PendingTarget & { tenantId: string };

/** What `rotation status` shows per policy. */
export interface PolicyStatus extends RotationPolicy {
  active: Rotation | null;
  last: Rotation | null;
  /** A manual rotation waiting longer than its overdue limit. */
  overdue: boolean;
}

/**
 * Rotation policies and rotations of a tenant: every operation authorizes `rotate` (or `list` to
 * look) on the secret in its environment, and audits inside its transaction. Setting a policy also
 * needs `use` of every other secret its rotator's settings name (see `requireUseOfRefs`).
 */
export function createRotationService(deps: {
  db: Kysely<Database>;
  clock: Clock;
  authz: Authorizer;
  secrets: Pick<SecretService, 'load' | 'authorize'>;
  tenants: Pick<TenantService, 'environment'>;
  values: Pick<ValueService, 'rollback'>;
  audit: Pick<AuditLog, 'appendInTx' | 'record'>;
  rotators: RotatorRegistry;
  engine: RotationEngine;
  /**
   * The server's rollback window (KEYHOLD_ROLLBACK_WINDOW): superseded versions are crypto-shredded
   * after it, so it is a policy's default and its ceiling.
   */
  serverRollbackWindowMs: number;
}) {
  const { db, clock, authz, secrets, tenants, values, audit, rotators, engine } = deps;
  const repo = createRotationRepository(db);

  /** The secret and environment, after the caller is allowed `action` on them. */
  async function target(ctx: TenantContext, name: string, environment: string, action: 'rotate' | 'list'): Promise<Target> {
    // Environment first, and a caller who may not even list the secret hears a miss: no name is confirmed.
    const env = await tenants.environment(ctx.tenantId, environment);
    const secret = await secrets.load(ctx, name);
    await secrets.authorize(ctx, action, secretResource(secret), environment);
    return { tenantId: ctx.tenantId, secretId: secret.id, name, environmentId: env.id, environment };
  }
  async function policyRow(ctx: TenantContext, t: { secretId: string; environmentId: string; name: string; environment: string }) {
    const p = await repo.findPolicy(ctx.tenantId, t.secretId, t.environmentId);
    if (!p) fail('ROTATION_POLICY_NOT_FOUND', `secret "${t.name}" has no rotation policy in ${t.environment}`);
    return p;
  }
  /**
   * Sets the value current now at the source again (a rollback's labels did not move, but the source took the previous
   * value). Answers what the source holds then, and the version it should hold (null: no value is current).
   */
  async function reapplyCurrent(t: Target, p: RotationPoliciesTable): Promise<{ source: RollbackSource; version: number | null }> {
    const now = await db.selectFrom('secret_states').select('current_version').where('secret_id', '=', t.secretId).where('environment_id', '=', t.environmentId).executeTakeFirst();
    const version = now?.current_version ?? null;
    if (version === null) return { source: 'holds-previous', version };
    try {
      await engine.reapply(t, p, version);
      return { source: 'current-set-again', version };
    } catch {
      return { source: 'holds-previous', version };
    }
  }
  /**
   * A rollback that moved no label, after the source was asked to change: the trail says so and what the source holds
   * (never a value, nor the rotator's words). Best effort: the caller hears the rollback's own error either way.
   */
  async function rollbackFailed(ctx: TenantContext, t: Target, err: unknown, source: RollbackSource): Promise<void> {
    const [event] = policyEvent(ctx, t, 'rotation.rollback', { source });
    await audit.record([{ ...event!, outcome: 'failed', reason: failureCode(err) }]).catch(() => {});
  }
  /** A first policy; two racing to be first: the loser hears CAS_MISMATCH (its transaction rolls back whole). */
  async function insertPolicy(trx: Transaction<Database>, row: RotationPoliciesTable): Promise<void> {
    try {
      await trx.insertInto('rotation_policies').values(row).execute();
    } catch (err) {
      if (isUniqueViolation(err)) fail('CAS_MISMATCH', `another change of the rotation policy of "${row.secret_name}" in ${row.environment} landed first; try again`);
      throw err;
    }
  }
  const policyEvent = (ctx: TenantContext, t: { secretId: string; name: string; environment: string }, action: string, context: Record<string, string> = {}) => {
    const base = auditFrom(ctx);
    return [{ ...base, action, resource: { type: 'secret', id: t.secretId, name: t.name }, environment: t.environment, outcome: 'allowed' as const, context: { ...base.context, ...context } }];
  };

  return {
    /**
     * Creates or replaces the policy. A changed rotator or settings is a trigger: the next run is due now.
     * The caller must be allowed `use` of every secret the settings name, in this environment.
     */
    async setPolicy(ctx: TenantContext, name: string, environment: string, input: PolicyInput): Promise<RotationPolicy> {
      const t = await target(ctx, name, environment, 'rotate');
      const settings = input.settings ?? {};
      if (Buffer.byteLength(JSON.stringify(settings)) > MAX_SETTINGS_BYTES) fail('VALIDATION_FAILED', `settings are at most ${MAX_SETTINGS_BYTES} bytes`);
      const rotator = rotators.get(input.rotator);
      rotator.validate(settings);
      const refs = rotator.secretRefs(settings);
      await requireUseOfRefs(secrets, ctx, refs, environment);
      const schedule = parseSchedule(input, clock.now());
      if (input.rollbackWindowMs !== undefined && input.rollbackWindowMs > deps.serverRollbackWindowMs) {
        // Retention shreds superseded versions after the server's window: a longer one would be a promise nothing keeps.
        fail('VALIDATION_FAILED', `rollbackWindowMs is at most the server's rollback window (KEYHOLD_ROLLBACK_WINDOW, ${deps.serverRollbackWindowMs} ms), after which superseded versions are destroyed`);
      }
      if ((input.notify ?? []).length > MAX_NOTIFY) fail('VALIDATION_FAILED', `notify lists at most ${MAX_NOTIFY} recipients`);
      // One message goes to every address of the list: an address the relay cannot be given would stop it for all.
      if ((input.notify ?? []).some((r) => r.kind === 'email' && !isMailAddress(r.id))) {
        fail('VALIDATION_FAILED', 'an email recipient in notify must be a bare e-mail address (name@example.com: no display name, spaces or separators)');
      }
      const now = clock.now();
      return db.transaction().execute(async (trx) => {
        const r = createRotationRepository(trx);
        // Read under the row's lock: concurrent changes apply one on top of the other (each its own revision,
        // none lost), and a rotation starting meanwhile is seen below.
        const existing = await r.holdPolicy(ctx.tenantId, t.secretId, t.environmentId);
        if (input.revision !== undefined && existing?.revision !== input.revision) {
          fail('CAS_MISMATCH', `the rotation policy of "${name}" in ${environment} is not at revision ${input.revision}`);
        }
        const changed = existing !== undefined && (existing.rotator !== input.rotator || existing.settings !== JSON.stringify(settings));
        const sameSchedule = existing !== undefined && existing.schedule_kind === schedule.kind && existing.schedule === schedule.schedule;
        // An edit of other fields (notify, catch-up) keeps the run already due: neither a policy-change run the
        // scheduler has not reached yet is dropped, nor the next scheduled one pushed a period on by every edit.
        const due = changed ? { next_run_at: now, due_trigger: 'policy-change' }
          : existing?.due_trigger ? { next_run_at: existing.next_run_at, due_trigger: existing.due_trigger }
            : { next_run_at: sameSchedule ? existing.next_run_at : nextRun(schedule.kind, schedule.schedule, now), due_trigger: null };
        const row: RotationPoliciesTable = {
          id: existing?.id ?? newId(), tenant_id: ctx.tenantId, secret_id: t.secretId, secret_name: name, environment_id: t.environmentId, environment,
          rotator: input.rotator, settings: JSON.stringify(settings), schedule_kind: schedule.kind, schedule: schedule.schedule,
          catch_up: input.catchUp ?? 'once', notify: JSON.stringify(input.notify ?? []),
          rollback_window_ms: input.rollbackWindowMs ?? deps.serverRollbackWindowMs, expiry_lead_ms: input.expiryLeadMs ?? null,
          rotator_state: existing?.rotator_state ?? '{}',
          ...due,
          last_run_at: existing?.last_run_at ?? null, last_result: existing?.last_result ?? null, last_error: existing?.last_error ?? null,
          failures: existing?.failures ?? 0, revision: (existing?.revision ?? 0) + 1,
          // A changed rotator or settings is a fresh start (its run is due now): the retries of the old one end.
          retry_at: changed ? null : existing?.retry_at ?? null, retry_trigger: changed ? null : existing?.retry_trigger ?? null,
          retry_attempts: changed ? 0 : existing?.retry_attempts ?? 0, gave_up_at: changed ? null : existing?.gave_up_at ?? null,
          last_succeeded_at: existing?.last_succeeded_at ?? null, expiry_claimed_for: existing?.expiry_claimed_for ?? null,
          created_at: existing?.created_at ?? now, created_by: existing?.created_by ?? ctx.actor.id, updated_at: now, updated_by: ctx.actor.id,
        };
        if (existing) await trx.updateTable('rotation_policies').set(row).where('id', '=', existing.id).execute();
        else await insertPolicy(trx, row);
        // Checked after the write has locked the row, which a starting rotation also takes: a rotation applies,
        // tests and restores at one source, so the source may not change under a live one (rehearsal or not).
        if (changed && await r.liveRotation(ctx.tenantId, t.secretId, t.environmentId)) {
          fail('ROTATION_IN_PROGRESS', `a rotation of "${name}" in ${environment} is running or waiting for a value; let it end (or cancel it) before changing the rotator or settings`);
        }
        await audit.appendInTx(trx, policyEvent(ctx, t, 'rotation.policy.set', {
          rotator: row.rotator, schedule: `${row.schedule_kind}:${row.schedule}`, revision: String(row.revision),
          ...(refs.length > 0 ? { secretRefs: refs.map((r) => `${r.field}=${r.name}`).join(',') } : {}),
        }));
        return toPolicy(row);
      });
    },

    async getPolicy(ctx: TenantContext, name: string, environment: string): Promise<RotationPolicy> {
      const t = await target(ctx, name, environment, 'list');
      return toPolicy(await policyRow(ctx, t));
    },

    async deletePolicy(ctx: TenantContext, name: string, environment: string): Promise<void> {
      const t = await target(ctx, name, environment, 'rotate');
      const p = await policyRow(ctx, t);
      await db.transaction().execute(async (trx) => {
        await trx.deleteFrom('rotation_policies').where('id', '=', p.id).execute();
        // After the delete has locked the row (see setPolicy): a live rotation would lose the source it must restore.
        if (await createRotationRepository(trx).liveRotation(ctx.tenantId, t.secretId, t.environmentId)) {
          fail('ROTATION_IN_PROGRESS', `a rotation of "${name}" in ${environment} is running; wait for it to end`);
        }
        await audit.appendInTx(trx, policyEvent(ctx, t, 'rotation.policy.delete'));
      });
    },

    /** Rotates now (manual or compromised trigger, or a rehearsal) and returns how it ended. */
    async rotate(ctx: TenantContext, name: string, environment: string, opts: { trigger?: Trigger; rehearse?: boolean } = {}): Promise<Rotation> {
      const t = await target(ctx, name, environment, 'rotate');
      const p = await policyRow(ctx, t);
      return engine.start(ctx, t, p, opts.trigger ?? 'manual', { rehearsal: opts.rehearse ?? false });
    },

    /** Runs a due rotation for the scheduler, as Keyhold itself. */
    async runScheduled(ctx: TenantContext, p: RotationPoliciesTable, trigger: Trigger): Promise<Rotation> {
      const t = { tenantId: p.tenant_id, secretId: p.secret_id, name: p.secret_name, environmentId: p.environment_id, environment: p.environment };
      return engine.start(ctx, t, p, trigger, { rehearsal: false });
    },

    /**
     * Makes `previous` current again within the policy's rollback window. The source is set back
     * first (the previous value applied again), so the value Keyhold hands out always works there.
     */
    async rollback(ctx: TenantContext, name: string, environment: string) {
      const t = await target(ctx, name, environment, 'rotate');
      const p = await policyRow(ctx, t);
      if (await repo.activeRotation(ctx.tenantId, t.secretId, t.environmentId)) fail('ROTATION_IN_PROGRESS', `a rotation of "${name}" in ${environment} is running`);
      const states = await db.selectFrom('secret_states').selectAll().where('secret_id', '=', t.secretId).where('environment_id', '=', t.environmentId).executeTakeFirst();
      const prev = states?.previous_version == null ? undefined
        : await db.selectFrom('secret_versions').select(['superseded_at', 'destroyed_at']).where('secret_id', '=', t.secretId)
          .where('environment_id', '=', t.environmentId).where('version', '=', states.previous_version).executeTakeFirst();
      // A policy set before longer windows were refused may hold one: the server's window is the ceiling (retention shreds after it).
      const windowMs = Math.min(p.rollback_window_ms, deps.serverRollbackWindowMs);
      if (!prev || prev.destroyed_at !== null || (prev.superseded_at ?? 0) < clock.now() - windowMs) {
        fail('NO_PREVIOUS_VERSION', `secret "${name}" has no previous version within the rollback window (${windowMs} ms) in ${environment}`);
      }
      try {
        await engine.reapply(t, p, states!.previous_version!);
      } catch (err) {
        // The rotator's own message stays out of the answer (it may name hosts); nothing moved in Keyhold.
        const refused = isKeyholdError(err) ? err
          : new KeyholdError('ROTATION_SOURCE_FAILED', `the ${p.rotator} rotator could not set version ${states!.previous_version} at the source; nothing was rolled back`);
        await rollbackFailed(ctx, t, refused, 'unchanged');
        throw refused;
      }
      try {
        return await values.rollback(ctx, name, environment, { cas: states!.current_version! });
      } catch (err) {
        // The labels did not move (a write or another rollback landed first, the window closed), but the
        // source now holds the previous value: give it back the value Keyhold hands out before answering.
        const { source, version } = await reapplyCurrent(t, p);
        await rollbackFailed(ctx, t, err, source);
        if (source !== 'holds-previous' || version === null) throw err;
        // The rotator's own message stays out of the answer (it may name hosts); the stable code is the first failure's.
        const why = isKeyholdError(err) ? err : new KeyholdError('INTERNAL', 'the rollback failed');
        throw new KeyholdError(why.code, `${why.message}; setting the current version ${version} back at the source failed too: check the source`);
      }
    },

    /** A person supplies the value a manual rotation waits for. */
    async supply(ctx: TenantContext, name: string, environment: string, value: string): Promise<Rotation> {
      const t = await target(ctx, name, environment, 'rotate');
      const active = await repo.activeRotation(ctx.tenantId, t.secretId, t.environmentId);
      if (!active || active.state !== 'awaiting_value') fail('ROTATION_NOT_AWAITING_VALUE', `no rotation of "${name}" in ${environment} is waiting for a value`);
      return engine.supply(ctx, active, value);
    },

    /** Gives up a rotation waiting for a value (nothing had changed). */
    async cancel(ctx: TenantContext, name: string, environment: string): Promise<Rotation> {
      const t = await target(ctx, name, environment, 'rotate');
      const active = await repo.activeRotation(ctx.tenantId, t.secretId, t.environmentId);
      if (!active || active.state !== 'awaiting_value') fail('ROTATION_NOT_AWAITING_VALUE', `no rotation of "${name}" in ${environment} is waiting for a value`);
      await engine.abandon(ctx, active, 'cancelled');
      return toRotation(await repo.getRotation(active.id));
    },

    async get(ctx: TenantContext, id: string): Promise<Rotation> {
      const r = await repo.findRotation(ctx.tenantId, id);
      if (!r) fail('ROTATION_NOT_FOUND', 'no such rotation');
      await target(ctx, r.secret_name, r.environment, 'list');
      return toRotation(r);
    },

    async history(ctx: TenantContext, name: string, environment: string, limit = 50): Promise<Rotation[]> {
      const t = await target(ctx, name, environment, 'list');
      return (await repo.listRotations(ctx.tenantId, { secretId: t.secretId, environmentId: t.environmentId, limit })).map(toRotation);
    },

    /** Every policy the caller may see: next run, last result, failures, the live rotation, overdue manual ones. */
    async status(ctx: TenantContext): Promise<PolicyStatus[]> {
      const out: PolicyStatus[] = [];
      for (const p of await repo.listPolicies(ctx.tenantId)) {
        const secret = await secrets.load(ctx, p.secret_name).catch(() => null);
        if (!secret || !(await authz.allowed(ctx, 'list', secretResource(secret), p.environment))) continue;
        const [latest] = await repo.listRotations(ctx.tenantId, { secretId: p.secret_id, environmentId: p.environment_id, limit: 1 });
        const active = await repo.activeRotation(ctx.tenantId, p.secret_id, p.environment_id);
        const overdueMs = Number((JSON.parse(p.settings) as { overdueMs?: number }).overdueMs ?? 7 * 86_400_000);
        out.push({
          ...toPolicy(p), active: active ? toRotation(active) : null, last: latest ? toRotation(latest) : null,
          overdue: active?.state === 'awaiting_value' && active.started_at + overdueMs <= clock.now(),
        });
      }
      return out;
    },
  };
}

export type RotationService = ReturnType<typeof createRotationService>;
