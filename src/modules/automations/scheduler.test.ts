import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { createAutomationScheduler, type AutomationScheduler } from './scheduler.ts';
import type { AutomationDefinition } from './types.ts';

const nightly = (name: string, cron = '0 3 * * *'): AutomationDefinition => ({
  name, runAs: 'nightly-runner', environments: ['staging'], trigger: { type: 'schedule', cron, environment: 'staging' },
  steps: [{ id: 'ping', type: 'http', connector: '{{ connectors.ops }}', method: 'GET', path: '/ping' }],
});

/**
 * Several nodes on one database each hold every schedule; each scheduled instant must start one
 * run, not one per node, and a schedule changed or removed on one node must stop firing on the others.
 */
describeEachDialect('automation schedules across nodes: each fire runs once', (dialect) => {
  let h: Harness;
  const runs: Array<{ node: string; name: string }> = [];
  const nodes: AutomationScheduler[] = [];
  const node = (id: string, isSealed = () => false) => {
    const s = createAutomationScheduler({
      db: h.storage.db, clock: h.clock, nodeId: id, onError: (err) => { throw err; }, isSealed,
      runner: { start: async (_ctx, name) => { runs.push({ node: id, name }); return {} as never; } },
    });
    nodes.push(s);
    return s;
  };
  const at = Date.UTC(2026, 5, 2, 3, 0, 0);

  before(async () => {
    h = await createHarness(dialect);
    await h.services.machines.create(h.ctx, { name: 'nightly-runner', kind: 'client_secret' });
    await h.services.secrets.create(h.ctx, { name: 'OPS_TOKEN', owner: 'ops' });
    await h.services.connectors.create(h.ctx, 'staging', { name: 'ops', type: 'http', owner: 'ops', settings: { baseUrl: 'http://127.0.0.1:9', auth: { kind: 'bearer' } }, slots: { token: 'OPS_TOKEN' } });
    await h.services.automations.create(h.ctx, nightly('nightly-report'));
  });
  after(async () => {
    for (const s of nodes) s.stop();
    await h.close();
  });

  test('a sealed node claims no fire (it could neither run nor record it); an unsealed node then runs it', async () => {
    const sealed = node('sealed', () => true);
    const open = node('open');
    await Promise.all([sealed.start(), open.start()]);
    const instant = Date.UTC(2026, 5, 9, 3, 0, 0);
    assert.equal(await sealed.fire(h.ctx.tenantId, 'nightly-report', instant), false);
    assert.equal(runs.filter((r) => r.node === 'sealed').length, 0);
    assert.equal(await open.fire(h.ctx.tenantId, 'nightly-report', instant), true);
    assert.equal(runs.filter((r) => r.node === 'open').length, 1);
    runs.length = 0;
  });

  test('three nodes firing the same instant start one run; the next instant, one more', async () => {
    const [a, b, c] = [node('a'), node('b'), node('c')];
    await Promise.all([a.start(), b.start(), c.start()]);
    assert.equal(a.nextRun(h.ctx.tenantId, 'nightly-report')?.getUTCHours(), 3);
    const started = await Promise.all([a, b, c].map((n) => n.fire(h.ctx.tenantId, 'nightly-report', at)));
    assert.equal(started.filter(Boolean).length, 1);
    assert.equal(runs.length, 1);
    await Promise.all([a, b, c].map((n) => n.fire(h.ctx.tenantId, 'nightly-report', at + 86_400_000)));
    assert.equal(runs.length, 2);
    assert.equal(await b.fire(h.ctx.tenantId, 'nightly-report', at), false, 'an instant already run is not run again');
  });

  test('a node whose timer fires late claims the instant the schedule named, not the moment it woke', async () => {
    const [prompt, late] = [node('prompt'), node('late')];
    await Promise.all([prompt.start(), late.start()]);
    const instant = Date.UTC(2026, 5, 20, 3, 0, 0);
    const before = runs.length;
    assert.equal(await prompt.fire(h.ctx.tenantId, 'nightly-report', instant + 4), true);
    // A busy event loop (or a paused VM) wakes the other node's job seconds after the instant.
    assert.equal(await late.fire(h.ctx.tenantId, 'nightly-report', instant + 1_500), false);
    assert.equal(await late.fire(h.ctx.tenantId, 'nightly-report', instant + 90_000), false);
    assert.equal(runs.length, before + 1, 'one run for the instant');
  });

  test('a schedule changed or removed on another node stops firing here, before any claim', async () => {
    const stale = node('stale');
    await stale.start();
    const before = runs.length;
    const current = await h.services.automations.get(h.ctx, 'nightly-report');
    await h.services.automations.update(h.ctx, 'nightly-report', nightly('nightly-report', '30 4 * * *'), current.revision);
    assert.equal(await stale.fire(h.ctx.tenantId, 'nightly-report', at + 2 * 86_400_000), false, 'the old schedule is gone');
    assert.equal(runs.length, before);
    assert.equal(stale.nextRun(h.ctx.tenantId, 'nightly-report')?.getUTCHours(), 4, 'it holds the new schedule now');
    assert.equal(await stale.fire(h.ctx.tenantId, 'nightly-report', Date.UTC(2026, 5, 4, 4, 30)), true);

    await h.services.automations.create(h.ctx, nightly('made-elsewhere'));
    assert.equal(stale.nextRun(h.ctx.tenantId, 'made-elsewhere'), null, 'not heard of yet');
    await stale.resync();
    assert.ok(stale.nextRun(h.ctx.tenantId, 'made-elsewhere'), 'the resync loads it');
    await h.services.automations.remove(h.ctx, 'made-elsewhere');
    assert.equal(await stale.fire(h.ctx.tenantId, 'made-elsewhere', at), false);
    assert.equal(stale.nextRun(h.ctx.tenantId, 'made-elsewhere'), null);
  });

  test('a schedule moved to another environment on another node never fires here in the old one', async () => {
    const started: Array<{ name: string; environment: string }> = [];
    const stale = createAutomationScheduler({
      db: h.storage.db, clock: h.clock, nodeId: 'stale-env', onError: (err) => { throw err; }, isSealed: () => false,
      runner: { start: async (_ctx, name, opts) => { started.push({ name, environment: opts.environment }); return {} as never; } },
    });
    nodes.push(stale);
    await h.services.connectors.create(h.ctx, 'production', { name: 'ops', type: 'http', owner: 'ops', settings: { baseUrl: 'http://127.0.0.1:9', auth: { kind: 'bearer' } }, slots: { token: 'OPS_TOKEN' } });
    const both = (environment: string): AutomationDefinition => ({ ...nightly('moved'), environments: ['staging', 'production'], trigger: { type: 'schedule', cron: '0 3 * * *', environment } });
    await h.services.automations.create(h.ctx, both('production'));
    await stale.start();
    const current = await h.services.automations.get(h.ctx, 'moved');
    await h.services.automations.update(h.ctx, 'moved', both('staging'), current.revision);
    // Same cron, other environment: the job this node holds is stale and must not run the automation in production.
    assert.equal(await stale.fire(h.ctx.tenantId, 'moved', at + 5 * 86_400_000), false);
    assert.deepEqual(started, []);
    assert.equal(await stale.fire(h.ctx.tenantId, 'moved', at + 6 * 86_400_000), true);
    assert.deepEqual(started, [{ name: 'moved', environment: 'staging' }]);
  });

  test('claims older than a week are deleted at a resync', async () => {
    const count = async () => Number((await h.storage.db.selectFrom('automation_fires').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    assert.ok((await count()) >= 3);
    h.clock.advance(8 * 86_400_000);
    await nodes[0]!.resync();
    assert.equal(await count(), 0);
  });
});
