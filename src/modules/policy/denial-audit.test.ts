import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';


describeEachDialect('a denial names a secret only when it exists', (dialect) => {
  let h: Harness;
  let builder: Awaited<ReturnType<typeof userContext>>;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'EXISTING_KEY', owner: 'ops' });
    builder = await userContext(h, h.ctx.tenantId, 'bea');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: builder.id, role: 'builder' });
  });
  after(() => h.close());

  const denials = (actorId: string) => h.storage.db.selectFrom('audit_events').selectAll()
    .where('actor_id', '=', actorId).where('outcome', '=', 'denied').orderBy('seq').execute();

  test('a refused create of a secret that does not exist records the requested name only as a keyed HMAC', async () => {
    const requested = 'PASTED_sk_live_51Hcanary';
    assert.equal(await codeOf(h.services.secrets.create(builder.ctx(), { name: requested, owner: 'ops' })), 'FORBIDDEN');
    const [event] = await denials(builder.id);
    assert.deepEqual([event?.action, event?.resource_type, event?.resource_id, event?.resource_name],
      ['authz.write', 'secret', null, h.services.identifiers.hash(requested)]);
    const everything = JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute());
    assert.equal(everything.includes(requested), false, 'the requested name is nowhere in the audit log');
    assert.equal(everything.includes(requested.toLowerCase()), false);
  });

  test('a refused action on a secret that exists still names it', async () => {
    assert.equal(await codeOf(h.services.values.write(builder.ctx(), 'EXISTING_KEY', 'production', { value: 'never-written' })), 'FORBIDDEN');
    const last = (await denials(builder.id)).at(-1);
    assert.deepEqual([last?.action, last?.resource_name], ['authz.write', 'EXISTING_KEY']);
    assert.ok(last?.resource_id);
  });
});
