import { randomUUID } from 'node:crypto';

/** Row identifiers: random UUIDs, so ids leak neither counts nor creation order. */
export function newId(): string {
  return randomUUID();
}
