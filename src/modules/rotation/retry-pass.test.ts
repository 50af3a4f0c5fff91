import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import type { Harness } from '../../../test/helpers/harness.ts';
import { rotatedOf, rotationFor, schedulerHarness } from '../../../test/helpers/rotation.ts';
import type { TenantContext } from '../shared/context.ts';
import { createRotationRepository } from './repository.ts';

const ENV = 'staging';
const DAY = 86_400_000;

describeEachDialect('rotation scheduler: the retry pass is bounded per tenant like the others', (dialect) => {
  /** A policy not due for a day whose failed run is to be tried again `agoMs` before now, as a failed run leaves it. */
  async function failing(h: Harness, rot: ReturnType<typeof rotationFor>, ctx: TenantContext, name: string, agoMs: number) {
    await h.services.secrets.create(ctx, { name, owner: 'ops' });
    await h.services.values.write(ctx, name, ENV, { value: 'initial-value-000' });
    await rot.service.setPolicy(ctx, name, ENV, { rotator: 'random', intervalMs: DAY });
    await h.storage.db.updateTable('rotation_policies').set({ retry_at: h.clock.now() - agoMs, retry_trigger: 'schedule', retry_attempts: 1 })
      .where('tenant_id', '=', ctx.tenantId).where('secret_name', '=', name).execute();
  }
  const retried = (rot: ReturnType<typeof rotationFor>, ctx: TenantContext, names: string[]) => rotatedOf(rot, ctx, ENV, names);

  test('a tenant with many failing rotations takes at most 10 retries of a pass, earliest first; another tenant\'s retry is not left for later passes', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const rot = node();
    const names = Array.from({ length: 12 }, (_, i) => `FAILING_${String(i).padStart(2, '0')}`);
    // Stored latest-due first, so the order they come due in is not the order they were stored in.
    for (let i = names.length - 1; i >= 0; i--) await failing(h, rot, h.ctx, names[i]!, 60_000 * (100 - i));
    const other = h.contextFor((await h.services.tenants.create('quiet-tenant')).id);
    await failing(h, rot, other, 'QUIET', 0);

    const first = await rot.scheduler.tick();
    assert.deepEqual([first.retried, first.started], [11, 11]);
    assert.deepEqual(await retried(rot, h.ctx, names), names.slice(0, 10), 'the ten that came due first');
    assert.deepEqual(await retried(rot, other, ['QUIET']), ['QUIET'], 'the other tenant\'s retry ran in the first pass');
    const second = await rot.scheduler.tick();
    assert.equal(second.retried, 2, 'the rest in the next pass');
    assert.deepEqual(await retried(rot, h.ctx, names), names);
    assert.equal((await rot.scheduler.tick()).retried, 0, 'succeeded: nothing left to retry');
    for (const n of names) assert.equal((await rot.service.history(h.ctx, n, ENV)).length, 1, `${n} retried once`);
  });

  test('the query returns at most its limit and at most `perTenant` of each tenant, earliest retry first', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const rot = node();
    const other = h.contextFor((await h.services.tenants.create('quiet-tenant')).id);
    for (let i = 0; i < 4; i++) await failing(h, rot, h.ctx, `A${i}`, 60_000 * (10 - i));
    await failing(h, rot, other, 'B0', 0);
    await failing(h, rot, other, 'NOT_YET', -60_000);
    const repo = createRotationRepository(h.storage.db);
    const now = h.clock.now();
    assert.deepEqual((await repo.retriesDue(now, 50, 10)).map((p) => p.secret_name), ['A0', 'A1', 'A2', 'A3', 'B0']);
    assert.deepEqual((await repo.retriesDue(now, 50, 2)).map((p) => p.secret_name), ['A0', 'A1', 'B0'], 'a tenant\'s share of a pass');
    assert.deepEqual((await repo.retriesDue(now, 2, 10)).map((p) => p.secret_name), ['A0', 'A1']);
  });
});
