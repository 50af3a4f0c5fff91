import type { AuditEvent } from './event.ts';

/**
 * Leading characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection"):
 * = + - @, TAB and CR. A leading ' is in the set too, so that the ' this module adds can always be
 * taken off again: every text field that starts with ' had one added.
 */
const FORMULA_START = /^[=+\-@\t\r']/;

const quoted = (text: string) => `"${text.replaceAll('"', '""')}"`;

/**
 * One CSV field per RFC 4180: quoted when it holds a comma, quote, CR or LF; inner quotes doubled.
 * Text that a spreadsheet would run as a formula gets a leading ' and is quoted. Numbers are written
 * as they are: a number cannot carry a formula.
 * @example
 * csvField('a,b');      // '"a,b"'
 * csvField('=1+1');     // `"'=1+1"`
 * csvField(-1);         // '-1'
 */
export function csvField(value: string | number | null): string {
  if (value === null) return '';
  if (typeof value === 'number') return String(value);
  if (FORMULA_START.test(value)) return quoted(`'${value}`);
  return /[",\r\n]/.test(value) ? quoted(value) : value;
}

/** The columns of an audit CSV export, in order; `context` is a JSON object of strings. */
export const AUDIT_CSV_COLUMNS = [
  'seq', 'id', 'time', 'tenant_id', 'actor_type', 'actor_id', 'action', 'resource_type', 'resource_id', 'resource_name',
  'environment', 'secret_version', 'outcome', 'reason', 'context', 'prev_hash', 'hash',
] as const;

/** The header record, CRLF-terminated as RFC 4180 asks. */
export const AUDIT_CSV_HEADER = AUDIT_CSV_COLUMNS.join(',') + '\r\n';

/**
 * One event as one CSV record (CRLF-terminated); the time is ISO 8601 UTC. `seq` and
 * `secret_version` are numbers; every other column is text, neutralized by `csvField`. The context
 * column is JSON and so starts with `{`: its values are written as stored.
 */
export function auditCsvRecord(e: AuditEvent): string {
  return [
    e.seq, e.id, new Date(e.time).toISOString(), e.tenantId, e.actor.type, e.actor.id, e.action, e.resource.type, e.resource.id,
    e.resource.name, e.environment, e.secretVersion, e.outcome, e.reason, JSON.stringify(e.context),
    e.prevHash, e.hash,
  ].map(csvField).join(',') + '\r\n';
}
