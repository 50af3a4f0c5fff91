import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import type { Harness } from '../../../test/helpers/harness.ts';
import { heldSource, rotationFor, schedulerHarness } from '../../../test/helpers/rotation.ts';
import { until } from '../../../test/helpers/deadline.ts';
import type { TenantContext } from '../shared/context.ts';
import { createLeadership } from './leadership.ts';

const ENV = 'staging';
const DAY = 86_400_000;
/** The rotation and leadership leases of these nodes: renewed every 100 ms of real time, run out by moving the test clock. */
const LEASE_MS = 300;

async function policy(h: Harness, rot: ReturnType<typeof rotationFor>, ctx: TenantContext, name: string, rotator: string) {
  await h.services.secrets.create(ctx, { name, owner: 'ops' });
  await h.services.values.write(ctx, name, ENV, { value: 'initial-value-000' });
  await rot.service.setPolicy(ctx, name, ENV, { rotator, intervalMs: DAY });
}

const dueNow = (h: Harness, name: string) => h.storage.db.updateTable('rotation_policies').set({ next_run_at: h.clock.now() }).where('secret_name', '=', name).execute();
const rotations = async (rot: ReturnType<typeof rotationFor>, ctx: TenantContext, name: string) => (await rot.service.history(ctx, name, ENV)).map((r) => r.state);
const lease = (h: Harness) => h.storage.db.selectFrom('leases').selectAll().where('name', '=', 'rotation-scheduler').executeTakeFirstOrThrow();

describeEachDialect('rotation scheduler: a pass keeps the lead it started with', (dialect) => {
  test('a pass that outlasts the leadership lease renews it: another node neither takes the lead nor starts a pass of its own meanwhile', async (t) => {
    const held = heldSource(t);
    const { h, node } = await schedulerHarness(dialect, t);
    const a = node({ rotators: [held.rotator], leaseMs: LEASE_MS });
    const b = node({ rotators: [held.rotator], leaseMs: LEASE_MS });
    await policy(h, a, h.ctx, 'HUNG', 'held');
    await policy(h, a, h.ctx, 'LATER', 'random');
    await dueNow(h, 'HUNG');

    const pass = a.scheduler.tick();
    await until('HUNG waiting on its source', () => held.holding.has('HUNG'));
    // Due after a's pass read what to run: only another pass would start it.
    await dueNow(h, 'LATER');
    // The lease a took when its pass began runs out (by the clock every node reads).
    h.clock.advance(2 * LEASE_MS);
    await until('a renews its lease while its pass runs', async () => (await lease(h)).until > h.clock.now());
    assert.equal((await lease(h)).owner, a.nodeId);

    const rb = await b.scheduler.tick();
    assert.equal(rb.leader, false, 'b does not lead while a\'s pass runs');
    assert.deepEqual(await rotations(b, h.ctx, 'LATER'), [], 'and so starts nothing');
    held.release();
    const ra = await pass;
    assert.equal(ra.started, 1);
    assert.deepEqual(await rotations(a, h.ctx, 'HUNG'), ['succeeded']);
    assert.equal((await a.scheduler.tick()).started, 1, 'LATER runs in a\'s next pass');
    assert.deepEqual(await rotations(a, h.ctx, 'LATER'), ['succeeded']);
  });

  test('a leader that lost the lead mid-pass starts none of the runs still waiting for a slot: the new leader runs them, once', async (t) => {
    const held = heldSource(t);
    const { h, node } = await schedulerHarness(dialect, t);
    const a = node({ rotators: [held.rotator], leaseMs: LEASE_MS });
    const b = node({ rotators: [held.rotator], leaseMs: LEASE_MS });
    // Three of one tenant: two take the tenant's slots and hang, the third waits for one.
    await policy(h, a, h.ctx, 'HUNG_0', 'held');
    await policy(h, a, h.ctx, 'HUNG_1', 'held');
    await policy(h, a, h.ctx, 'WAITING', 'random');
    await h.storage.db.updateTable('rotation_policies').set({ next_run_at: h.clock.now() - 60_000 }).where('secret_name', 'in', ['HUNG_0', 'HUNG_1']).execute();
    await dueNow(h, 'WAITING');

    const pass = a.scheduler.tick();
    await until('both hung runs waiting on their source', () => held.holding.size === 2);
    // b takes the lead from under a: on SQLite a stalled past its lease (b found it run out); on PostgreSQL a's
    // pinned connection died, its advisory lock with it, and b took the lock.
    const other = createLeadership({ db: h.storage.db, dialect, name: 'rotation-scheduler', owner: b.nodeId, leaseMs: LEASE_MS, now: () => h.clock.now() });
    try {
      if (dialect === 'sqlite') {
        await h.storage.db.updateTable('leases').set({ owner: b.nodeId, until: h.clock.now() + LEASE_MS }).where('name', '=', 'rotation-scheduler').execute();
      } else {
        await takeLock(h, other);
      }
      held.release();
      const ra = await pass;
      assert.equal(ra.started, 2, 'a finishes the runs it had started');
      assert.deepEqual(await rotations(a, h.ctx, 'WAITING'), [], 'and leaves the waiting one to the new leader');
      assert.equal((await h.storage.db.selectFrom('rotation_policies').select('next_run_at').where('secret_name', '=', 'WAITING').executeTakeFirstOrThrow()).next_run_at, h.clock.now(), 'still due, unclaimed');
    } finally {
      // Here, not in an after hook: the harness's close waits for the connection a held lock pins. b's scheduler goes
      // on with the lead (on PostgreSQL its lock is taken by its scheduler's own connection).
      await other.release();
    }
    const rb = await b.scheduler.tick();
    assert.deepEqual([rb.leader, rb.started], [true, 1]);
    assert.deepEqual(await rotations(b, h.ctx, 'WAITING'), ['succeeded']);
    assert.deepEqual([(await a.scheduler.tick()).leader, (await b.scheduler.tick()).started], [false, 0], 'once: a does not lead, nothing is left');
  });

  /** PostgreSQL: ends the connection that holds the leader's advisory lock until `other` takes it (the old leader's heartbeat may take it back first). */
  async function takeLock(h: Harness, other: ReturnType<typeof createLeadership>) {
    const holder = async () => (await sql<{ pid: number }>`select l.pid from pg_locks l where l.locktype = 'advisory' and l.granted
      and ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended('keyhold/leadership/' || current_schema() || '/rotation-scheduler', 0)`.execute(h.storage.db)).rows[0]?.pid;
    for (let i = 0; i < 20; i++) {
      const pid = await holder();
      if (pid !== undefined) await sql`select pg_terminate_backend(${pid})`.execute(h.storage.db);
      await until('the lock gone with its connection', async () => (await holder()) === undefined || (await holder()) !== pid);
      if (await other.acquire()) return;
    }
    assert.fail('could not take the lock from the old leader');
  }
});
