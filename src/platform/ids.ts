import { randomUUID } from 'node:crypto';

/** Row identifiers: random UUIDs, so ids leak neither counts nor creation order. */
export function newId(): string {
  return randomUUID();
}

/**
 * A UUIDv7 (RFC 9562): `nowMs` in the first 48 bits, the rest random. For rows whose order is
 * public anyway (audit events carry their sequence and time): a time-ordered id is appended to
 * the end of its index instead of dirtying a random page of it on every insert.
 */
export function timeOrderedId(nowMs: number): string {
  const random = randomUUID(); // xxxxxxxx-xxxx-4xxx-Vxxx-xxxxxxxxxxxx: keep its variant and random bits
  const t = Math.max(0, Math.floor(nowMs)).toString(16).padStart(12, '0').slice(-12);
  return `${t.slice(0, 8)}-${t.slice(8, 12)}-7${random.slice(15)}`;
}
