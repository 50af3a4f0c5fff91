import type { AuditEventsTable } from '../../storage/schema.ts';

/*
 * SQLite keeps any value in any column (a blob in a text column, text or a fraction in a bigint);
 * PostgreSQL refuses them. Only a row written by hand can hold one. The read side shows such a row
 * rather than fail on it (a page, an export or a sink must not stop there for good); verify names it.
 */

const TEXT = ['id', 'actor_type', 'actor_id', 'action', 'resource_type', 'outcome', 'context', 'prev_hash', 'hash'] as const;
const TEXT_OR_NULL = ['tenant_id', 'resource_id', 'resource_name', 'environment', 'reason'] as const;

/** The first column of `r` whose stored value is not of the column's type, as "its <column> is not <kind>"; null when none is. */
export function mistypedColumn(r: AuditEventsTable): string | null {
  if (!Number.isInteger(r.time)) return 'its time is not a whole number';
  if (r.secret_version !== null && !Number.isInteger(r.secret_version)) return 'its secret_version is not a whole number';
  for (const c of TEXT) if (typeof r[c] !== 'string') return `its ${c} is not text`;
  for (const c of TEXT_OR_NULL) if (r[c] !== null && typeof r[c] !== 'string') return `its ${c} is not text`;
  return null;
}

const asText = (v: unknown): string => (v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : String(v));

/**
 * The row with every value of its column's type: text kept elsewhere (a blob: its bytes as UTF-8) as
 * text, a time that is no whole number as 0 and such a version as none. `mistypedColumn` says what was changed.
 */
export function typedRow(r: AuditEventsTable): AuditEventsTable {
  const out = { ...r, time: Number.isInteger(r.time) ? r.time : 0, secret_version: r.secret_version === null || Number.isInteger(r.secret_version) ? r.secret_version : null };
  for (const c of TEXT) out[c] = asText(r[c]);
  for (const c of TEXT_OR_NULL) out[c] = r[c] === null ? null : asText(r[c]);
  return out;
}
