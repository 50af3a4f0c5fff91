import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Kysely, sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createUnmigratedDatabase } from '../../../test/helpers/databases.ts';
import type { Database } from '../schema.ts';
import { createAuditLog } from '../../modules/audit/audit-log.ts';

/** Migration 010 rebuilds (SQLite) or alters (PostgreSQL) a table that already holds a chain. */
describeEachDialect('upgrading the audit table to 010 keeps every event and the chain', (dialect) => {
  let fresh: Awaited<ReturnType<typeof createUnmigratedDatabase>>;
  let db: Kysely<Database>;
  before(async () => {
    fresh = await createUnmigratedDatabase(dialect);
    db = fresh.db;
  });
  after(() => fresh.close());

  test('events appended before the upgrade are all there after it, verify passes, and the table stays append-only', async () => {
    const { upTo } = fresh;
    await upTo('009-rotation');
    const log = createAuditLog({ db, clock: { now: () => Date.UTC(2026, 5, 1) } });
    for (let i = 0; i < 5; i++) {
      await db.transaction().execute((trx) => log.appendInTx(trx, Array.from({ length: 20 }, (_, j) => ({
        tenantId: null, actor: { type: 'system' as const, id: 'upgrade-test' }, action: 'test.event',
        resource: { type: 'tenant', id: null, name: `r${i}-${j}` }, outcome: 'allowed' as const, context: { n: String(j) },
      }))));
    }
    const before = await db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
    assert.equal(before.length, 100);

    await upTo(null);
    const afterRows = await db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
    // 019 adds `mac`, null on every event written before it (they are proved by the chain alone).
    assert.deepEqual(afterRows.map((r) => ({ ...r })), before.map((r) => ({ ...r, mac: null })));
    const verified = await log.verify();
    assert.deepEqual([verified.ok, verified.events], [true, 100]);

    // The id is no longer unique-indexed; seq still is (it is the primary key).
    const ids = dialect === 'sqlite'
      ? (await sql<{ name: string }>`select name from pragma_index_list('audit_events')`.execute(db)).rows.map((r) => r.name)
      : (await sql<{ name: string }>`select indexname as name from pg_indexes where tablename = 'audit_events' and schemaname = current_schema()`.execute(db)).rows.map((r) => r.name);
    assert.deepEqual(ids.filter((n) => /id_key|autoindex/.test(n)), []);
    await assert.rejects(sql`insert into audit_events select * from audit_events where seq = 1`.execute(db), /unique|constraint|append-only/i, 'seq is still the key');
    await assert.rejects(sql`update audit_events set action = 'x' where seq = 1`.execute(db), /append-only/);
    await assert.rejects(sql`delete from audit_events where seq = 1`.execute(db), /append-only/);
    // And the log appends on after the upgrade, in the same chain.
    await db.transaction().execute((trx) => log.appendInTx(trx, [{ tenantId: null, actor: { type: 'system', id: 'upgrade-test' }, action: 'test.after', resource: { type: 'tenant', id: null, name: null }, outcome: 'allowed' }]));
    assert.deepEqual([(await log.verify()).ok, (await log.verify()).events], [true, 101]);
  });
});
