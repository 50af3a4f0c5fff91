import type { Kysely } from 'kysely';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import { isUniqueViolation } from '../../storage/db-errors.ts';
import type { Database, RotationPoliciesTable, RotationsTable } from '../../storage/schema.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { PendingTarget } from '../secrets/pending-versions.ts';
import { SYSTEM_ACTOR, type TenantContext } from '../shared/context.ts';
import { withDeadline } from './deadline.ts';
import { createRotationJournal, LeaseLost, systemCtx, targetOf } from './journal.ts';
import { createRotationRepository, toRotation } from './repository.ts';
import { declaredResolver } from './secret-refs.ts';
import { createRotationSteps, type StepDeps } from './steps.ts';
import type { Rotation, Trigger } from './types.ts';

export interface EngineDeps extends Omit<StepDeps, 'journal'> {
  db: Kysely<Database>;
  clock: Clock;
  audit: Pick<AuditLog, 'appendInTx'>;
  /** This process, as the holder of rotation leases. */
  nodeId: string;
  leaseMs: number;
}

/**
 * The staged protocol (SPEC §6): generate → pending stored → apply at the source → test → every
 * dependent connector checked with the pending value → promote → finalize → notify; any failure
 * rolls back (source restored where the rotator can, pending shredded). Every step is written to
 * the rotation's row before it runs, under a lease this node renews, so after a crash another node
 * (or this one restarted) finds it and rolls back — or, once promoted, finishes it.
 */
export function createRotationEngine(deps: EngineDeps) {
  const { db, clock, pending, rotators, audit, nodeId, leaseMs } = deps;
  const repo = createRotationRepository(db);
  const journal = createRotationJournal({ db, clock, audit, nodeId });
  const { event, change, transact } = journal;
  const { step, undo, finish, announce } = createRotationSteps({ ...deps, journal });
  /**
   * Rotations this process is driving now. Leases are held per node, so a rotation whose renewals
   * failed for a while looks orphaned to this node's own recovery too, and the lease guard cannot
   * tell two drivers of one node apart: recovery leaves these to the driver that is still alive.
   */
  const driving = new Set<string>();

  /** Drives a rotation this node holds until it ends, waits for a value, or the lease is lost. */
  async function drive(ctx: TenantContext, id: string): Promise<void> {
    if (driving.has(id)) return;
    driving.add(id);
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
      driving.delete(id);
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
          // Serialised with policy changes on the policy's row: the rotation runs with the rotator and settings in
          // force now, and a change of either is refused from here until it ends (rotation-service setPolicy).
          const held = await createRotationRepository(trx).holdPolicy(target.tenantId, target.secretId, target.environmentId);
          if (!held) fail('ROTATION_POLICY_NOT_FOUND', `secret "${target.name}" has no rotation policy in ${target.environment}`);
          row.rotator = rotators.get(held.rotator).type;
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
        // A refused value (too large, empty) leaves the rotation waiting for a better one; only while this call still
        // holds it: a node stalled past its lease must not bring back a rotation another node abandoned or moved on.
        await db.updateTable('rotations').set({ state: 'awaiting_value', lease_owner: null, lease_until: null })
          .where('id', '=', r.id).where('state', '=', 'running').where('lease_owner', '=', nodeId).execute();
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
        // A person gave this run up: the scheduler does not start it again behind their back.
        await createRotationRepository(trx).dropRetry(r.tenant_id, r.secret_id, r.environment_id);
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
        if (driving.has(orphan.id)) continue;
        if (!(await repo.takeOver(orphan.id, orphan.lease_until!, nodeId, clock.now() + leaseMs, clock.now()))) continue;
        n++;
        const r = await repo.getRotation(orphan.id);
        const ctx = systemCtx(r);
        try {
          if (r.state === 'running' && (r.pending_version === null || r.rehearsal === 1)) {
            // Nothing staged in Keyhold (or a rehearsal, whose sandbox lived in the dead process's memory).
            await transact(async (trx) => {
              await change(trx, ctx, r, { state: 'abandoned', step: 'done', active_key: null, finished_at: clock.now(), error_code: 'INTERRUPTED', error_step: r.step, error_detail: 'the node running it stopped before anything was staged' }, 'rotation.abandoned', { step: r.step });
              // A scheduled or expiry run cut short is a failed attempt like any other: it is tried again.
              if (r.rehearsal === 0) await createRotationRepository(trx).recordResult(r.tenant_id, r.secret_id, r.environment_id, { result: 'abandoned', error: `${r.step}: INTERRUPTED`, at: clock.now(), trigger: r.trigger });
            });
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
      const rotator = rotators.get(policy.rotator);
      const settings = JSON.parse(policy.settings) as Record<string, unknown>;
      // Bounded like a step: a source that never answers fails the rollback (ROTATION_SOURCE_FAILED) instead of holding the request.
      await withDeadline(deps.stepTimeoutMs, new AbortController().signal, 'apply', (signal) => rotator.apply({
        tenantId: t.tenantId, secretName: t.name, environment: t.environment, rotationId: 'rollback',
        settings, currentState: state, state, current: value, previous: null,
        // As in every step: only the names the rotator declares for the stored settings resolve.
        resolve: declaredResolver(rotator.secretRefs(settings), (name) => deps.resolve(ctx, name, t.environment)), rehearsal: false, signal,
      }, value));
    },

    /** Reminder or overdue notice for a rotation waiting for a person. */
    remind(r: RotationsTable, notify: string, overdue: boolean): void {
      announce(r, overdue ? 'manual-overdue' : 'manual-due', notify);
    },
  };
}

export type RotationEngine = ReturnType<typeof createRotationEngine>;
