import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../platform/clock.ts';
import type { Database, RotationPoliciesTable, RotationsTable } from '../../storage/schema.ts';
import type { Notifier } from '../notifications/notifier.ts';
import type { PendingVersions } from '../secrets/pending-versions.ts';
import type { TenantContext } from '../shared/context.ts';
import { DeadlineExceeded, withDeadline } from './deadline.ts';
import { checkDependents, type DependentsPort } from './dependents.ts';
import { LeaseLost, systemCtx, targetOf, type RotationJournal } from './journal.ts';
import { rotationNotification } from './notify.ts';
import { declaredResolver } from './secret-refs.ts';
import { createRotationRepository, toRotation } from './repository.ts';
import type { RetryOutcome } from './retries.ts';
import type { RotatorRegistry } from './rotators/registry.ts';
import type { CheckResult, Rotator, RotatorContext, Sandbox } from './rotators/types.ts';
import type { ConnectorCheck, RotationStep } from './types.ts';

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

/** What lives only in the memory of the node running a rehearsal (nothing of it is stored). */
interface Memo {
  value?: string;
  sandbox?: Sandbox;
}

/** Rotator messages kept in rows and events are cut to this length. */
const short = (text: string) => text.slice(0, 500);
const NEXT: Record<string, RotationStep> = { generate: 'apply', apply: 'test', test: 'verify', verify: 'promote' };

export interface StepDeps {
  db: Kysely<Database>;
  clock: Clock;
  journal: RotationJournal;
  pending: PendingVersions;
  rotators: RotatorRegistry;
  dependents: DependentsPort;
  notifier: Notifier;
  /** Another secret's current value in an environment, read by Keyhold itself (a rotator's admin credential). */
  resolve(ctx: TenantContext, name: string, environment: string): Promise<string>;
  nodeId: string;
  /** Dependent health checks in flight at once. */
  checkConcurrency: number;
  /** How long one rotator call (or the dependents' checks) may take: past it, its signal aborts and the step fails STEP_TIMEOUT. */
  stepTimeoutMs: number;
  onError(err: unknown): void;
}

/**
 * The steps of the staged protocol (SPEC §6), each run on a rotation this node holds: one forward
 * step of a running rotation (a failure moves it to rolling_back), the undo of a failed one, and
 * the finish of a promoted one. The engine decides which to run; these only move the row on.
 */
