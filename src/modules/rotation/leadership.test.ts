import { after, before, test } from 'node:test';
import { sql } from 'kysely';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createTestDatabase, type TestDatabase } from '../../../test/helpers/databases.ts';
import type { Storage } from '../../storage/database.ts';
import { createLeadership } from './leadership.ts';

describeEachDialect('scheduler leadership', (dialect) => {
  const opened: Array<{ database: TestDatabase; storage: Storage }> = [];
  const open = async () => {
    const database = await createTestDatabase(dialect);
    const storage = await database.open();
    opened.push({ database, storage });
    return storage;
  };
  let a: Storage;
  let b: Storage;
  before(async () => {
    [a, b] = [await open(), await open()];
  });
  after(async () => {
    for (const { database, storage } of opened) {
      await storage.close();
      await database.cleanup();
    }
  });
  const leader = (s: Storage, owner: string) => createLeadership({ db: s.db, dialect, name: 'rotation-scheduler', owner, leaseMs: 60_000, now: () => Date.now() });

  test('one leader per deployment; two deployments on one PostgreSQL database (each its own schema) each have their own', async () => {
    const [first, second, elsewhere] = [leader(a, 'node-1'), leader(a, 'node-2'), leader(b, 'other-deployment')];
    try {
      assert.equal(await first.acquire(), true);
      assert.equal(await second.acquire(), false, 'a second node of the same deployment waits');
      assert.equal(await elsewhere.acquire(), true, "another deployment's scheduler is not held up by this one's lock");
      await first.release();
      assert.equal(await second.acquire(), true, 'released, it passes to the next node');
    } finally {
      for (const l of [first, second, elsewhere]) await l.release();
    }
  });

  test('a leader whose pinned connection died takes the lock again on a live one, rather than believing it still holds it', { skip: dialect !== 'postgres' && 'only PostgreSQL has session advisory locks (SQLite runs one server per file: the lease row alone)' }, async () => {
    const leader = createLeadership({ db: a.db, dialect, name: 'lost-lock', owner: 'node-1', leaseMs: 60_000, now: () => Date.now() });
    const held = async () => Number((await sql<{ n: string }>`select count(*) as n from pg_locks l where l.locktype = 'advisory' and l.granted
      and ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended('keyhold/leadership/' || current_schema() || '/lost-lock', 0)`.execute(a.db)).rows[0]!.n);
    const holder = async () => (await sql<{ pid: number }>`select l.pid from pg_locks l where l.locktype = 'advisory' and l.granted
      and ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended('keyhold/leadership/' || current_schema() || '/lost-lock', 0)`.execute(a.db)).rows[0]?.pid;
    try {
      assert.equal(await leader.acquire(), true);
      assert.equal(await held(), 1);
      await sql`select pg_terminate_backend(${await holder()})`.execute(b.db);
      for (let i = 0; i < 50 && (await held()) > 0; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await held(), 0, 'the lock went with its connection');
      assert.equal(await leader.acquire(), true);
      assert.equal(await held(), 1, 'the leader holds the lock again, on a live connection');
    } finally {
      await leader.release();
    }
  });

  test('a dead leader whose clock ran ahead does not keep the lead from live nodes until its wrong time comes', { skip: dialect !== 'postgres' && 'only PostgreSQL has session advisory locks (SQLite runs one server per file: the lease row alone)' }, async () => {
    const YEAR = 365 * 86_400_000;
    const ahead = createLeadership({ db: a.db, dialect, name: 'clock-ahead', owner: 'node-1', leaseMs: 60_000, now: () => Date.now() + YEAR });
    const right = createLeadership({ db: a.db, dialect, name: 'clock-ahead', owner: 'node-2', leaseMs: 60_000, now: () => Date.now() });
    const holder = async () => (await sql<{ pid: number }>`select l.pid from pg_locks l where l.locktype = 'advisory' and l.granted
      and ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended('keyhold/leadership/' || current_schema() || '/clock-ahead', 0)`.execute(a.db)).rows[0]?.pid;
    try {
      assert.equal(await ahead.acquire(), true);
      assert.equal(await right.acquire(), false, 'while it lives, it leads');
      // node-1 dies: the server drops its lock with its connection; its lease row says it leads for another year.
      await sql`select pg_terminate_backend(${await holder()})`.execute(b.db);
      for (let i = 0; i < 50 && (await holder()) !== undefined; i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(await right.acquire(), true, 'the advisory lock is the authority: the live node takes the lead');
    } finally {
      await right.release();
      await ahead.release().catch(() => {});
    }
  });
});
