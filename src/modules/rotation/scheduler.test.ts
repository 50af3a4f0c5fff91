import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import type { Harness } from '../../../test/helpers/harness.ts';
import { recordingNotifier, schedulerHarness } from '../../../test/helpers/rotation.ts';
import { createLeadership } from './leadership.ts';
import { createRotationScheduler } from './scheduler.ts';

const ENV = 'staging';

describeEachDialect('rotation scheduler: what is stored is not trusted to be sane', (dialect) => {
  async function policy(h: Harness, node: Awaited<ReturnType<typeof schedulerHarness>>['node'], name: string) {
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    await h.services.values.write(h.ctx, name, ENV, { value: 'initial-value-000' });
    const rot = node();
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', intervalMs: 86_400_000 });
    return rot;
  }
  /** Writes a schedule straight into the row, as an older Keyhold (or a hand edit) may have left it. */
  const store = (h: Harness, name: string, schedule: string) => h.storage.db.updateTable('rotation_policies')
    .set({ schedule_kind: 'cron', schedule, next_run_at: h.clock.now() }).where('secret_name', '=', name).execute();

  test('a cron stored before sub-minute crons were refused runs at most once a minute, and status says it needs attention', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const rot = await policy(h, node, 'EVERY_SECOND');
    await store(h, 'EVERY_SECOND', '* * * * * *');
    // Three minutes of passes, one every five seconds.
    for (let i = 0; i < 36; i++) {
      await rot.scheduler.tick();
      h.clock.advance(5000);
    }
    const runs = await rot.service.history(h.ctx, 'EVERY_SECOND', ENV);
    assert.ok(runs.length >= 3 && runs.length <= 4, `${runs.length} rotations in three minutes`);
    const started = runs.map((r) => Date.parse(r.startedAt)).sort();
    for (let i = 1; i < started.length; i++) assert.ok(started[i]! - started[i - 1]! >= 60_000, 'a minute apart at least');
    const [s] = (await rot.service.status(h.ctx)).filter((p) => p.secret === 'EVERY_SECOND');
    assert.equal(s!.attention.length, 1);
    assert.match(s!.attention[0]!, /more than once a minute/);
  });

  test('one policy whose stored cron no longer parses neither stops the pass nor keeps other policies from running', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const bad = await policy(h, node, 'BAD_CRON');
    await policy(h, node, 'FINE');
    await store(h, 'BAD_CRON', 'every tuesday');
    // Due before FINE, so it is met first in the pass.
    await h.storage.db.updateTable('rotation_policies').set({ next_run_at: h.clock.now() - 1000 }).where('secret_name', '=', 'BAD_CRON').execute();
    h.clock.advance(86_400_000);
    const report = await bad.scheduler.tick();
    assert.equal(report.started, 1);
    assert.equal((await bad.service.history(h.ctx, 'FINE', ENV)).length, 1, 'the other policy ran');
    assert.equal((await bad.service.history(h.ctx, 'BAD_CRON', ENV)).length, 0);
    const [s] = (await bad.service.status(h.ctx)).filter((p) => p.secret === 'BAD_CRON');
    assert.match(s!.attention.join('\n'), /cron is not a valid expression/);
  });

  test('a clock that ran a year ahead and was put right does not leave the schedule waiting a year', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const rot = await policy(h, node, 'CLOCK_JUMP');
    const start = h.clock.now();
    h.clock.advance(365 * 86_400_000);
    assert.equal((await rot.scheduler.tick()).started, 1, 'the wrong clock makes the run due');
    h.clock.set(start + 3_600_000);
    assert.equal((await rot.scheduler.tick()).started, 0);
    const next = Date.parse((await rot.service.getPolicy(h.ctx, 'CLOCK_JUMP', ENV)).nextRunAt!);
    assert.ok(next <= h.clock.now() + 86_400_000, `next run ${new Date(next).toISOString()} is within a period of now`);
    h.clock.advance(86_400_000);
    assert.equal((await rot.scheduler.tick()).started, 1, 'rotated a period later, not a year later');
  });

  test('a tenant with a storm of due rotations does not keep another tenant\'s due rotation waiting for later passes', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const rot = node();
    const storm = h.ctx;
    for (let i = 0; i < 55; i++) {
      await h.services.secrets.create(storm, { name: `STORM_${i}`, owner: 'ops' });
      await h.services.values.write(storm, `STORM_${i}`, ENV, { value: 'initial-value-000' });
      await rot.service.setPolicy(storm, `STORM_${i}`, ENV, { rotator: 'random', intervalMs: 86_400_000 });
    }
    const other = h.contextFor((await h.services.tenants.create('quiet-tenant')).id);
    await h.services.secrets.create(other, { name: 'QUIET', owner: 'ops' });
    await h.services.values.write(other, 'QUIET', ENV, { value: 'initial-value-000' });
    await rot.service.setPolicy(other, 'QUIET', ENV, { rotator: 'random', intervalMs: 86_400_000 });
    // The storm came due first (a bulk policy change, or the scheduler was down).
    await h.storage.db.updateTable('rotation_policies').set({ next_run_at: h.clock.now() - 60_000 }).where('tenant_id', '=', storm.tenantId).execute();
    await h.storage.db.updateTable('rotation_policies').set({ next_run_at: h.clock.now() }).where('tenant_id', '=', other.tenantId).execute();
    await rot.scheduler.tick();
    assert.equal((await rot.service.history(other, 'QUIET', ENV)).length, 1, 'the quiet tenant\'s rotation ran in the first pass');
  });

  test('a policy deleted between the claim of its due run and the start is not rotated, and nobody is alerted about it', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const notifier = recordingNotifier();
    const rot = await policy(h, node, 'DELETED_WHILE_DUE');
    await rot.service.setPolicy(h.ctx, 'DELETED_WHILE_DUE', ENV, { rotator: 'random', intervalMs: 86_400_000, notify: [{ kind: 'email', id: 'ops@example.com' }] });
    h.clock.advance(86_400_000);
    const scheduler = createRotationScheduler({
      db: h.storage.db, clock: h.clock, engine: rot.engine, notifier, holdMs: 30_000, onError: () => {},
      leadership: createLeadership({ db: h.storage.db, dialect, name: 'deleted-while-due', owner: 'n', leaseMs: 30_000, now: () => h.clock.now() }),
      // The owner deletes the policy just as the scheduler starts the run it claimed.
      service: { runScheduled: async (ctx, p, trigger) => {
        await rot.service.deletePolicy(h.ctx, 'DELETED_WHILE_DUE', ENV);
        return rot.service.runScheduled(ctx, p, trigger);
      } },
    });
    // Stopped here, before the harness closes: a leader's pinned connection would hold the pool open.
    await scheduler.tick().finally(() => scheduler.stop());
    await new Promise((r) => setImmediate(r));
    assert.equal((await rot.service.history(h.ctx, 'DELETED_WHILE_DUE', ENV)).length, 0);
    assert.deepEqual(notifier.sent.map((n) => n.type), []);
  });
});
