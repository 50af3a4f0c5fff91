import { fail } from '../../errors/index.ts';
import type { Executor } from '../../storage/database.ts';
import type { AccessApprovalsTable, AccessGrantsTable, AccessRequestsTable } from '../../storage/schema.ts';
import type { EscrowAction, ResolvedRule } from './access-policy.ts';
import type { AccessRequest, GrantState, RequestState } from './types.ts';
import { isoTime as iso } from '../../platform/clock.ts';

export const ruleOf = (row: AccessRequestsTable) => JSON.parse(row.rule) as ResolvedRule;
export const secretsOf = (row: AccessRequestsTable) => JSON.parse(row.secrets) as Array<{ id: string; name: string }>;

/**
 * The 0-based step a request waits for: the first whose approvals are not all in (approvals count
 * towards the step they were given in), or -1 when every step is satisfied.
 */
export function waitingStep(rule: ResolvedRule, approvals: Pick<AccessApprovalsTable, 'decision' | 'step'>[]): number {
  for (const [i, step] of rule.steps.entries()) {
    const got = approvals.filter((a) => a.decision === 'approve' && a.step === i).length;
    if (got < step.approvals) return i;
  }
  return -1;
}

/**
 * The 0-based step a pending request waits for. Its approvals can satisfy every step while it is
 * still pending (an approver who had lapsed counts again); it then waits for its last step: the
 * grant is made by an approver's decision, with a fresh second factor, never by reading the request.
 */
export function pendingStep(rule: ResolvedRule, approvals: Pick<AccessApprovalsTable, 'decision' | 'step'>[]): number {
  const step = waitingStep(rule, approvals);
  return step === -1 ? rule.steps.length - 1 : step;
}

/** What an approved request's grants are now: they share one expiry and are revoked together. */
export function grantState(grants: Pick<AccessGrantsTable, 'expires_at' | 'revoked_at'>[], now: number): GrantState {
  const g = grants[0];
  if (!g) return 'none';
  if (g.revoked_at !== null) return 'revoked';
  return g.expires_at <= now ? 'expired' : 'active';
}

/** Reads and guarded writes of access requests; every lookup is scoped by tenant. */
export function createRequestStore() {
  async function find(db: Executor, tenantId: string, id: string): Promise<AccessRequestsTable> {
    const row = await db.selectFrom('access_requests').selectAll().where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
    // Another tenant's request is answered exactly like one that never existed.
    return row ?? fail('REQUEST_NOT_FOUND', 'no such access request in this tenant');
  }

  function approvals(db: Executor, requestId: string): Promise<AccessApprovalsTable[]> {
    return db.selectFrom('access_approvals').selectAll().where('request_id', '=', requestId).orderBy('created_at').orderBy('approver_id').execute();
  }

  function grants(db: Executor, requestId: string): Promise<AccessGrantsTable[]> {
    return db.selectFrom('access_grants').selectAll().where('request_id', '=', requestId).execute();
  }

  return {
    find,
    approvals,
    grants,

    /**
     * Takes the request for a change: bumps its revision only while it is still pending. On
     * PostgreSQL this row lock makes concurrent deciders wait, and the loser sees the winner's
     * state; SQLite runs one write transaction at a time.
     */
    async lockPending(trx: Executor, tenantId: string, id: string): Promise<boolean> {
      const res = await trx.updateTable('access_requests').set((eb) => ({ revision: eb('revision', '+', 1) }))
        .where('tenant_id', '=', tenantId).where('id', '=', id).where('state', '=', 'pending').executeTakeFirst();
      return Number(res.numUpdatedRows) > 0;
    },

    async setState(trx: Executor, id: string, state: RequestState, decided: { at: number; by: string } | null, durationMs?: number): Promise<void> {
      await trx.updateTable('access_requests').set({
        state, ...(decided ? { decided_at: decided.at, decided_by: decided.by } : {}), ...(durationMs !== undefined ? { duration_ms: durationMs } : {}),
      }).where('id', '=', id).execute();
    },

    /** The request as callers see it, with its decisions, grant and review; `lapsed` approvers (see quorum.ts) do not count. */
    async view(db: Executor, row: AccessRequestsTable, now: number, lapsed: ReadonlySet<string> = new Set()): Promise<AccessRequest> {
      const [decisions, live, review] = await Promise.all([
        approvals(db, row.id), grants(db, row.id),
        db.selectFrom('access_reviews').select(['id', 'reviewed_at', 'outcome']).where('request_id', '=', row.id).executeTakeFirst(),
      ]);
      const rule = ruleOf(row);
      const step = row.state === 'pending' ? pendingStep(rule, decisions.filter((a) => !lapsed.has(a.approver_id))) : -1;
      return {
        id: row.id,
        requester: { type: row.requester_type as 'user' | 'machine', id: row.requester_id, ownerId: row.requester_owner_id },
        action: row.action as EscrowAction,
        environment: row.environment,
        secrets: secretsOf(row),
        justification: row.justification,
        durationSeconds: Math.round(row.duration_ms / 1000),
        state: row.state as RequestState,
        breakGlass: row.break_glass === 1,
        rule: { id: rule.id, policyVersion: row.policy_version, steps: rule.steps },
        waitingForStep: step >= 0 ? step + 1 : null,
        approvals: decisions.map((a) => ({
          approverId: a.approver_id, decision: a.decision as 'approve' | 'deny', counts: a.decision === 'approve' && !lapsed.has(a.approver_id), step: a.step + 1, comment: a.comment,
          durationSeconds: a.duration_ms === null ? null : Math.round(a.duration_ms / 1000), createdAt: iso(a.created_at)!,
        })),
        grant: { state: grantState(live, now), expiresAt: iso(live[0]?.expires_at ?? null), revokedAt: iso(live[0]?.revoked_at ?? null) },
        review: review ? { id: review.id, state: review.reviewed_at === null ? 'open' : 'done', outcome: review.outcome } : null,
        createdAt: iso(row.created_at)!,
        expiresAt: iso(row.expires_at)!,
        decidedAt: iso(row.decided_at),
        decidedBy: row.decided_by,
      };
    },
  };
}

export type RequestStore = ReturnType<typeof createRequestStore>;

/** The secrets a request names, as policy resources (a deleted one is SECRET_NOT_FOUND). */
export async function secretRowsOf(db: Executor, row: AccessRequestsTable) {
  const wanted = secretsOf(row);
  const rows = await db.selectFrom('secrets').selectAll().where('tenant_id', '=', row.tenant_id).where('id', 'in', wanted.map((s) => s.id)).execute();
  return wanted.map((w) => {
    const found = rows.find((r) => r.id === w.id && r.deleted_at === null);
    return found ?? fail('SECRET_NOT_FOUND', `secret "${w.name}" does not exist`);
  });
}

/** A user's username (group membership is by username), or null for anything else. */
export async function usernameOf(db: Executor, tenantId: string, actor: { type: string; id: string }): Promise<string | null> {
  if (actor.type !== 'user') return null;
  const row = await db.selectFrom('users').select('username').where('tenant_id', '=', tenantId).where('id', '=', actor.id).where('disabled_at', 'is', null).executeTakeFirst();
  return row?.username ?? null;
}
