import type { Kysely, Transaction } from 'kysely';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import { isUniqueViolation } from '../../storage/database.ts';
import type { Database, RotationPoliciesTable, RotationsTable } from '../../storage/schema.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import type { Notifier } from '../notifications/notifier.ts';
import type { PendingTarget, PendingVersions } from '../secrets/pending-versions.ts';
import { SYSTEM_ACTOR, type TenantContext } from '../shared/context.ts';
import { checkDependents, type DependentsPort } from './dependents.ts';
import { rotationNotification } from './notify.ts';
import { createRotationRepository, toRotation } from './repository.ts';
import type { RotatorRegistry } from './rotators/registry.ts';
import type { RotatorContext, Sandbox } from './rotators/types.ts';
import type { ConnectorCheck, Rotation, RotationStep, Trigger } from './types.ts';

/** An expected failure of one step: the rotation rolls back and says why. Never carries a value. */
class StepFailure extends Error {
  readonly code: string;
  readonly detail: string;
  readonly failed: ConnectorCheck[];
  constructor(code: string, detail: string, failed: ConnectorCheck[] = []) {
    super(detail);
    this.code = code;
    this.detail = detail;
    this.failed = failed;
  }
}
/** This node no longer holds the rotation (another took it over): stop touching it. */
class LeaseLost extends Error {}

/** What lives only in the memory of the node running a rehearsal (nothing of it is stored). */
interface Memo {
  value?: string;
  sandbox?: Sandbox;
}

const short = (text: string) => text.slice(0, 500);
const NEXT: Record<string, RotationStep> = { generate: 'apply', apply: 'test', test: 'verify', verify: 'promote' };

export interface EngineDeps {
  db: Kysely<Database>;
  clock: Clock;
  pending: PendingVersions;
  rotators: RotatorRegistry;
  dependents: DependentsPort;
  notifier: Notifier;
  audit: Pick<AuditLog, 'appendInTx'>;
  /** Another secret's current value in an environment, read by Keyhold itself (a rotator's admin credential). */
  resolve(ctx: TenantContext, name: string, environment: string): Promise<string>;
  /** This process, as the holder of rotation leases. */
  nodeId: string;
  leaseMs: number;
  /** Dependent health checks in flight at once. */
  checkConcurrency: number;
  onError(err: unknown): void;
}

/**
 * The staged protocol (SPEC §6): generate → pending stored → apply at the source → test → every
 * dependent connector checked with the pending value → promote → finalize → notify; any failure
 * rolls back (source restored where the rotator can, pending shredded). Every step is written to
 * the rotation's row before it runs, under a lease this node renews, so after a crash another node
 * (or this one restarted) finds it and rolls back — or, once promoted, finishes it.
 */
