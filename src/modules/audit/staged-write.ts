import type { Kysely, Transaction } from 'kysely';
import type { Database } from '../../storage/schema.ts';
import type { AuditInput, AuditLog } from './audit-log.ts';

/**
 * A write whose checks are all done (against `db`, before any transaction): `write` applies it in the
 * caller's transaction, querying only that transaction (on SQLite a query on `db` would wait for the
 * one connection the transaction holds), and returns the audit events to append with it; `committed`
 * runs once that transaction has committed: listeners, caches, and the caller's result.
 */
export interface StagedWrite<T> {
  write(trx: Transaction<Database>): Promise<AuditInput[]>;
  committed(): Promise<T> | T;
}

/**
 * Applies `staged` in one transaction, their audit events appended last in it (the head is every
 * writer's lock: taken last, see appendInTx), so all of them commit or none does; then tells each
 * that it committed, in order.
 *
 * @example
 * const [created] = await commitStaged(db, audit, [await automations.prepareCreate(ctx, def)]);
 */
export async function commitStaged<T>(db: Kysely<Database>, audit: Pick<AuditLog, 'appendInTx'>, staged: ReadonlyArray<StagedWrite<T>>): Promise<T[]> {
  await db.transaction().execute(async (trx) => {
    const events: AuditInput[] = [];
    for (const s of staged) events.push(...(await s.write(trx)));
    await audit.appendInTx(trx, events);
  });
  const results: T[] = [];
  for (const s of staged) results.push(await s.committed());
  return results;
}
