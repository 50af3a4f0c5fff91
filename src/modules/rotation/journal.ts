import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../platform/clock.ts';
import type { Database, RotationsTable } from '../../storage/schema.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import type { PendingTarget } from '../secrets/pending-versions.ts';
import { SYSTEM_ACTOR, type TenantContext } from '../shared/context.ts';
import { createRotationRepository } from './repository.ts';

/** This node no longer holds the rotation (another took it over): stop touching it. */
export class LeaseLost extends Error {}

/** The secret and environment a rotation row is about, as pending versions address them. */
export const targetOf = (r: RotationsTable): PendingTarget => ({ secretId: r.secret_id, name: r.secret_name, environmentId: r.environment_id, environment: r.environment });

/** Keyhold itself acting on a rotation (reading values, staging versions): audited as the system. */
export const systemCtx = (r: RotationsTable): TenantContext => ({ tenantId: r.tenant_id, actor: SYSTEM_ACTOR, requestId: `rotation:${r.id}` });

export type Outcome = 'allowed' | 'failed';

/**
 * Every change to a rotation's row goes through here: guarded by this node's lease and recorded
 * as an audit event in the same transaction, so the row and the trail never disagree.
 */
export function createRotationJournal(deps: { db: Kysely<Database>; clock: Clock; audit: Pick<AuditLog, 'appendInTx'>; nodeId: string }) {
  const { db, clock, audit, nodeId } = deps;

  /** The audit event of `action` on rotation `r` (never a value: ids, step, codes). */
  function event(ctx: TenantContext, r: RotationsTable, action: string, extra: Record<string, string> = {}, outcome: Outcome = 'allowed') {
    const base = auditFrom(ctx);
    return [{
      ...base, action, resource: { type: 'secret', id: r.secret_id, name: r.secret_name }, environment: r.environment,
      secretVersion: r.pending_version, outcome, reason: outcome === 'failed' ? (extra.code ?? null) : null,
      context: { ...base.context, rotation: r.id, trigger: r.trigger, attempt: String(r.attempt), ...(r.rehearsal ? { rehearsal: 'true' } : {}), ...extra },
    }];
  }

  /** Changes the row (guarded by this node's lease) and records the audit event, in `trx`. */
  async function change(trx: Transaction<Database>, ctx: TenantContext, r: RotationsTable, patch: Partial<RotationsTable>, action: string, extra: Record<string, string> = {}, outcome: Outcome = 'allowed') {
    const ok = await createRotationRepository(trx).update(r.id, nodeId, { ...patch, updated_at: clock.now() });
    if (!ok) throw new LeaseLost();
    await audit.appendInTx(trx, event(ctx, { ...r, ...patch }, action, extra, outcome));
  }

  const transact = <T>(fn: (trx: Transaction<Database>) => Promise<T>) => db.transaction().execute(fn);

  return { event, change, transact };
}

export type RotationJournal = ReturnType<typeof createRotationJournal>;
