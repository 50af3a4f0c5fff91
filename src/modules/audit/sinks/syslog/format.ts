import { isoTime, type AuditEvent } from '../../event.ts';

/** RFC 5612 example enterprise number, as used in Keyhold's structured-data id. */
export const SD_ID = 'keyhold@32473';
export const SEVERITY_WARNING = 4;
export const SEVERITY_NOTICE = 5;
/** Facility 13, "log audit". */
export const DEFAULT_FACILITY = 13;

export interface SyslogFormat {
  facility: number;
  hostname: string;
  appName: string;
  /** Upper bound for one whole message in bytes. */
  maxBytes: number;
}

/** Notice for allowed actions; warning for denied or failed ones. */
export function severityOf(event: AuditEvent): number {
  return event.outcome === 'allowed' ? SEVERITY_NOTICE : SEVERITY_WARNING;
}

/**
 * One RFC 5424 message:
 * `<PRI>1 TIMESTAMP HOSTNAME APP-NAME - AUDIT [keyhold@32473 seq="…" tenant="…"] {json}`.
 * The JSON is escaped to ASCII, so any byte cut is a character cut. A message over `maxBytes` first
 * loses the event's context (and says `"truncated":true`); if it is still too long it is cut. A time
 * no date can hold (a row written by hand) is the nil TIMESTAMP `-`: the message still goes, and
 * the stream does not stop at that row.
 */
export function formatSyslogMessage(event: AuditEvent, f: SyslogFormat): Buffer {
  const pri = f.facility * 8 + severityOf(event);
  const params = [`seq="${event.seq}"`];
  if (event.tenantId !== null) params.push(`tenant="${escapeParam(event.tenantId)}"`);
  const head = `<${pri}>1 ${isoTime(event.time) ?? '-'} ${headerField(f.hostname, 255)} ${headerField(f.appName, 48)} - AUDIT [${SD_ID} ${params.join(' ')}] `;
  let text = head + asciiJson(event);
  if (Buffer.byteLength(text) > f.maxBytes) text = head + asciiJson({ ...event, context: {}, truncated: true });
  const bytes = Buffer.from(text, 'utf8');
  // Only the header can hold non-ASCII (a tenant id); cut back to a character boundary.
  if (bytes.length <= f.maxBytes) return bytes;
  let end = f.maxBytes;
  while (end > 0 && (bytes[end]! & 0xc0) === 0x80) end--;
  return bytes.subarray(0, end);
}

/** Octet-counting frame for syslog over TCP (RFC 6587 §3.4.1): `LEN SP MSG`. */
export function frameOctetCounted(message: Buffer): Buffer {
  return Buffer.concat([Buffer.from(`${message.length} `, 'ascii'), message]);
}

/** RFC 5424 header fields are printable US-ASCII without spaces; "-" stands for none. */
function headerField(value: string, maxLength: number): string {
  const clean = value.replace(/[^\x21-\x7e]/g, '').slice(0, maxLength);
  return clean === '' ? '-' : clean;
}

/** SD-PARAM values escape `"`, `\` and `]` (RFC 5424 §6.3.3). */
function escapeParam(value: string): string {
  return value.replace(/["\\\]]/g, (c) => `\\${c}`);
}

function asciiJson(value: unknown): string {
  return JSON.stringify(value).replace(/[\u007f-\uffff]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
