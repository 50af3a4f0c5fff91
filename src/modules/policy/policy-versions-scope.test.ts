import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';


/** Policy versions are numbered per tenant: a version number names the caller's tenant's version only. */
describeEachDialect('policy versions of another tenant', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('do not exist for a tenant that has none of its own, to read, diff or roll back to', async () => {
    const other = h.contextFor((await h.services.tenants.create('policies-elsewhere')).id);
    const text = '@id("elsewhere-only")\npermit (principal, action == Keyhold::Action::"list", resource) when { context.roles.contains("viewer") };';
    assert.equal((await h.services.policies.put(other, { text })).version, 1);
    assert.equal(await codeOf(h.services.policies.get(h.ctx, 1)), 'POLICY_VERSION_NOT_FOUND');
    assert.equal(await codeOf(h.services.policies.diff(h.ctx, 0, 1)), 'POLICY_VERSION_NOT_FOUND');
    assert.equal(await codeOf(h.services.policies.rollback(h.ctx, 1)), 'POLICY_VERSION_NOT_FOUND');
    assert.equal((await h.services.policies.current(h.ctx)).version, 0, 'nothing of the other tenant was applied here');
  });
});
