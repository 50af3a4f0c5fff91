import type { Kysely } from 'kysely';
import { isKeyholdError } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import type { AccessRequestsTable, Database } from '../../storage/schema.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import { secretResource } from '../secrets/secret-service.ts';
import type { TenantContext } from '../shared/context.ts';
import { membersOf, type AccessPolicyDocument } from './access-policy.ts';
import { currentAccessPolicy } from './access-policy-service.ts';
import { createRequestStore, ruleOf, secretRowsOf, usernameOf } from './request-store.ts';

/**
 * Who still counts towards a pending request's quorum. A quorum is of people who could approve
 * now: an earlier approver who has since been disabled, taken out of the step's groups (in the
 * policy in force) or stripped of `approve` on the request's secrets stops counting, and counts
 * again if that is undone. Their second factor was checked when they approved and is not asked again.
 */
export function createQuorum(deps: { db: Kysely<Database>; authz: Pick<Authorizer, 'allowed'>; clock: Clock }) {
  const { db, authz, clock } = deps;
  const store = createRequestStore();

  return {
    /** The approvers of `row` whose approval no longer counts (empty unless it is pending). `except` is taken as counting. */
    async lapsed(ctx: TenantContext, row: AccessRequestsTable, opts: { doc?: AccessPolicyDocument; except?: string } = {}): Promise<Set<string>> {
      const lapsed = new Set<string>();
      if (row.state !== 'pending') return lapsed;
      const approvals = (await store.approvals(db, row.id)).filter((a) => a.decision === 'approve' && a.approver_id !== opts.except);
      if (approvals.length === 0) return lapsed;
      const doc = opts.doc ?? (await currentAccessPolicy(db, row.tenant_id)).doc;
      const rule = ruleOf(row);
      // A secret deleted since the request was filed cannot be approved by anyone: no approval counts until it is restored.
      // (Thrown, it would fail every list and queue that holds the request.)
      const secrets = await secretRowsOf(db, row).catch((err: unknown) => {
        if (isKeyholdError(err) && err.code === 'SECRET_NOT_FOUND') return null;
        throw err;
      });
      if (secrets === null) return new Set(approvals.map((a) => a.approver_id));
      for (const a of approvals) {
        const name = await usernameOf(db, row.tenant_id, { type: 'user', id: a.approver_id });
        // Decided as that person now, from where they approved (not from where the caller looks at it), with the
        // factor they gave when approving taken as fresh. Approvals recorded before 023 have no address: the caller's.
        const sourceIp = a.source_ip ?? ctx.sourceIp;
        const as: TenantContext = {
          tenantId: row.tenant_id, requestId: ctx.requestId, ...(sourceIp !== undefined ? { sourceIp } : {}),
          actor: { type: 'user', id: a.approver_id, name: name ?? '', homeTenantId: row.tenant_id, mfaAt: clock.now() },
        };
        const counts = name !== null && membersOf(doc, rule.steps[a.step]?.groups ?? []).has(name)
          && (await Promise.all(secrets.map((s) => authz.allowed(as, 'approve', secretResource(s), row.environment)))).every(Boolean);
        if (!counts) lapsed.add(a.approver_id);
      }
      return lapsed;
    },
  };
}

export type Quorum = ReturnType<typeof createQuorum>;
