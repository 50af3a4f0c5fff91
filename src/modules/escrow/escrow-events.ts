import type { AccessRequestsTable } from '../../storage/schema.ts';
import { auditFrom, type AuditInput } from '../audit/audit-log.ts';
import type { Notification, NotificationType, Notifier, Recipient } from '../notifications/notifier.ts';
import type { TenantContext } from '../shared/context.ts';
import { ruleOf, secretsOf } from './request-store.ts';

/**
 * The audit event of one escrow transition. Every event names the request, its secrets, action
 * and environment, and carries the justification, so the trail reads on its own.
 */
export function requestEvent(ctx: TenantContext, action: string, row: AccessRequestsTable, extra: Record<string, string> = {}, outcome: AuditInput['outcome'] = 'allowed'): AuditInput {
  const base = auditFrom(ctx);
  return {
    ...base, action, outcome,
    ...(outcome !== 'allowed' && extra.reason ? { reason: extra.reason } : {}),
    resource: { type: 'access-request', id: row.id, name: secretsOf(row).map((s) => s.name).join(',') },
    environment: row.environment,
    context: {
      ...base.context, accessRequestId: row.id, requestedAction: row.action, requester: `${row.requester_type}:${row.requester_id}`,
      justification: row.justification, ...(row.break_glass === 1 ? { breakGlass: 'true' } : {}), ...extra,
    },
  };
}

/** Who hears about a request: its requester (and the owner of a requesting machine). */
export function requesterRecipients(row: AccessRequestsTable): Recipient[] {
  const list: Recipient[] = [{ kind: row.requester_type as 'user' | 'machine', id: row.requester_id }];
  if (row.requester_owner_id) list.push({ kind: 'user', id: row.requester_owner_id });
  return list;
}

/** The approver groups of one step (0-based), or of every step. */
export function groupRecipients(row: AccessRequestsTable, step?: number): Recipient[] {
  const steps = ruleOf(row).steps;
  const groups = step === undefined ? steps.flatMap((s) => s.groups) : (steps[step]?.groups ?? []);
  return [...new Set(groups)].map((g) => ({ kind: 'group' as const, id: g }));
}

/** A line describing the request for people: who wants what, where, for how long, and why. Never a value. */
export function describe(row: AccessRequestsTable): string {
  const minutes = Math.round(row.duration_ms / 60_000);
  return `${row.requester_type} ${row.requester_id} ${row.break_glass === 1 ? 'took' : 'requests'} ${row.action} of ${secretsOf(row).map((s) => s.name).join(', ')} in ${row.environment} for ${minutes} min. Justification: ${row.justification}`;
}

/**
 * Sends a notification after the change has committed. A failing channel never undoes or fails the
 * change (the audit trail already holds it); channels retry on their own.
 */
export function send(notifier: Notifier, row: AccessRequestsTable, n: { type: NotificationType; recipients: Recipient[]; subject: string; body?: string; severity?: Notification['severity'] }): void {
  try {
    void notifier.notify({
      type: n.type, tenantId: row.tenant_id, severity: n.severity ?? 'info', recipients: n.recipients, subject: n.subject,
      body: n.body ?? describe(row), resource: { type: 'access-request', id: row.id },
    }).catch(() => undefined);
  } catch {
    // Same as a rejected delivery: the change stands.
  }
}
