import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { fakeDependents, recordingNotifier, rotationFor, scriptedRotator } from '../../../test/helpers/rotation.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const ENV = 'staging';

describeEachDialect('rotation: the staged protocol', (dialect) => {
  let h: Harness;
  let n = 0;
  /** A fresh secret with a value in staging, so tests never share state. */
  async function secret(value = 'initial-value-000') {
    const name = `ROT_${++n}`;
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    await h.services.values.write(h.ctx, name, ENV, { value });
    return name;
  }
  const labels = async (name: string) => {
    const d = await h.services.secrets.describe(h.ctx, name);
    const s = d.environments.find((e) => e.environment === ENV)!;
    return { current: s.currentVersion, pending: s.pendingVersion, previous: s.previousVersion };
  };
  /**
   * A secret whose rotation stopped in verify, its pending version staged, on a node that then "died": its connector
   * check does not answer until the test is over. Its lease is an hour: the dead node's heartbeats are real timers (every
   * third of its lease), so none fires during a test, as none would from a dead process; one landing after the clock moved
   * would renew the lease. Its step deadline (a minute) is real time too: `wakeTheDead` ends the check first.
   */
  const theDead: Array<{ name: string; wake: () => void; rotation: Promise<unknown> }> = [];
  async function diesInVerify(): Promise<string> {
    const name = await secret('stays-current');
    let wake!: () => void;
    const asleep = new Promise<{ ok: boolean; detail: string }>((r) => (wake = () => r({ ok: true, detail: 'woke up late' })));
    const hang = fakeDependents({ connectors: { db: { password: name } }, check: () => asleep });
    const dead = rotationFor(h, { dependents: hang, leaseMs: 3_600_000 });
    await dead.service.setPolicy(h.ctx, name, ENV, { rotator: 'random' });
    const rotation = dead.service.rotate(h.ctx, name, ENV).catch((e: unknown) => e);
    theDead.push({ name, wake, rotation });
    while (hang.calls.length === 0) await new Promise((r) => setTimeout(r, 5));
    return name;
  }
  /** A node that comes back after another took its rotation over (a long GC pause, a partition) must change nothing. */
  async function wakeTheDead(): Promise<void> {
    for (const dead of theDead.splice(0)) {
      const before = await labels(dead.name);
      dead.wake();
      await dead.rotation;
      assert.deepEqual(await labels(dead.name), before, `the woken node left ${dead.name} as the survivor did`);
    }
  }
  const actions = async (name: string) => (await h.storage.db.selectFrom('audit_events').select('action').where('resource_name', '=', name)
    .where('action', 'like', 'rotation.%').orderBy('seq').execute()).map((e) => e.action);

  before(async () => {
    h = await createHarness(dialect);
  });
  after(async () => {
    await wakeTheDead();
    await h.close();
  });

  test('a random rotation promotes a new value: the old one becomes previous, every step is audited, owners are told', async () => {
    const name = await secret();
    const notifier = recordingNotifier();
    const deps = fakeDependents({ connectors: { billing: { token: name }, other: { token: 'UNRELATED' } } });
    const rot = rotationFor(h, { dependents: deps, notifier });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 40 }, notify: [{ kind: 'email', id: 'ops@example.com' }] });
    const r = await rot.service.rotate(h.ctx, name, ENV);
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    assert.deepEqual(await labels(name), { current: 2, pending: null, previous: 1 });
    const now = await h.services.values.read(h.ctx, name, ENV);
    assert.equal(now.value.length, 40);
    assert.notEqual(now.value, 'initial-value-000');
    assert.deepEqual(deps.calls.map((c) => c.connector), ['billing'], 'only the connector using this secret is checked');
    assert.deepEqual(deps.calls[0]!.overrides, { token: now.value }, 'the check ran with the pending value in its slot');
    assert.deepEqual(await actions(name), ['rotation.policy.set', 'rotation.started', 'rotation.step', 'rotation.step', 'rotation.step', 'rotation.step', 'rotation.step', 'rotation.succeeded']);
    await new Promise((r) => setImmediate(r));
    assert.equal(notifier.sent.at(-1)?.type, 'rotation.succeeded');
    assert.ok(!JSON.stringify(notifier.sent).includes(now.value), 'no value in a notification');
  });

  test('one dependent connector failing its health check rolls the whole rotation back and names it', async () => {
    const name = await secret('before-the-rotation');
    const notifier = recordingNotifier();
    const deps = fakeDependents({
      connectors: { a: { key: name }, b: { key: name }, c: { key: name } },
      check: (connector) => ({ ok: connector !== 'b', detail: connector === 'b' ? 'HTTP 401 from the API' : 'ok' }),
    });
    const rot = rotationFor(h, { dependents: deps, notifier });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', notify: [{ kind: 'email', id: 'ops@example.com' }] });
    const r = await rot.service.rotate(h.ctx, name, ENV);
    assert.equal(r.state, 'rolled_back');
    assert.equal(r.error?.step, 'verify');
    assert.equal(r.error?.code, 'CONNECTOR_CHECK_FAILED');
    assert.deepEqual(r.failedConnectors.map((c) => c.connector), ['b']);
    assert.deepEqual(await labels(name), { current: 1, pending: null, previous: null }, 'current untouched, pending gone');
    assert.equal((await h.services.values.read(h.ctx, name, ENV)).value, 'before-the-rotation');
    const staged = await h.storage.db.selectFrom('secret_versions').select(['destroyed_at', 'ciphertext']).where('version', '=', 2)
      .where('secret_id', '=', (await h.services.secrets.load(h.ctx, name)).id).executeTakeFirstOrThrow();
    assert.ok(staged.destroyed_at !== null && staged.ciphertext === null, 'the discarded pending value is crypto-shredded');
    await new Promise((r) => setImmediate(r));
    const told = notifier.sent.at(-1)!;
    assert.equal(told.type, 'rotation.rolled-back');
    assert.match(told.body, /verify/);
    assert.match(told.body, /Connector b/);
    assert.deepEqual((await actions(name)).slice(-2), ['rotation.failed', 'rotation.rolled_back']);
  });

  test('a rotator whose test step fails leaves current untouched and restores the source', async () => {
    const name = await secret();
    const flaky = scriptedRotator('flaky', { test: async () => ({ ok: false, detail: 'login refused' }) });
    const rot = rotationFor(h, { rotators: [flaky] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'flaky' });
    const r = await rot.service.rotate(h.ctx, name, ENV);
    assert.equal(r.state, 'rolled_back');
    assert.deepEqual(r.error, { code: 'TEST_FAILED', step: 'test', detail: 'login refused' });
    assert.equal(flaky.applied.length, 1);
    assert.deepEqual(flaky.restored, flaky.applied, 'restore was given the value that had been applied');
    assert.deepEqual(await labels(name), { current: 1, pending: null, previous: null });
  });

  test('a second rotation of the same secret and environment while one runs is refused with ROTATION_IN_PROGRESS', async () => {
    const name = await secret();
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    let entered!: () => void;
    const inApply = new Promise<void>((r) => (entered = r));
    const slow = scriptedRotator('slow', { apply: async () => { entered(); await gate; } });
    const rot = rotationFor(h, { rotators: [slow] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'slow' });
    const first = rot.service.rotate(h.ctx, name, ENV);
    await inApply;
    assert.equal(await codeOf(rot.service.rotate(h.ctx, name, ENV)), 'ROTATION_IN_PROGRESS');
    assert.equal(await codeOf(rotationFor(h, { rotators: [slow] }).service.rotate(h.ctx, name, ENV)), 'ROTATION_IN_PROGRESS', 'another node is refused too');
    assert.equal(await codeOf(h.services.values.rollback(h.ctx, name, ENV)), 'NO_PREVIOUS_VERSION');
    release();
    assert.equal((await first).state, 'succeeded');
  });

  test('a write landing during a rotation wins: the promote matches nothing and the rotation rolls back', async () => {
    const name = await secret();
    const racing = scriptedRotator('racing', { apply: async () => void (await h.services.values.write(h.ctx, name, ENV, { value: 'written-meanwhile' })) });
    const rot = rotationFor(h, { rotators: [racing] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'racing' });
    const r = await rot.service.rotate(h.ctx, name, ENV);
    assert.equal(r.state, 'rolled_back');
    assert.equal(r.error?.code, 'CURRENT_CHANGED');
    assert.equal((await h.services.values.read(h.ctx, name, ENV)).value, 'written-meanwhile');
    assert.equal((await labels(name)).pending, null);
  });

  test('a crash after staging (the node stops in verify) is rolled back by another node once the lease expires', async () => {
    const name = await diesInVerify();
    assert.equal((await labels(name)).pending, 2, 'the pending version is staged');
    const survivor = rotationFor(h, { leaseMs: 5000 });
    assert.equal(await survivor.engine.recover(), 0, 'a live lease is not taken over');
    h.clock.advance(3_600_000 + 60_000);
    assert.equal(await survivor.engine.recover(), 1);
    const [last] = await survivor.service.history(h.ctx, name, ENV);
    assert.equal(last!.state, 'rolled_back');
    assert.equal(last!.error?.code, 'INTERRUPTED');
    assert.equal(last!.error?.step, 'verify');
    assert.deepEqual(await labels(name), { current: 1, pending: null, previous: null });
    assert.equal((await survivor.service.rotate(h.ctx, name, ENV)).state, 'succeeded', 'the next rotation runs normally');
    await wakeTheDead();
  });

  test('an orphaned rotation is taken over by one node only, and only once its lease has run out', async () => {
    const name = await diesInVerify();
    const [a, b] = [rotationFor(h, { leaseMs: 5000 }), rotationFor(h, { leaseMs: 5000 })];
    h.clock.advance(3_600_000 - 1_000);
    assert.deepEqual([await a.engine.recover(), await b.engine.recover()], [0, 0], 'a lease is honoured to its end');
    h.clock.advance(1_001);
    const taken = await Promise.all([a.engine.recover(), b.engine.recover()]);
    assert.equal(taken[0]! + taken[1]!, 1, `one node takes it over, not both (${taken})`);
    const [last] = await a.service.history(h.ctx, name, ENV);
    assert.equal(last!.state, 'rolled_back');
    assert.deepEqual(await labels(name), { current: 1, pending: null, previous: null });
    await wakeTheDead();
  });

  test('a manual rotation waits for a person, reminds, shows overdue, and continues once the value is supplied', async () => {
    const name = await secret();
    const notifier = recordingNotifier();
    const rot = rotationFor(h, { notifier });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'manual', settings: { reminderMs: 3_600_000, overdueMs: 86_400_000 }, notify: [{ kind: 'email', id: 'a@example.com' }] });
    const waiting = await rot.service.rotate(h.ctx, name, ENV);
    assert.equal(waiting.state, 'awaiting_value');
    h.clock.advance(2 * 3_600_000);
    assert.equal((await rot.scheduler.tick()).reminded, 1);
    assert.equal((await rot.scheduler.tick()).reminded, 0, 'one reminder per interval');
    assert.equal((await rot.service.status(h.ctx)).find((s) => s.secret === name)!.overdue, false);
    h.clock.advance(86_400_000);
    await rot.scheduler.tick();
    assert.equal((await rot.service.status(h.ctx)).find((s) => s.secret === name)!.overdue, true);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(notifier.sent.map((x) => x.type), ['rotation.manual-due', 'rotation.manual-due', 'rotation.manual-overdue']);
    assert.equal(await codeOf(rot.service.supply(h.ctx, name, ENV, '')), 'VALIDATION_FAILED');
    const done = await rot.service.supply(h.ctx, name, ENV, 'typed-in-by-a-person');
    assert.equal(done.state, 'succeeded');
    assert.equal((await h.services.values.read(h.ctx, name, ENV)).value, 'typed-in-by-a-person');
    assert.equal(await codeOf(rot.service.supply(h.ctx, name, ENV, 'again-value')), 'ROTATION_NOT_AWAITING_VALUE');
    await rot.scheduler.stop();
  });

  test('two people supplying a value to one waiting rotation at once: one value is used, the other is refused', async () => {
    const name = await secret();
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'manual' });
    assert.equal((await rot.service.rotate(h.ctx, name, ENV)).state, 'awaiting_value');
    const versionsBefore = (await h.services.secrets.describe(h.ctx, name)).environments.find((e) => e.environment === ENV)!.currentVersion!;
    const outcomes = await Promise.all(['first-person-value', 'second-person-value'].map((v) => codeOf(rot.service.supply(h.ctx, name, ENV, v))));
    assert.deepEqual([...outcomes].sort(), ['ROTATION_NOT_AWAITING_VALUE', 'ok']);
    const winner = outcomes[0] === 'ok' ? 'first-person-value' : 'second-person-value';
    assert.equal((await h.services.values.read(h.ctx, name, ENV)).value, winner);
    assert.deepEqual(await labels(name), { current: versionsBefore + 1, pending: null, previous: versionsBefore }, 'one rotation, one new version');
    await rot.scheduler.stop();
  });

  test('rollback to previous works within the policy window and not after it', async () => {
    const name = await secret('the-old-one');
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', rollbackWindowMs: 3_600_000 });
    await rot.service.rotate(h.ctx, name, ENV);
    const back = await rot.service.rollback(h.ctx, name, ENV);
    assert.equal(back.version, 1);
    assert.equal((await h.services.values.read(h.ctx, name, ENV)).value, 'the-old-one');
    await rot.service.rotate(h.ctx, name, ENV);
    h.clock.advance(3_600_001);
    assert.equal(await codeOf(rot.service.rollback(h.ctx, name, ENV)), 'NO_PREVIOUS_VERSION');
  });

  test('a rehearsal runs the protocol and writes no version anywhere', async () => {
    const name = await secret();
    const deps = fakeDependents({ connectors: { api: { key: name } } });
    const rot = rotationFor(h, { dependents: deps });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random' });
    const before = await h.storage.db.selectFrom('secret_versions').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    const r = await rot.service.rotate(h.ctx, name, ENV, { rehearse: true });
    assert.equal(r.state, 'succeeded');
    assert.equal(r.rehearsal, true);
    assert.deepEqual(r.checks.map((c) => c.connector), ['api']);
    const afterCount = await h.storage.db.selectFrom('secret_versions').select((eb) => eb.fn.countAll<number>().as('n')).executeTakeFirstOrThrow();
    assert.equal(Number(afterCount.n), Number(before.n));
    assert.equal(deps.calls[0]!.overrides.key, 'initial-value-000', 'dependents are checked with the value they use now');
  });

  test('a rehearsal never retires the old value at the source: finalize runs only for a live rotation', async () => {
    const name = await secret();
    const finalized: boolean[] = [];
    const src = scriptedRotator(`finalizing-${n}`, { finalize: async (rc) => { finalized.push(rc.rehearsal); } });
    const rot = rotationFor(h, { rotators: [src] });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: src.type });
    assert.equal((await rot.service.rotate(h.ctx, name, ENV, { rehearse: true })).state, 'succeeded');
    assert.deepEqual(finalized, [], 'the rehearsal finalized nothing');
    assert.equal((await rot.service.rotate(h.ctx, name, ENV)).state, 'succeeded');
    assert.deepEqual(finalized, [false], 'the live rotation did');
  });

  test('the scheduler runs a due rotation exactly once across two nodes, and catch-up decides about missed runs', async () => {
    const name = await secret();
    const a = rotationFor(h);
    const b = rotationFor(h);
    await a.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', intervalMs: 3_600_000, catchUp: 'skip' });
    h.clock.advance(3_600_000);
    const [ra, rb] = await Promise.all([a.scheduler.tick(), b.scheduler.tick()]);
    assert.equal(ra.started + rb.started, 1, 'exactly one node ran it');
    assert.equal((await labels(name)).current, 2);
    // Down for three periods: `skip` waits for the next slot.
    h.clock.advance(3 * 3_600_000 + 1000);
    // The lease of the first leader has expired by now too, so either node may lead.
    await Promise.all([a.scheduler.tick(), b.scheduler.tick()]);
    assert.equal((await labels(name)).current, 2, 'a missed run is skipped');
    const policy = await a.service.getPolicy(h.ctx, name, ENV);
    assert.equal(policy.lastResult, 'skipped');
    assert.ok(Date.parse(policy.nextRunAt!) > h.clock.now());
    await a.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', intervalMs: 3_600_000, catchUp: 'once', revision: policy.revision });
    h.clock.advance(5 * 3_600_000);
    await a.scheduler.tick();
    await b.scheduler.tick();
    assert.equal((await labels(name)).current, 3, '`once` runs one missed rotation, not five');
    await a.scheduler.stop();
    await b.scheduler.stop();
  });

  test('a changed policy and an approaching expiry are triggers', async () => {
    const name = await secret();
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 20 } });
    await rot.scheduler.tick();
    assert.equal((await labels(name)).current, 1, 'a new policy without a schedule does not rotate');
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 24 } });
    await rot.scheduler.tick();
    assert.equal((await labels(name)).current, 2);
    assert.equal((await rot.service.history(h.ctx, name, ENV))[0]!.trigger, 'policy-change');

    await h.services.secrets.update(h.ctx, name, { expiresAt: new Date(h.clock.now() + 10 * 86_400_000).toISOString() });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 24 }, expiryLeadMs: 7 * 86_400_000 });
    await rot.scheduler.tick();
    assert.equal((await labels(name)).current, 2, 'not yet within the lead time');
    h.clock.advance(3 * 86_400_000 + 1);
    await rot.scheduler.tick();
    await rot.scheduler.tick();
    assert.equal((await labels(name)).current, 3, 'rotated once, before expiry');
    assert.equal((await rot.service.history(h.ctx, name, ENV))[0]!.trigger, 'expiry');
    await rot.scheduler.stop();
  });

  test('editing only who is notified neither drops a pending policy-change run nor postpones the scheduled one', async (t) => {
    const name = await secret();
    const rot = rotationFor(h);
    const notify = [{ kind: 'email' as const, id: 'ops@example.com' }];
    // Stopped whatever happens: a leader's pinned connection would keep the pool (and the suite) open.
    t.after(() => rot.scheduler.stop());
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 20 }, intervalMs: 86_400_000 });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 24 }, intervalMs: 86_400_000 });
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 24 }, intervalMs: 86_400_000, notify });
    await rot.scheduler.tick();
    assert.equal((await labels(name)).current, 2, 'the changed settings still trigger a rotation');
    assert.equal((await rot.service.history(h.ctx, name, ENV))[0]!.trigger, 'policy-change');

    const due = (await rot.service.getPolicy(h.ctx, name, ENV)).nextRunAt;
    h.clock.advance(20 * 3_600_000);
    const edited = await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 24 }, intervalMs: 86_400_000, notify: [] });
    assert.equal(edited.nextRunAt, due, 'the schedule did not change, so neither does its next run');
    h.clock.advance(4 * 3_600_000);
    await rot.scheduler.tick();
    assert.equal((await labels(name)).current, 3, 'rotated on schedule');
  });

  test('bad policies are refused with a stable code and nothing is written', async () => {
    const name = await secret();
    const rot = rotationFor(h);
    assert.equal(await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'nope' })), 'ROTATOR_UNAVAILABLE');
    assert.equal(await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length: 3 } })), 'ROTATOR_UNAVAILABLE');
    assert.equal(await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { evil: true } })), 'ROTATOR_UNAVAILABLE');
    assert.equal(await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', cron: 'not a cron' })), 'VALIDATION_FAILED');
    assert.equal(await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'http', settings: { url: 'http://example.com/rotate' } })), 'ROTATOR_UNAVAILABLE');
    for (const url of ['https://169.254.169.254/latest', 'https://metadata.google.internal/x', 'https://[fd00:ec2::254]/', 'https://[::ffff:169.254.169.254]/']) {
      assert.equal(await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'http', settings: { url } })), 'ROTATOR_UNAVAILABLE', url);
    }
    // The mail goes to every address of the list at once: one the relay cannot take would stop it for all of them.
    for (const id of ['ops team', 'Ops <ops@example.com>', 'ops@example.com, evil@example.com', 'ops', 'ops@example.com\r\nBcc: evil@example.com']) {
      const notify = [{ kind: 'email' as const, id: 'ops@example.com' }, { kind: 'email' as const, id }];
      assert.equal(await codeOf(rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', notify })), 'VALIDATION_FAILED', id);
    }
    assert.equal(await codeOf(rot.service.getPolicy(h.ctx, name, ENV)), 'ROTATION_POLICY_NOT_FOUND');
    assert.equal(await codeOf(rot.service.rotate(h.ctx, name, ENV)), 'ROTATION_POLICY_NOT_FOUND');
  });

  test('policy changes racing from the same revision are each applied on top of the last: none is lost, each event names its own revision', async () => {
    const name = await secret();
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random' });
    const results = await Promise.all([16, 20, 24, 28].map((length) => rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random', settings: { length } })));
    const revisions = results.map((p) => p.revision).sort();
    assert.deepEqual(revisions, [2, 3, 4, 5], 'four changes, four revisions');
    const last = results.find((p) => p.revision === 5)!;
    assert.deepEqual((await rot.service.getPolicy(h.ctx, name, ENV)).settings, last.settings, 'what is stored is what the last change answered');
    const events = await h.storage.db.selectFrom('audit_events').select('context').where('resource_name', '=', name).where('action', '=', 'rotation.policy.set').execute();
    assert.deepEqual(events.map((e) => (JSON.parse(e.context) as { revision: string }).revision).sort(), ['1', '2', '3', '4', '5']);
  });

  test('another tenant sees no policy or rotation, and a builder may not rotate', async () => {
    const name = await secret();
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random' });
    const r = await rot.service.rotate(h.ctx, name, ENV);
    const other = await h.services.tenants.create('rot-other');
    const octx = h.contextFor(other.id);
    assert.equal(await codeOf(rot.service.getPolicy(octx, name, ENV)), 'SECRET_NOT_FOUND');
    assert.equal(await codeOf(rot.service.get(octx, r.id)), 'ROTATION_NOT_FOUND');
    assert.deepEqual(await rot.service.status(octx), []);
    const bea = await userContext(h, h.ctx.tenantId, `builder-${n}`);
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: bea.id, role: 'builder' });
    assert.equal(await codeOf(rot.service.rotate(bea.ctx(), name, ENV)), 'FORBIDDEN');
    const op = await userContext(h, h.ctx.tenantId, `operator-${n}`);
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: op.id, role: 'rotation-operator' });
    assert.equal((await rot.service.rotate(op.ctx(), name, ENV)).state, 'succeeded');
  });

  test('a builder, who may list but not rotate, can neither change a policy nor roll back, supply or cancel: each is FORBIDDEN and nothing moves, at the source either', async () => {
    const rolled = await secret();
    const waiting = await secret();
    const source = scriptedRotator(`recorded-${n}`, {});
    const rot = rotationFor(h, { rotators: [source] });
    await rot.service.setPolicy(h.ctx, rolled, ENV, { rotator: source.type });
    await rot.service.rotate(h.ctx, rolled, ENV);
    const applied = source.applied.length;
    await rot.service.setPolicy(h.ctx, waiting, ENV, { rotator: 'manual' });
    assert.equal((await rot.service.rotate(h.ctx, waiting, ENV)).state, 'awaiting_value');
    const bea = await userContext(h, h.ctx.tenantId, `lister-${n}`);
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: bea.id, role: 'builder' });
    const before = { rolled: await labels(rolled), policy: await rot.service.getPolicy(h.ctx, rolled, ENV) };
    assert.equal(await codeOf(rot.service.setPolicy(bea.ctx(), rolled, ENV, { rotator: 'manual' })), 'FORBIDDEN');
    assert.equal(await codeOf(rot.service.deletePolicy(bea.ctx(), rolled, ENV)), 'FORBIDDEN');
    assert.equal(await codeOf(rot.service.rollback(bea.ctx(), rolled, ENV)), 'FORBIDDEN');
    assert.equal(source.applied.length, applied, 'the refused rollback set nothing at the source');
    assert.equal(await codeOf(rot.service.supply(bea.ctx(), waiting, ENV, 'a-value-from-a-builder')), 'FORBIDDEN');
    assert.equal(await codeOf(rot.service.cancel(bea.ctx(), waiting, ENV)), 'FORBIDDEN');
    assert.deepEqual({ rolled: await labels(rolled), policy: await rot.service.getPolicy(h.ctx, rolled, ENV) }, before);
    const states = await h.storage.db.selectFrom('rotations').select('state').where('secret_name', '=', waiting).execute();
    assert.deepEqual(states.map((r) => r.state), ['awaiting_value'], 'still waiting for a person who may rotate');
    await rot.scheduler.stop();
  });
});
