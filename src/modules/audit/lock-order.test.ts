import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { PASSWORD } from '../../../test/helpers/users.ts';

/**
 * Writes that lock the tenant row (a KEK rotation updates it, a secret write reads it FOR SHARE)
 * take it before the audit head; changes of who may do what take it to move the authz generation.
 * Taken in the other order by one of them, PostgreSQL finds a deadlock and one request fails.
 */
describeEachDialect('audited writes of one tenant at once never deadlock', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'LOCK_ORDER', owner: 'ops' });
  });
  after(() => h.close());

  test('machine, user and grant changes beside KEK rotations and secret writes all succeed', async () => {
    const machine = await h.services.machines.create(h.ctx, { name: 'lock-order-base', kind: 'client_secret' });
    const work: Array<() => Promise<unknown>> = [];
    for (let i = 0; i < 12; i++) {
      work.push(() => h.services.machines.create(h.ctx, { name: `lock-order-${i}`, kind: 'client_secret' }));
      work.push(() => h.services.keys.rotate(h.ctx));
      work.push(() => h.services.values.write(h.ctx, 'LOCK_ORDER', 'production', { value: `lock-order-value-${i}` }));
      work.push(() => h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machine.id, role: 'builder' }));
      if (i % 4 === 0) work.push(() => h.services.users.create(h.ctx, { username: `lock-order-${i}`, password: PASSWORD }));
    }
    const results = await Promise.allSettled(work.map((w) => w()));
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message)] : []));
    assert.deepEqual(failures, []);
  });
});
