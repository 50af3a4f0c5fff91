import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import type { Harness } from '../../../test/helpers/harness.ts';
import { recordingNotifier, rotationFor, schedulerHarness, scriptedRotator } from '../../../test/helpers/rotation.ts';
import { RETRY_LIMITS, retryDelay } from './retries.ts';

const ENV = 'staging';
const DAY = 86_400_000;
const settle = () => new Promise((r) => setImmediate(r));

describeEachDialect('rotation: failed scheduler-driven runs are retried', (dialect) => {
  const setup = (t: TestContext) => schedulerHarness(dialect, t);
  async function secret(h: Harness, name: string, expiresInMs?: number) {
    await h.services.secrets.create(h.ctx, { name, owner: 'ops', ...(expiresInMs ? { expiresAt: new Date(h.clock.now() + expiresInMs).toISOString() } : {}) });
    await h.services.values.write(h.ctx, name, ENV, { value: 'initial-value-000' });
  }
  const history = async (rot: ReturnType<typeof rotationFor>, h: Harness, name: string) => rot.service.history(h.ctx, name, ENV);
  const statusOf = async (rot: ReturnType<typeof rotationFor>, h: Harness, name: string) => (await rot.service.status(h.ctx)).find((s) => s.secret === name)!;

  test('a failed expiry rotation is tried again with growing waits until Keyhold gives up; owners hear each failure and the giving up', async (t) => {
    const { h, node } = await setup(t);
    let broken = true;
    const flaky = scriptedRotator('flaky', { test: async () => ({ ok: !broken, detail: 'login refused' }) });
    const notifier = recordingNotifier();
    const rot = node({ rotators: [flaky], notifier });
    await secret(h, 'EXPIRING', 10 * DAY);
    await rot.service.setPolicy(h.ctx, 'EXPIRING', ENV, { rotator: 'flaky', expiryLeadMs: 7 * DAY, notify: [{ kind: 'email', id: 'ops@example.com' }] });
    h.clock.advance(3 * DAY + 1);

    for (let attempt = 1; attempt <= RETRY_LIMITS.maxAttempts; attempt++) {
      const report = await rot.scheduler.tick();
      assert.equal(report.started, 1, `attempt ${attempt} ran`);
      const runs = await history(rot, h, 'EXPIRING');
      assert.equal(runs.length, attempt, 'one rotation per attempt');
      assert.deepEqual(runs.map((r) => [r.trigger, r.state]), Array(attempt).fill(['expiry', 'rolled_back']));
      const s = await statusOf(rot, h, 'EXPIRING');
      assert.equal(s.retry?.failedAttempts, attempt);
      await settle();
      const told = notifier.sent.at(-1)!;
      if (attempt < RETRY_LIMITS.maxAttempts) {
        assert.equal(s.retry?.nextAttemptAt, new Date(h.clock.now() + retryDelay(attempt)).toISOString(), 'bounded exponential backoff');
        assert.deepEqual(s.attention, []);
        assert.equal(told.type, 'rotation.rolled-back');
        assert.match(told.body, new RegExp(`Attempt ${attempt} of ${RETRY_LIMITS.maxAttempts} failed: Keyhold tries again at`));
        // Not before its time, however often the scheduler passes.
        h.clock.advance(retryDelay(attempt) - 1);
        assert.equal((await rot.scheduler.tick()).started, 0, 'no attempt before the backoff ends');
        h.clock.advance(1);
      } else {
        assert.equal(s.retry?.nextAttemptAt, null);
        assert.ok(s.retry?.gaveUpAt);
        assert.equal(s.attention.length, 1);
        assert.match(s.attention[0]!, /retries exhausted/);
        assert.equal(told.type, 'rotation.gave-up');
        assert.equal(told.severity, 'alert');
        assert.match(told.body, /login refused/);
      }
    }
    assert.equal(notifier.sent.length, RETRY_LIMITS.maxAttempts, 'one notification per failure, the last one the giving up');
    h.clock.advance(DAY);
    assert.equal((await rot.scheduler.tick()).started, 0, 'given up: nothing more is tried');
    assert.equal((await history(rot, h, 'EXPIRING')).length, RETRY_LIMITS.maxAttempts);

    broken = false;
    assert.equal((await rot.service.rotate(h.ctx, 'EXPIRING', ENV)).state, 'succeeded');
    const s = await statusOf(rot, h, 'EXPIRING');
    assert.equal(s.retry, null, 'a success resets the count');
    assert.deepEqual(s.attention, []);
    assert.equal((await rot.scheduler.tick()).started, 0, 'rotated since the expiry came due: no further expiry run');
  });

  test('a failed manual rotation after the expiry came due does not stand in for the expiry rotation', async (t) => {
    const { h, node } = await setup(t);
    let broken = true;
    const flaky = scriptedRotator('flaky', { test: async () => ({ ok: !broken, detail: 'login refused' }) });
    const rot = node({ rotators: [flaky] });
    await secret(h, 'MANUAL_FIRST', 10 * DAY);
    await rot.service.setPolicy(h.ctx, 'MANUAL_FIRST', ENV, { rotator: 'flaky', expiryLeadMs: 7 * DAY });
    h.clock.advance(3 * DAY + 1);
    assert.equal((await rot.service.rotate(h.ctx, 'MANUAL_FIRST', ENV)).state, 'rolled_back');
    broken = false;
    assert.equal((await rot.scheduler.tick()).started, 1, 'the expiry rotation still runs');
    assert.deepEqual((await history(rot, h, 'MANUAL_FIRST')).map((r) => [r.trigger, r.state]), [['expiry', 'succeeded'], ['manual', 'rolled_back']]);
  });

  test('a retry is neither lost nor repeated when the leader changes: the new leader runs it once', async (t) => {
    const { h, node } = await setup(t);
    let broken = true;
    const flaky = scriptedRotator('flaky', { test: async () => ({ ok: !broken, detail: 'login refused' }) });
    const a = node({ rotators: [flaky] });
    const b = node({ rotators: [flaky] });
    await secret(h, 'SCHEDULED');
    await a.service.setPolicy(h.ctx, 'SCHEDULED', ENV, { rotator: 'flaky', intervalMs: DAY });
    h.clock.advance(DAY);
    assert.equal((await a.scheduler.tick()).started, 1);
    assert.equal((await b.scheduler.tick()).leader, false, 'a leads');
    await a.scheduler.stop();
    broken = false;
    h.clock.advance(retryDelay(1));
    const [ra, rb] = await Promise.all([b.scheduler.tick(), a.scheduler.tick()]);
    assert.equal(ra.retried + rb.retried, 1, 'exactly one node tried it again');
    assert.deepEqual((await history(b, h, 'SCHEDULED')).map((r) => [r.trigger, r.state]), [['schedule', 'succeeded'], ['schedule', 'rolled_back']]);
    h.clock.advance(retryDelay(5));
    await Promise.all([b.scheduler.tick(), a.scheduler.tick()]);
    assert.equal((await history(b, h, 'SCHEDULED')).length, 2, 'nothing left to retry');
  });

  test('a node that dies between claiming a run and starting it leaves the run to be tried again, not lost', async (t) => {
    const { h, node } = await setup(t);
    const rot = node();
    await secret(h, 'CLAIMED');
    await rot.service.setPolicy(h.ctx, 'CLAIMED', ENV, { rotator: 'random', intervalMs: DAY });
    h.clock.advance(DAY);
    // What a dying scheduler leaves: the run claimed (the next one moved on), no rotation started.
    const p = await h.storage.db.selectFrom('rotation_policies').selectAll().where('secret_name', '=', 'CLAIMED').executeTakeFirstOrThrow();
    const { createRotationRepository } = await import('./repository.ts');
    assert.ok(await createRotationRepository(h.storage.db).claimRun(p.id, p.next_run_at!, p.next_run_at! + DAY, h.clock.now(), { trigger: 'schedule', until: h.clock.now() + 30_000 }));
    assert.equal((await rot.scheduler.tick()).started, 0, 'not due again yet');
    h.clock.advance(30_000);
    assert.equal((await rot.scheduler.tick()).retried, 1);
    assert.deepEqual((await history(rot, h, 'CLAIMED')).map((r) => [r.trigger, r.state]), [['schedule', 'succeeded']]);
    assert.equal((await statusOf(rot, h, 'CLAIMED')).retry, null);
  });

  test('two leaders overlapping (the first one\'s lease ran out mid-pass) never rotate one expiring secret twice', async (t) => {
    const { h, node } = await setup(t);
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inApply = new Promise<void>((r) => (entered = r));
    const slow = scriptedRotator('slow', { apply: async (rc) => { if (rc.secretName === 'FIRST') { entered(); await gate; } } });
    const a = node({ rotators: [slow] });
    const b = node({ rotators: [slow] });
    for (const name of ['FIRST', 'SECOND']) {
      await secret(h, name, 10 * DAY);
      await a.service.setPolicy(h.ctx, name, ENV, { rotator: 'slow', expiryLeadMs: 7 * DAY });
    }
    h.clock.advance(3 * DAY + 1);
    const first = a.scheduler.tick();
    await inApply;
    // a's pass runs SECOND beside the stuck FIRST; once it is done, the clock jump stands for a stalling on FIRST alone.
    while ((await a.service.history(h.ctx, 'SECOND', ENV))[0]?.state !== 'succeeded') await new Promise((r) => setTimeout(r, 5));
    // a is stuck in FIRST's apply past its leadership lease (and FIRST's rotation lease): on SQLite b takes the
    // lead and does a pass of its own while a's goes on; on PostgreSQL a's advisory lock keeps b out.
    h.clock.advance(31_000);
    const rb = await b.scheduler.tick().finally(release);
    await first;
    assert.equal(rb.leader, dialect === 'sqlite');
    assert.equal((await a.service.history(h.ctx, 'FIRST', ENV)).length, 1, 'FIRST: one rotation (taken over by b on SQLite)');
    assert.deepEqual((await a.service.history(h.ctx, 'SECOND', ENV)).map((r) => [r.trigger, r.state]), [['expiry', 'succeeded']], 'SECOND: rotated once');
  });
});
