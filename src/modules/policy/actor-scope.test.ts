import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { machineContext } from '../../../test/helpers/identities.ts';
import type { TenantContext } from '../shared/context.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

/**
 * What narrows an actor beyond its grants (the environment a run's token is bound to, the tenant
 * it belongs to) holds on every path of the authorizer, the remembered allows included.
 */
describeEachDialect('the actor narrows what its grants allow', (dialect) => {
  let h: Harness;
  let seq = 0;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'SCOPED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'SCOPED', 'production', { value: 'actor-scope-value' });
  });
  after(() => h.close());

  const machineWith = async (role: 'builder' | 'tenant-admin') => (await machineContext(h, `scope-${++seq}`, { role })).ctx;

  test("an allow remembered for a machine's own token is not served to its run token bound to another environment", async () => {
    const ctx = await machineWith('builder');
    const read = (c: TenantContext) => codeOf(h.services.values.read(c, 'SCOPED', 'production'));
    assert.equal(await read(ctx()), 'ok');
    assert.equal(await read(ctx()), 'ok', 'now remembered for this machine, action, environment and address');
    assert.equal(await read(ctx({ actor: { boundEnvironment: 'staging' } })), 'FORBIDDEN');
  });

  test('a principal whose home tenant is not known is refused, whatever its grants in the tenant', async () => {
    const ctx = await machineWith('tenant-admin');
    assert.equal(await codeOf(h.services.authz.require(ctx(), 'admin', { type: 'tenant' })), 'ok');
    const { homeTenantId: _, ...homeless } = ctx().actor;
    assert.equal(await codeOf(h.services.authz.require({ ...ctx(), actor: homeless }, 'admin', { type: 'tenant' })), 'FORBIDDEN');
  });
});
