import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { rotationFor } from '../../../test/helpers/rotation.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const ENV = 'staging';

/**
 * Looking at rotations needs `list` of the secret in the policy's environment, like its versions do:
 * a policy's settings name hosts, accounts and other secrets, and its history says when a value
 * changed. Each way in is pinned: by name, by rotation id, and the tenant-wide status.
 */
describeEachDialect('rotation: who may see a policy and its rotations', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  async function rotatedSecret(name: string) {
    await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    await h.services.values.write(h.ctx, name, ENV, { value: 'initial-value-000' });
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, name, ENV, { rotator: 'random' });
    const rotation = await rot.service.rotate(h.ctx, name, ENV);
    return { rot, rotation };
  }

  test('a member whose grant is narrowed to another environment sees no policy, history, rotation or status of this one', async () => {
    const { rot, rotation } = await rotatedSecret('VISIBILITY_NARROWED');
    const member = await userContext(h, h.ctx.tenantId, 'production-builder');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: member.id, role: 'builder', environments: ['production'] });
    const ctx = member.ctx();
    assert.equal(await codeOf(rot.service.getPolicy(ctx, 'VISIBILITY_NARROWED', ENV)), 'SECRET_NOT_FOUND', 'policy');
    assert.equal(await codeOf(rot.service.history(ctx, 'VISIBILITY_NARROWED', ENV)), 'SECRET_NOT_FOUND', 'history');
    assert.equal(await codeOf(rot.service.get(ctx, rotation.id)), 'SECRET_NOT_FOUND', 'rotation by id');
    assert.deepEqual((await rot.service.status(ctx)).map((p) => p.secret), [], 'status');
    // The tenant's admin sees all of it: the refusals above are the member's grant, not a broken setup.
    assert.equal((await rot.service.get(h.ctx, rotation.id)).id, rotation.id);
    assert.ok((await rot.service.status(h.ctx)).some((p) => p.secret === 'VISIBILITY_NARROWED'));
    await rot.scheduler.stop();
  });

  test("another tenant holding a secret of the same name sees only its own policies in status, never this tenant's", async () => {
    const { rot } = await rotatedSecret('VISIBILITY_SHARED_NAME');
    const other = h.contextFor((await h.services.tenants.create('visibility-other')).id);
    await h.services.secrets.create(other, { name: 'VISIBILITY_SHARED_NAME', owner: 'ops' });
    assert.deepEqual(await rot.service.status(other), [], 'no policy of its own yet, and none of the other tenant');
    assert.equal(await codeOf(rot.service.getPolicy(other, 'VISIBILITY_SHARED_NAME', ENV)), 'ROTATION_POLICY_NOT_FOUND');
    assert.deepEqual(await rot.service.history(other, 'VISIBILITY_SHARED_NAME', ENV), []);
    await rot.scheduler.stop();
  });
});