export function createRotationSteps(deps: StepDeps) {
  const { db, clock, journal, pending, rotators, dependents, notifier, nodeId } = deps;
  const { change, transact } = journal;
  const repo = createRotationRepository(db);
  const memos = new Map<string, Memo>();

  async function policyOf(r: RotationsTable): Promise<RotationPoliciesTable> {
    const p = await repo.findPolicy(r.tenant_id, r.secret_id, r.environment_id);
    if (!p) throw new StepFailure('POLICY_DELETED', 'the rotation policy was deleted during the rotation');
    return p;
  }

  /** The rotator's view of the rotation, from durable state (plus the sandbox of a rehearsal); `call` adds the signal. */
  async function contextFor(r: RotationsTable): Promise<Omit<RotatorContext, 'signal'>> {
    const policy = await policyOf(r);
    const t = targetOf(r);
    const memo = memos.get(r.id) ?? {};
    const labels = await pending.labels(t);
    const open = async (v: number | null) => (v === null ? null : pending.open(systemCtx(r), t, v).catch(() => null));
    const stateOf = async (v: number | null) => (v === null ? {} : JSON.parse((await repo.rotationTo(r.tenant_id, r.secret_id, r.environment_id, v))?.rotator_state ?? '{}'));
    // After promotion the old value is `previous`; before it, `current`. Either way it is from_version. While
    // rolling back, the source is restored to what is current now: a write or rollback that beat the promote
    // (CURRENT_CHANGED) is what Keyhold hands out, so it is what must work at the source.
    const beforeVersion = r.step === 'generate' || r.state === 'rolling_back' ? labels.current : r.from_version;
    const olderVersion = r.state === 'promoted' ? null : labels.previous;
    const stored = JSON.parse(policy.settings) as Record<string, unknown>;
    // Only what the stored settings declare, and only in the rotation's own tenant and environment (systemCtx(r), r.environment).
    const refs = rotators.get(r.rotator).secretRefs(stored);
    return {
      tenantId: r.tenant_id, secretName: r.secret_name, environment: r.environment, rotationId: r.id,
      settings: memo.sandbox?.settings ?? stored,
      currentState: memo.sandbox?.currentState ?? await stateOf(beforeVersion),
      state: JSON.parse(r.rotator_state) as Record<string, unknown>,
      current: memo.sandbox ? memo.sandbox.current : await open(beforeVersion),
      previous: memo.sandbox ? null : await open(olderVersion),
      resolve: declaredResolver(refs, (name) => deps.resolve(systemCtx(r), name, r.environment)),
      rehearsal: r.rehearsal === 1,
    };
  }

  /**
   * One rotator call under the step deadline: its context's signal aborts when `signal` does (the lease was lost) or
   * the deadline passes, and the call fails with DeadlineExceeded then even if the rotator ignores its signal.
   */
  async function call<T>(what: string, r: RotationsTable, signal: AbortSignal, fn: (rc: RotatorContext) => Promise<T>, late?: (value: T, rc: RotatorContext) => void): Promise<T> {
    const rc = { ...await contextFor(r), signal };
    return withDeadline(deps.stepTimeoutMs, signal, what, (s) => fn({ ...rc, signal: s }), late && ((value) => late(value, rc)));
  }

  /** For undo, finish and clean-up calls, which no lease loss cuts short: only the deadline bounds them. */
  const unbounded = () => new AbortController().signal;

  /**
   * Undoes at the source a credential `rotator` issued (a generate's value and state) that no row will remember;
   * bounded by the deadline like any call. Null for a rotator that issues nothing to undo.
   */
  function discard(rotator: Rotator, rc: RotatorContext, issued: { value: string; state: Record<string, unknown> }): Promise<CheckResult> | null {
    if (!rotator.discard) return null;
    return withDeadline(deps.stepTimeoutMs, unbounded(), 'discard', (s) => rotator.discard!({ ...rc, signal: s, state: issued.state }, issued.value));
  }

  async function valueOf(r: RotationsTable): Promise<string> {
    const v = memos.get(r.id)?.value ?? (r.pending_version !== null ? await pending.open(systemCtx(r), targetOf(r), r.pending_version) : undefined);
    if (v === undefined) throw new StepFailure('INTERRUPTED', 'the pending value is gone');
    return v;
  }

  function announce(r: RotationsTable, kind: 'succeeded' | 'rolled-back' | 'manual-due' | 'manual-overdue', notify: string, retry: RetryOutcome | null = null): void {
    void notifier.notify(rotationNotification(r.tenant_id, toRotation(r), kind, JSON.parse(notify), retry)).catch(deps.onError);
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
          if (rehearsal && !memo.sandbox) memo.sandbox = await call('sandbox', r, signal, (rc) => rotator.sandbox(rc));
          const labels = await pending.labels(targetOf(r));
          let rc!: RotatorContext;
          // A credential the source issues after the deadline was given up on is undone there: no row will remember it.
          const gen = await call('generate', r, signal, (c) => rotator.generate((rc = c)), (late, c) => {
            if (late.value !== null) void discard(rotator, c, { value: late.value, state: late.state })?.catch(deps.onError);
          });
          const patch = { rotator_state: JSON.stringify(gen.state), from_version: labels.current };
          if (gen.value === null) {
            // Supply and cancel reach only live rotations: a rehearsal waiting for a person would hold its key (and
            // block policy changes) for ever. It ends here, having shown the rotation needs a person's value.
            if (rehearsal) throw new StepFailure('ROTATOR_ERROR', 'this rotator waits for a person to supply the value, which a rehearsal cannot do; nothing was changed');
            await transact((trx) => change(trx, ctx, r, { ...patch, state: 'awaiting_value', lease_owner: null, lease_until: null, reminded_at: clock.now() }, 'rotation.step', { step: 'awaiting-value' }));
            announce({ ...r, ...patch }, 'manual-due', (await policyOf(r)).notify);
            return;
          }
          if (rehearsal) {
            memo.value = gen.value;
            await transact((trx) => change(trx, ctx, r, { ...patch, step: 'apply' }, 'rotation.step', { step: 'generate' }));
            return;
          }
          try {
            await pending.write(systemCtx(r), targetOf(r), gen.value, {
              reason: `rotation ${r.id}`, context: { rotation: r.id },
              inTx: async (trx) => {
                const staged = await trx.selectFrom('secret_states').select('pending_version').where('secret_id', '=', r.secret_id).where('environment_id', '=', r.environment_id).executeTakeFirstOrThrow();
                await change(trx, ctx, r, { ...patch, step: 'apply', pending_version: staged.pending_version }, 'rotation.step', { step: 'generate' });
              },
            });
          } catch (err) {
            // Nothing was staged (too large, the secret deleted, the lease lost), but a source that issues
            // credentials already holds this one, and no row remembers it: undo it there now.
            const undone = await discard(rotator, rc, { value: gen.value, state: gen.state })
              ?.catch((e: Error) => ({ ok: false, detail: `discard failed: ${e.message}` }));
            if (err instanceof LeaseLost) throw err;
            throw new StepFailure('ROTATOR_ERROR', short(`${(err as Error)?.message ?? String(err)}${undone ? ` (source: ${undone.detail})` : ''}`));
          }
          return;
        }
        case 'apply': {
          const value = await valueOf(r);
          await call('apply', r, signal, (rc) => rotator.apply(rc, value));
          break;
        }
        case 'test': {
          const value = await valueOf(r);
          const result = await call('test', r, signal, (rc) => rotator.test(rc, value));
          if (!result.ok) throw new StepFailure('TEST_FAILED', short(result.detail));
          break;
        }
        case 'verify': {
          // A rehearsal's value only works in the sandbox, so dependents are checked with the value they use now.
          const value = rehearsal && r.from_version !== null ? await pending.open(systemCtx(r), targetOf(r), r.from_version) : await valueOf(r);
          const checks = await withDeadline(deps.stepTimeoutMs, signal, 'verify (the dependents\' health checks)',
            (s) => checkDependents(dependents, systemCtx(r), r.secret_name, r.environment, value, { concurrency: deps.checkConcurrency, signal: s }));
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
      const f = err instanceof StepFailure ? err
        : err instanceof DeadlineExceeded ? new StepFailure('STEP_TIMEOUT', err.message)
          : new StepFailure('ROTATOR_ERROR', short((err as Error)?.message ?? String(err)));
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
      restored = await call('restore', r, unbounded(), (rc) => rotator.restore(rc, value))
        .catch((err: Error) => ({ ok: false, detail: short(`restore failed: ${err.message}`) }));
    }
    let retry: RetryOutcome | null = null;
    const finish = async (trx: Transaction<Database>) => {
      await change(trx, ctx, r, { state: 'rolled_back', step: 'done', active_key: null, finished_at: clock.now() }, 'rotation.rolled_back', {
        failedStep: r.error_step ?? '', code: r.error_code ?? '', sourceRestored: String(restored.ok), restore: short(restored.detail),
      });
      if (!r.rehearsal) {
        retry = await createRotationRepository(trx).recordResult(r.tenant_id, r.secret_id, r.environment_id, { result: 'rolled_back', error: `${r.error_step}: ${r.error_code}: ${r.error_detail}`, at: clock.now(), trigger: r.trigger });
      }
    };
    if (r.pending_version !== null) await pending.discard(systemCtx(r), targetOf(r), r.pending_version, { context: { rotation: r.id }, inTx: finish });
    else await transact(finish);
    await cleanup(r);
    announce(r, 'rolled-back', (await repo.findPolicy(r.tenant_id, r.secret_id, r.environment_id))?.notify ?? '[]', retry);
  }

  /** After promotion: retire the old value at the source (a failure is reported, never undoes the promotion). */
  async function finish(ctx: TenantContext, r: RotationsTable): Promise<void> {
    let warning: string | null = null;
    if (!r.rehearsal) {
      await call('finalize', r, unbounded(), (rc) => rotators.get(r.rotator).finalize(rc)).catch((err: Error) => {
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
    if (sandbox) await withDeadline(deps.stepTimeoutMs, unbounded(), 'sandbox cleanup', (s) => sandbox.cleanup(s)).catch(deps.onError);
  }

  return { step, undo, finish, announce };
}

export type RotationSteps = ReturnType<typeof createRotationSteps>;
