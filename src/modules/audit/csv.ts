import type { AuditEvent } from './event.ts';

/** One CSV field per RFC 4180: quoted when it holds a comma, quote, CR or LF; inner quotes doubled. */
export function csvField(value: string | number | null): string {
  const text = value === null ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
}

/** The columns of an audit CSV export, in order; `context` is a JSON object of strings. */
export const AUDIT_CSV_COLUMNS = [
  'seq', 'id', 'time', 'tenant_id', 'actor_type', 'actor_id', 'action', 'resource_type', 'resource_id', 'resource_name',
  'environment', 'secret_version', 'outcome', 'reason', 'context', 'prev_hash', 'hash',
] as const;

/** The header record, CRLF-terminated as RFC 4180 asks. */
export const AUDIT_CSV_HEADER = AUDIT_CSV_COLUMNS.join(',') + '\r\n';

/** One event as one CSV record (CRLF-terminated); the time is ISO 8601 UTC. */
export function auditCsvRecord(e: AuditEvent): string {
  return [
    e.seq, e.id, new Date(e.time).toISOString(), e.tenantId, e.actor.type, e.actor.id, e.action, e.resource.type, e.resource.id,
    e.resource.name, e.environment, e.secretVersion, e.outcome, e.reason, JSON.stringify(e.context), e.prevHash, e.hash,
  ].map(csvField).join(',') + '\r\n';
}
