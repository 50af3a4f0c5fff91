import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { startFakePaymentApi, type FakePaymentApi } from '../fixtures/fake-payment-api.ts';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createHarness, type Harness } from '../helpers/harness.ts';
import { fakeDependents, rotationFor } from '../helpers/rotation.ts';

const ROTATIONS = 100;

/**
 * Issue 6: an automation runs continuously (real runner, real proxy, a real HTTP destination) while
 * its key is rotated 100 times, far faster than any real schedule (tens of ms apart). The provider
 * accepts a key once the rotation has set it at the source (here: the dependent check) and keeps
 * accepting superseded keys for a 2 s overlap, as providers do (AWS's alternating users keep the old
 * one for an interval): longer than a run takes, much shorter than the test. Target: zero failed runs.
 */
describeEachDialect('an automation during rotations', (dialect) => {
  let h: Harness;
  let api: FakePaymentApi;
  const accepted = new Set<string>(['sk_test_rot_initial_0000000']);
  before(async () => {
    h = await createHarness(dialect);
    api = await startFakePaymentApi({ token: 'unused', authorize: (req) => accepted.has((req.headers.authorization ?? '').replace(/^Bearer /, '')) });
    await h.services.secrets.create(h.ctx, { name: 'LIVE_KEY', owner: 'payments-team' });
    await h.services.values.write(h.ctx, 'LIVE_KEY', 'production', { value: 'sk_test_rot_initial_0000000' });
    const bot = await h.services.machines.create(h.ctx, { name: 'rot-runner', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: bot.id, role: 'builder', environments: ['production'] });
    await h.services.connectors.create(h.ctx, 'production', { name: 'payments', type: 'http', owner: 'payments-team', settings: { baseUrl: api.url, auth: { kind: 'bearer' } }, slots: { token: 'LIVE_KEY' } });
    await h.services.automations.create(h.ctx, {
      name: 'charge', runAs: 'rot-runner', environments: ['production'], trigger: { type: 'manual' },
      steps: [{ id: 'charge', type: 'http', connector: '{{ connectors.payments }}', method: 'POST', path: '/v1/charges', body: { amount: 1 } }],
    });
  });
  after(async () => {
    await h.services.runner.drain();
    await api.close();
    await h.close();
  });

  test(`runs never fail during ${ROTATIONS} rotations`, async (t) => {
    const supersededAt = new Map<string, number>();
    let current = 'sk_test_rot_initial_0000000';
    const deps = fakeDependents({
      connectors: { payments: { token: 'LIVE_KEY' } },
      check: (_c, o) => (accepted.add(o.token!), { ok: true }),
    });
    const rot = rotationFor(h, { dependents: deps });
    await rot.service.setPolicy(h.ctx, 'LIVE_KEY', 'production', { rotator: 'random' });
    let stop = false;
    let runs = 0;
    const failures: string[] = [];
    const loop = async () => {
      while (!stop) {
        const r = await h.services.runner.start(h.ctx, 'charge', { environment: 'production', trigger: 'manual', wait: true });
        runs++;
        if (r.status !== 'succeeded') failures.push(r.error ?? 'failed');
      }
    };
    const running = loop();
    for (let i = 0; i < ROTATIONS; i++) {
      const r = await rot.service.rotate(h.ctx, 'LIVE_KEY', 'production');
      assert.equal(r.state, 'succeeded');
      const next = (await h.services.values.read(h.ctx, 'LIVE_KEY', 'production')).value;
      supersededAt.set(current, Date.now());
      current = next;
      // The provider retires keys past the overlap: a run still using one would fail.
      for (const [k, at] of supersededAt) if (Date.now() - at > 2_000) accepted.delete(k);
    }
    stop = true;
    await running;
    t.diagnostic(`${runs} runs during ${ROTATIONS} rotations, ${failures.length} failed`);
    assert.deepEqual(failures, []);
    assert.ok(runs >= 10, 'the automation really ran throughout');
  });
});
