import type { Transaction } from 'kysely';
import type { AccessRequestsTable, Database } from '../../storage/schema.ts';
import type { AuditInput } from '../audit/audit-log.ts';
import type { TenantContext } from '../shared/context.ts';
import { matchRule, resolveRule, type AccessPolicyDocument, type EscrowAction, type ResolvedRule } from './access-policy.ts';
import { requestEvent } from './escrow-events.ts';
import { ruleOf, secretsOf } from './request-store.ts';

/** What a pending request is judged by: the rule's id, its approval steps and the longest grant it allows. */
const terms = (r: ResolvedRule) => JSON.stringify([r.id, r.steps, r.maxDurationMs]);

/**
 * Why a pending request no longer stands under a new access policy, or null if it still does: the
 * rule that now covers one of its secrets is another rule, none at all, or the same rule with other
 * steps, quorum or maximum duration. Group membership is not part of it (it is read at each decision).
 */
export function supersededBy(doc: AccessPolicyDocument, row: AccessRequestsTable, secrets: ReadonlyMap<string, { name: string; classification: string }>): string | null {
  const filed = ruleOf(row);
  for (const s of secretsOf(row)) {
    const secret = secrets.get(s.id);
    // A destroyed secret's request can never be approved: it lapses with the others' judgement.
    if (!secret) continue;
    const matched = matchRule(doc, { action: row.action as EscrowAction, secretName: secret.name, classification: secret.classification, environment: row.environment });
    if (!matched) return `no rule puts ${row.action} of "${secret.name}" behind approval any more`;
    if (matched.id !== filed.id) return `"${secret.name}" now falls under rule "${matched.id}"`;
    if (terms(resolveRule(matched)) !== terms(filed)) return `rule "${filed.id}" changed its steps or limits`;
  }
  return null;
}

/**
 * Inside the transaction that applies a new access policy: every request still waiting whose rule
 * the new policy changes is superseded (approvals given under the old terms must not complete it
 * under the new ones, stricter or looser). Returns those rows, for notices once the change has
 * committed, and their events, which the caller appends: only after it has taken the tenant row's
 * lock, as the audit head is the last lock (docs/architecture.md, "Lock order"). Requests past
 * their expiry are left to expire.
 */
export async function supersedePending(trx: Transaction<Database>, ctx: TenantContext, doc: AccessPolicyDocument, version: number, now: number): Promise<{ rows: AccessRequestsTable[]; events: AuditInput[] }> {
  const pending = await trx.selectFrom('access_requests').selectAll().where('tenant_id', '=', ctx.tenantId)
    .where('state', '=', 'pending').where('expires_at', '>', now).orderBy('id').execute();
  if (pending.length === 0) return { rows: [], events: [] };
  const ids = [...new Set(pending.flatMap((r) => secretsOf(r).map((s) => s.id)))];
  const rows = await trx.selectFrom('secrets').select(['id', 'name', 'classification']).where('tenant_id', '=', ctx.tenantId).where('id', 'in', ids).execute();
  const secrets = new Map(rows.map((r) => [r.id, r]));
  const superseded: AccessRequestsTable[] = [];
  const events: AuditInput[] = [];
  for (const row of pending) {
    const reason = supersededBy(doc, row, secrets);
    if (reason === null) continue;
    // Only while it still waits: a decision that committed first (it holds the row on PostgreSQL) stands. Rows are
    // taken in id order, so two policy changes at once take them in the same order.
    const res = await trx.updateTable('access_requests').set((eb) => ({ state: 'superseded', decided_at: now, decided_by: ctx.actor.id, revision: eb('revision', '+', 1) }))
      .where('id', '=', row.id).where('state', '=', 'pending').executeTakeFirst();
    if (Number(res.numUpdatedRows) === 0) continue;
    events.push(requestEvent(ctx, 'access-request.supersede', row, { policyVersion: String(version), why: reason }));
    superseded.push(row);
  }
  return { rows: superseded, events };
}
