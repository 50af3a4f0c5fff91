import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import type { Harness } from '../../../test/helpers/harness.ts';
import { rotatedOf, rotationFor, schedulerHarness } from '../../../test/helpers/rotation.ts';
import type { TenantContext } from '../shared/context.ts';
import { createRotationRepository } from './repository.ts';

const ENV = 'staging';
const DAY = 86_400_000;

describeEachDialect('rotation scheduler: the expiry pass is bounded like the others', (dialect) => {
  /** A secret expiring `minutes` after ten days, with a policy rotating it seven days before. */
  async function expiring(h: Harness, rot: ReturnType<typeof rotationFor>, ctx: TenantContext, name: string, minutes: number) {
    await h.services.secrets.create(ctx, { name, owner: 'ops', expiresAt: new Date(h.clock.now() + 10 * DAY + minutes * 60_000).toISOString() });
    await h.services.values.write(ctx, name, ENV, { value: 'initial-value-000' });
    await rot.service.setPolicy(ctx, name, ENV, { rotator: 'random', expiryLeadMs: 7 * DAY });
  }
  const rotated = (rot: ReturnType<typeof rotationFor>, ctx: TenantContext, names: string[]) => rotatedOf(rot, ctx, ENV, names);

  test('a backlog of expiry rotations is worked through over passes, at most 10 of one tenant a pass, earliest first, behind no other tenant', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const rot = node();
    const names = Array.from({ length: 12 }, (_, i) => `EXPIRING_${String(i).padStart(2, '0')}`);
    // Created latest-first, so the order they come due in is not the order they were stored in.
    for (let i = names.length - 1; i >= 0; i--) await expiring(h, rot, h.ctx, names[i]!, i);
    const other = h.contextFor((await h.services.tenants.create('quiet-tenant')).id);
    await expiring(h, rot, other, 'QUIET', 60);
    h.clock.advance(3 * DAY + 2 * 3_600_000);

    assert.equal((await rot.scheduler.tick()).started, 11);
    assert.deepEqual(await rotated(rot, h.ctx, names), names.slice(0, 10), 'the ten that came due first');
    assert.deepEqual(await rotated(rot, other, ['QUIET']), ['QUIET'], 'the other tenant did not wait behind the backlog');
    assert.equal((await rot.scheduler.tick()).started, 2, 'the rest in the next pass');
    assert.deepEqual(await rotated(rot, h.ctx, names), names);
    assert.equal((await rot.scheduler.tick()).started, 0, 'each due point once');
    for (const n of names) assert.equal((await rot.service.history(h.ctx, n, ENV)).length, 1);
  });

  test('the query returns at most its limit, earliest due point first, and leaves out what was rotated or claimed since the due point', async (t) => {
    const { h, node } = await schedulerHarness(dialect, t);
    const rot = node();
    const names = ['E0', 'E1', 'E2', 'E3', 'E4'];
    for (let i = 0; i < names.length; i++) await expiring(h, rot, h.ctx, names[i]!, i);
    await expiring(h, rot, h.ctx, 'NOT_YET', 14 * DAY / 60_000);
    h.clock.advance(3 * DAY + 3_600_000);
    const repo = createRotationRepository(h.storage.db);
    const now = h.clock.now();
    assert.deepEqual((await repo.expiringPolicies(now, 3, 10)).map((p) => p.secret_name), ['E0', 'E1', 'E2']);
    assert.deepEqual((await repo.expiringPolicies(now, 50, 2)).map((p) => p.secret_name), ['E0', 'E1'], 'a tenant\'s share of a pass');
    await h.storage.db.updateTable('rotation_policies').set({ last_succeeded_at: now }).where('secret_name', '=', 'E0').execute();
    const [e1] = await repo.expiringPolicies(now, 1, 10);
    assert.equal(e1!.secret_name, 'E1');
    assert.ok(await repo.claimExpiry(e1!.id, null, e1!.due_at, now + 30_000, now));
    assert.deepEqual((await repo.expiringPolicies(now, 50, 10)).map((p) => p.secret_name), ['E2', 'E3', 'E4']);
  });
});
