import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { codeOf } from '../../../../test/helpers/rejects.ts';
import { PASSWORD } from '../../../../test/helpers/users.ts';

/** A machine identity's owner (who approves for it, who is told about it) is a person of its own tenant. */
describeEachDialect('the owner of a machine identity', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('cannot be a user of another tenant, though the id is real there', async () => {
    const other = h.contextFor((await h.services.tenants.create('owner-elsewhere')).id);
    const stranger = await h.services.users.create(other, { username: 'stranger', password: PASSWORD });
    const created = h.services.machines.create(h.ctx, { name: 'owned-from-afar', kind: 'client_secret', ownerUserId: stranger.id });
    assert.equal(await codeOf(created), 'USER_NOT_FOUND');
    const home = await h.services.users.create(h.ctx, { username: 'neighbour', password: PASSWORD });
    const owned = await h.services.machines.create(h.ctx, { name: 'owned-at-home', kind: 'client_secret', ownerUserId: home.id });
    assert.equal(owned.ownerUserId, home.id);
  });
});
