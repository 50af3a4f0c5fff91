import { timeText, type AuditEvent } from './event.ts';

/**
 * Leading characters that make a spreadsheet read a cell as a formula (OWASP "CSV injection"):
 * = + - @, TAB and CR. A leading ' is in the set too, so that the ' this module adds can always be
 * taken off again: every text field that starts with ' had one added.
 */
const FORMULA_START = /^[=+\-@\t\r']/;

/**
 * A cell can also start inside a field: a spreadsheet whose list separator is ";" (Excel in most of
 * continental Europe) splits a line on every ";" and ends a row at every line break, and honours a
 * quote only at the start of a cell, so RFC 4180 quoting does not hold those together. What follows
 * each of them is neutralized like a field's start, a quote included (it could open a quoted cell).
 */
const FORMULA_INSIDE = /([;\r\n])(?=[=+\-@\t\r'"])/g;

const quoted = (text: string) => `"${text.replaceAll('"', '""')}"`;

/**
 * One CSV field per RFC 4180: quoted when it holds a comma, quote, CR or LF; inner quotes doubled.
 * Text that a spreadsheet would run as a formula gets a ' in front of the character that would start
 * it (at the field's start, and after a ";" or line break inside it), and is quoted. Numbers are
 * written as they are: a number cannot carry a formula.
 * @example
 * csvField('a,b');      // '"a,b"'
 * csvField('=1+1');     // `"'=1+1"`
 * csvField('a;=1+1');   // "a;'=1+1"
 * csvField(-1);         // '-1'
 */
export function csvField(value: string | number | null): string {
  if (value === null) return '';
  if (typeof value === 'number') return String(value);
  const text = value.replace(FORMULA_INSIDE, "$1'");
  if (FORMULA_START.test(value)) return quoted(`'${text}`);
  return /[",\r\n]/.test(text) ? quoted(text) : text;
}

/**
 * The context column: JSON, so it starts with "{" and holds no raw line break. A ";" inside its
 * strings that a formula character or quote follows is written as the JSON escape \u003b, which
 * every JSON reader takes back as ";": a ";" spreadsheet starts no formula in it, and an everyday
 * user agent ("(X11; Linux x86_64)") stays as it was.
 */
function contextField(context: Record<string, string>): string {
  return csvField(JSON.stringify(context).replace(/;(?=[=+\-@\t\r'"])/g, '\\u003b'));
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
 * column is JSON (`contextField`): its values are written as stored. A time no date can hold (a row
 * written by hand) is written as the stored number, as text.
 */
export function auditCsvRecord(e: AuditEvent): string {
  const text = [e.seq, e.id, timeText(e.time), e.tenantId, e.actor.type, e.actor.id, e.action, e.resource.type, e.resource.id,
    e.resource.name, e.environment, e.secretVersion, e.outcome, e.reason].map(csvField);
  return [...text, contextField(e.context), csvField(e.prevHash), csvField(e.hash)].join(',') + '\r\n';
}