export function createRotationEngine(deps: EngineDeps) {
  const { db, clock, pending, rotators, dependents, notifier, audit, nodeId, leaseMs } = deps;
  const repo = createRotationRepository(db);
  const memos = new Map<string, Memo>();

  const targetOf = (r: RotationsTable): PendingTarget => ({ secretId: r.secret_id, name: r.secret_name, environmentId: r.environment_id, environment: r.environment });
  const systemCtx = (r: RotationsTable): TenantContext => ({ tenantId: r.tenant_id, actor: SYSTEM_ACTOR, requestId: `rotation:${r.id}` });

  function event(ctx: TenantContext, r: RotationsTable, action: string, extra: Record<string, string> = {}, outcome: 'allowed' | 'failed' = 'allowed') {
    const base = auditFrom(ctx);
    return [{
      ...base, action, resource: { type: 'secret', id: r.secret_id, name: r.secret_name }, environment: r.environment,
      secretVersion: r.pending_version, outcome, reason: outcome === 'failed' ? (extra.code ?? null) : null,
      context: { ...base.context, rotation: r.id, trigger: r.trigger, attempt: String(r.attempt), ...(r.rehearsal ? { rehearsal: 'true' } : {}), ...extra },
    }];
  }

  /** Changes the row (guarded by this node's lease) and records the audit event, in `trx`. */
  async function change(trx: Transaction<Database>, ctx: TenantContext, r: RotationsTable, patch: Partial<RotationsTable>, action: string, extra: Record<string, string> = {}, outcome: 'allowed' | 'failed' = 'allowed') {
    const ok = await createRotationRepository(trx).update(r.id, nodeId, { ...patch, updated_at: clock.now() });
    if (!ok) throw new LeaseLost();
    await audit.appendInTx(trx, event(ctx, { ...r, ...patch }, action, extra, outcome));
  }
  const transact = <T>(fn: (trx: Transaction<Database>) => Promise<T>) => db.transaction().execute(fn);

  async function policyOf(r: RotationsTable): Promise<RotationPoliciesTable> {
    const p = await repo.findPolicy(r.tenant_id, r.secret_id, r.environment_id);
    if (!p) throw new StepFailure('POLICY_DELETED', 'the rotation policy was deleted during the rotation');
    return p;
  }

  /** The rotator's view of the rotation, from durable state (plus the sandbox of a rehearsal). */
  async function contextFor(r: RotationsTable, signal: AbortSignal): Promise<RotatorContext> {
    const policy = await policyOf(r);
    const t = targetOf(r);
    const memo = memos.get(r.id) ?? {};
    const labels = await pending.labels(t);
    const open = async (v: number | null) => (v === null ? null : pending.open(systemCtx(r), t, v).catch(() => null));
    const stateOf = async (v: number | null) => (v === null ? {} : JSON.parse((await repo.rotationTo(r.tenant_id, r.secret_id, r.environment_id, v))?.rotator_state ?? '{}'));
    // After promotion the old value is `previous`; before it, `current`. Either way it is from_version.
    const beforeVersion = r.step === 'generate' ? labels.current : r.from_version;
    const olderVersion = r.state === 'promoted' ? null : labels.previous;
    return {
      tenantId: r.tenant_id, secretName: r.secret_name, environment: r.environment, rotationId: r.id,
      settings: memo.sandbox?.settings ?? (JSON.parse(policy.settings) as Record<string, unknown>),
      currentState: memo.sandbox?.currentState ?? await stateOf(beforeVersion),
      state: JSON.parse(r.rotator_state) as Record<string, unknown>,
      current: memo.sandbox ? memo.sandbox.current : await open(beforeVersion),
      previous: memo.sandbox ? null : await open(olderVersion),
      resolve: (name) => deps.resolve(systemCtx(r), name, r.environment),
      rehearsal: r.rehearsal === 1, signal,
    };
  }

  async function valueOf(r: RotationsTable): Promise<string> {
    const v = memos.get(r.id)?.value ?? (r.pending_version !== null ? await pending.open(systemCtx(r), targetOf(r), r.pending_version) : undefined);
    if (v === undefined) throw new StepFailure('INTERRUPTED', 'the pending value is gone');
    return v;
  }

  function announce(r: RotationsTable, kind: 'succeeded' | 'rolled-back' | 'manual-due' | 'manual-overdue', notify: string): void {
    void notifier.notify(rotationNotification(r.tenant_id, toRotation(r), kind, JSON.parse(notify))).catch(deps.onError);
  }

  /** One protocol step of a `running` rotation; its failure moves the rotation to rolling_back. */
  async function step(ctx: TenantContext, r: RotationsTable, signal: AbortSignal): Promise<void> {
    const rotator = rotators.get(r.rotator);
    const memo = memos.get(r.id) ?? {};
    memos.set(r.id, memo);
    const rehearsal = r.rehearsal === 1;
    try {
      switch (r.step) {
        case 'generate': {
          if (rehearsal && !memo.sandbox) memo.sandbox = await rotator.sandbox(await contextFor(r, signal));
          const rc = await contextFor(r, signal);
          const labels = await pending.labels(targetOf(r));
          const gen = await rotator.generate(rc);
          const patch = { rotator_state: JSON.stringify(gen.state), from_version: labels.current };
          if (gen.value === null) {
            await transact((trx) => change(trx, ctx, r, { ...patch, state: 'awaiting_value', lease_owner: null, lease_until: null, reminded_at: clock.now() }, 'rotation.step', { step: 'awaiting-value' }));
            announce({ ...r, ...patch }, 'manual-due', (await policyOf(r)).notify);
            return;
          }
          if (rehearsal) {
            memo.value = gen.value;
            await transact((trx) => change(trx, ctx, r, { ...patch, step: 'apply' }, 'rotation.step', { step: 'generate' }));
            return;
          }
          await pending.write(systemCtx(r), targetOf(r), gen.value, {
            reason: `rotation ${r.id}`, context: { rotation: r.id },
            inTx: async (trx) => {
              const staged = await trx.selectFrom('secret_states').select('pending_version').where('secret_id', '=', r.secret_id).where('environment_id', '=', r.environment_id).executeTakeFirstOrThrow();
              await change(trx, ctx, r, { ...patch, step: 'apply', pending_version: staged.pending_version }, 'rotation.step', { step: 'generate' });
            },
          });
          return;
        }
        case 'apply':
          await rotator.apply(await contextFor(r, signal), await valueOf(r));
          break;
        case 'test': {
          const result = await rotator.test(await contextFor(r, signal), await valueOf(r));
          if (!result.ok) throw new StepFailure('TEST_FAILED', short(result.detail));
          break;
        }
        case 'verify': {
          // A rehearsal's value only works in the sandbox, so dependents are checked with the value they use now.
          const value = rehearsal && r.from_version !== null ? await pending.open(systemCtx(r), targetOf(r), r.from_version) : await valueOf(r);
          const checks = await checkDependents(dependents, systemCtx(r), r.secret_name, r.environment, value, { concurrency: deps.checkConcurrency, signal });
          const failed = checks.filter((c) => !c.ok);
          await transact((trx) => createRotationRepository(trx).update(r.id, nodeId, { checks: JSON.stringify(checks) }).then((ok) => { if (!ok) throw new LeaseLost(); }));
          if (failed.length > 0) throw new StepFailure('CONNECTOR_CHECK_FAILED', `${failed.length} of ${checks.length} dependent connectors failed their health check`, failed);
          break;
        }
        case 'promote': {
          if (rehearsal) {
            await transact((trx) => change(trx, ctx, r, { state: 'promoted', step: 'finalize' }, 'rotation.step', { step: 'promote', skipped: 'rehearsal' }));
            return;
          }
          const promoted = await pending.promote(systemCtx(r), targetOf(r), r.pending_version!, r.from_version, {
            context: { rotation: r.id },
            inTx: async (trx) => {
              await change(trx, ctx, r, { state: 'promoted', step: 'finalize', to_version: r.pending_version }, 'rotation.step', { step: 'promote' });
              await createRotationRepository(trx).recordResult(r.tenant_id, r.secret_id, r.environment_id, { result: 'succeeded', error: null, at: clock.now(), rotatorState: r.rotator_state });
            },
          });
          if (!promoted) throw new StepFailure('CURRENT_CHANGED', 'the current version changed during the rotation (a write or rollback landed); nothing was promoted');
          return;
        }
        default:
          throw new Error(`unknown step ${r.step}`);
      }
      await transact((trx) => change(trx, ctx, r, { step: NEXT[r.step]! }, 'rotation.step', { step: r.step }));
    } catch (err) {
      if (err instanceof LeaseLost) throw err;
      const f = err instanceof StepFailure ? err : new StepFailure('ROTATOR_ERROR', short((err as Error)?.message ?? String(err)));
      await transact((trx) => change(trx, ctx, r, {
        state: 'rolling_back', error_code: f.code, error_step: r.step, error_detail: f.detail, failed_connectors: JSON.stringify(f.failed),
      }, 'rotation.failed', { step: r.step, code: f.code }, 'failed'));
    }
  }

  /** Undoes a failed rotation: restore the source (if anything reached it), shred the pending version. Safe to repeat. */
  async function undo(ctx: TenantContext, r: RotationsTable): Promise<void> {
    const rotator = rotators.get(r.rotator);
    let restored = { ok: true, detail: 'nothing had reached the source' };
    const reached = r.error_step !== 'generate';
    const value = reached ? await valueOf(r).catch(() => null) : null;
    if (value !== null) {
      const controller = new AbortController();
      restored = await contextFor(r, controller.signal).then((rc) => rotator.restore(rc, value))
        .catch((err: Error) => ({ ok: false, detail: short(`restore failed: ${err.message}`) }));
    }
    const finish = async (trx: Transaction<Database>) => {
      await change(trx, ctx, r, { state: 'rolled_back', step: 'done', active_key: null, finished_at: clock.now() }, 'rotation.rolled_back', {
        failedStep: r.error_step ?? '', code: r.error_code ?? '', sourceRestored: String(restored.ok), restore: short(restored.detail),
      });
      if (!r.rehearsal) {
        await createRotationRepository(trx).recordResult(r.tenant_id, r.secret_id, r.environment_id, { result: 'rolled_back', error: `${r.error_step}: ${r.error_code}: ${r.error_detail}`, at: clock.now() });
      }
    };
    if (r.pending_version !== null) await pending.discard(systemCtx(r), targetOf(r), r.pending_version, { context: { rotation: r.id }, inTx: finish });
    else await transact(finish);
    await cleanup(r);
    announce(r, 'rolled-back', (await repo.findPolicy(r.tenant_id, r.secret_id, r.environment_id))?.notify ?? '[]');
  }

  /** After promotion: retire the old value at the source (a failure is reported, never undoes the promotion). */
  async function finish(ctx: TenantContext, r: RotationsTable): Promise<void> {
    let warning: string | null = null;
    if (!r.rehearsal) {
      const controller = new AbortController();
      await contextFor(r, controller.signal).then((rc) => rotators.get(r.rotator).finalize(rc)).catch((err: Error) => {
        warning = short(`finalize: ${err.message}`);
      });
    }
    await transact((trx) => change(trx, ctx, r, { state: 'succeeded', step: 'done', active_key: null, finished_at: clock.now(), error_detail: warning }, 'rotation.succeeded', warning ? { warning } : {}));
    await cleanup(r);
    announce(r, 'succeeded', (await repo.findPolicy(r.tenant_id, r.secret_id, r.environment_id))?.notify ?? '[]');
  }

  async function cleanup(r: RotationsTable): Promise<void> {
    const sandbox = memos.get(r.id)?.sandbox;
    memos.delete(r.id);
    await sandbox?.cleanup().catch(deps.onError);
  }

  /** Drives a rotation this node holds until it ends, waits for a value, or the lease is lost. */
  async function drive(ctx: TenantContext, id: string): Promise<void> {
    const controller = new AbortController();
    const beat = setInterval(() => {
      repo.renew(id, nodeId, clock.now() + leaseMs, clock.now()).then((ok) => { if (!ok) controller.abort(); }, deps.onError);
    }, Math.max(50, Math.floor(leaseMs / 3)));
    beat.unref();
    try {
      for (;;) {
        const r = await repo.getRotation(id);
        if (r.lease_owner !== nodeId || controller.signal.aborted) return;
        if (r.state === 'running') await step(ctx, r, controller.signal);
        else if (r.state === 'promoted') await finish(ctx, r);
        else if (r.state === 'rolling_back') await undo(ctx, r);
        else return;
      }
    } catch (err) {
      if (!(err instanceof LeaseLost)) throw err;
    } finally {
      clearInterval(beat);
    }
  }

  return {
    /** Starts a rotation (authorized by the caller) and runs it to its end. ROTATION_IN_PROGRESS if one is live. */
    async start(ctx: TenantContext, target: PendingTarget & { tenantId: string }, policy: RotationPoliciesTable, trigger: Trigger, opts: { rehearsal: boolean }): Promise<Rotation> {
      rotators.get(policy.rotator);
      const now = clock.now();
      const row: RotationsTable = {
        id: newId(), tenant_id: target.tenantId, secret_id: target.secretId, secret_name: target.name, environment_id: target.environmentId,
        environment: target.environment, rotator: policy.rotator, trigger, rehearsal: opts.rehearsal ? 1 : 0, state: 'running', step: 'generate', attempt: 1,
        active_key: `${opts.rehearsal ? 'rehearsal' : 'live'}:${target.secretId}:${target.environmentId}`,
        lease_owner: nodeId, lease_until: now + leaseMs, heartbeat_at: now, from_version: null, pending_version: null, to_version: null,
        rotator_state: '{}', error_code: null, error_step: null, error_detail: null, failed_connectors: '[]', checks: '[]',
        actor_type: ctx.actor.type, actor_id: ctx.actor.id, started_at: now, updated_at: now, finished_at: null, reminded_at: null,
      };
      try {
        await transact(async (trx) => {
          await trx.insertInto('rotations').values(row).execute();
          await audit.appendInTx(trx, event(ctx, row, 'rotation.started', { rotator: policy.rotator }));
        });
      } catch (err) {
        if (isUniqueViolation(err)) fail('ROTATION_IN_PROGRESS', `a rotation of "${target.name}" in ${target.environment} is already running`);
        throw err;
      }
      await drive(ctx, row.id);
      return toRotation(await repo.getRotation(row.id));
    },

    /** A person's value for a manual rotation: staged as pending, then the protocol continues from apply. */
    async supply(ctx: TenantContext, r: RotationsTable, value: string): Promise<Rotation> {
      const now = clock.now();
      const res = await db.updateTable('rotations').set({ state: 'running', lease_owner: nodeId, lease_until: now + leaseMs, heartbeat_at: now, updated_at: now })
        .where('id', '=', r.id).where('state', '=', 'awaiting_value').executeTakeFirst();
      if (Number(res.numUpdatedRows) !== 1) fail('ROTATION_NOT_AWAITING_VALUE', 'this rotation is not waiting for a value');
      const live = { ...r, state: 'running', lease_owner: nodeId };
      try {
        await pending.write(systemCtx(r), targetOf(r), value, {
          reason: `rotation ${r.id} (supplied)`, context: { rotation: r.id },
          inTx: async (trx) => {
            const staged = await trx.selectFrom('secret_states').select('pending_version').where('secret_id', '=', r.secret_id).where('environment_id', '=', r.environment_id).executeTakeFirstOrThrow();
            await change(trx, ctx, live, { step: 'apply', pending_version: staged.pending_version }, 'rotation.step', { step: 'supplied' });
          },
        });
      } catch (err) {
        // A refused value (too large, empty) leaves the rotation waiting for a better one.
        await db.updateTable('rotations').set({ state: 'awaiting_value', lease_owner: null, lease_until: null }).where('id', '=', r.id).execute();
        throw err;
      }
      await drive(ctx, r.id);
      return toRotation(await repo.getRotation(r.id));
    },

    /** Ends a rotation waiting for a value without changing anything. */
    async abandon(ctx: TenantContext, r: RotationsTable, why: string): Promise<void> {
      const now = clock.now();
      await transact(async (trx) => {
        const res = await trx.updateTable('rotations').set({ state: 'abandoned', step: 'done', active_key: null, finished_at: now, updated_at: now, error_code: 'ABANDONED', error_detail: why })
          .where('id', '=', r.id).where('state', '=', 'awaiting_value').executeTakeFirst();
        if (Number(res.numUpdatedRows) !== 1) fail('ROTATION_NOT_AWAITING_VALUE', 'this rotation is not waiting for a value');
        await audit.appendInTx(trx, event(ctx, r, 'rotation.abandoned', { why }));
      });
    },

    /**
     * Crash recovery: takes over every live rotation whose lease expired. Before promotion it rolls
     * back (nothing staged: abandoned); once promoted it finishes; a rollback in progress completes.
     */
    async recover(): Promise<number> {
      let n = 0;
      for (const orphan of await repo.orphaned(clock.now(), 100)) {
        if (!(await repo.takeOver(orphan.id, orphan.lease_until!, nodeId, clock.now() + leaseMs, clock.now()))) continue;
        n++;
        const r = await repo.getRotation(orphan.id);
        const ctx = systemCtx(r);
        try {
          if (r.state === 'running' && (r.pending_version === null || r.rehearsal === 1)) {
            // Nothing staged in Keyhold (or a rehearsal, whose sandbox lived in the dead process's memory).
            await transact((trx) => change(trx, ctx, r, { state: 'abandoned', step: 'done', active_key: null, finished_at: clock.now(), error_code: 'INTERRUPTED', error_step: r.step, error_detail: 'the node running it stopped before anything was staged' }, 'rotation.abandoned', { step: r.step }));
            continue;
          }
          if (r.state === 'running') {
            await transact((trx) => change(trx, ctx, r, { state: 'rolling_back', error_code: 'INTERRUPTED', error_step: r.step, error_detail: `the node running it stopped during ${r.step}` }, 'rotation.failed', { step: r.step, code: 'INTERRUPTED' }, 'failed'));
          }
          await drive(ctx, r.id);
        } catch (err) {
          deps.onError(err);
        }
      }
      return n;
    },

    /** Sets an earlier version's value at the source again (before a manual rollback makes it current). */
    async reapply(t: PendingTarget & { tenantId: string }, policy: RotationPoliciesTable, version: number): Promise<void> {
      const ctx: TenantContext = { tenantId: t.tenantId, actor: SYSTEM_ACTOR, requestId: 'rotation:rollback' };
      const value = await pending.open(ctx, t, version);
      const state = JSON.parse((await repo.rotationTo(t.tenantId, t.secretId, t.environmentId, version))?.rotator_state ?? '{}') as Record<string, unknown>;
      const controller = new AbortController();
      await rotators.get(policy.rotator).apply({
        tenantId: t.tenantId, secretName: t.name, environment: t.environment, rotationId: 'rollback',
        settings: JSON.parse(policy.settings) as Record<string, unknown>, currentState: state, state, current: value, previous: null,
        resolve: (name) => deps.resolve(ctx, name, t.environment), rehearsal: false, signal: controller.signal,
      }, value);
    },

    /** Reminder or overdue notice for a rotation waiting for a person. */
    remind(r: RotationsTable, notify: string, overdue: boolean): void {
      announce(r, overdue ? 'manual-overdue' : 'manual-due', notify);
    },
  };
}

export type RotationEngine = ReturnType<typeof createRotationEngine>;
