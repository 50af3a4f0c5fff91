import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { machineContext, userContext } from '../../../test/helpers/identities.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';


/**
 * Tenant policies key on owner and tags (SPEC §3): someone who may write a secret's metadata must
 * not be able to take it out of such a rule and then do what the rule forbade.
 */
describeEachDialect('a metadata change that would widen its author\'s own rights needs the tenant admin', (dialect) => {
  let h: Harness;
  let dana: Awaited<ReturnType<typeof userContext>>;
  let admin: Awaited<ReturnType<typeof userContext>>;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'CARD_VAULT_KEY', owner: 'payments', tags: ['pci', 'team-pay'] });
    await h.services.values.write(h.ctx, 'CARD_VAULT_KEY', 'production', { value: 'card-vault-key-value' });
    await h.services.secrets.create(h.ctx, { name: 'BLOG_API_KEY', owner: 'marketing', tags: ['public-site'] });
    await h.services.policies.put(h.ctx, {
      text: [
        'forbid (principal, action == Keyhold::Action::"reveal", resource is Keyhold::Secret) when { resource.tags.contains("pci") };',
        'permit (principal, action == Keyhold::Action::"use", resource is Keyhold::Secret) when { resource.owner == "shared" };',
      ].join('\n'),
    });
    // Dana may write secrets and reveal them, but the tenant's rule keeps pci secrets from being revealed; her factor is stale.
    dana = await userContext(h, h.ctx.tenantId, 'dana', { mfaAgoMs: 3_600_000 });
    for (const role of ['secret-admin', 'revealer'] as const) await h.services.grants.create(h.ctx, { principalType: 'user', principalId: dana.id, role });
    admin = await userContext(h, h.ctx.tenantId, 'tess');
    for (const role of ['tenant-admin', 'secret-admin'] as const) await h.services.grants.create(h.ctx, { principalType: 'user', principalId: admin.id, role });
  });
  after(() => h.close());

  test('removing the tag a forbid keys on is refused to a writer (stale factor or not), and the value stays unrevealed', async () => {
    assert.equal(await codeOf(h.services.secrets.update(dana.ctx(), 'CARD_VAULT_KEY', { tags: ['team-pay'] })), 'FORBIDDEN');
    assert.deepEqual((await h.services.secrets.describe(h.ctx, 'CARD_VAULT_KEY')).tags, ['pci', 'team-pay']);
    const denial = await h.storage.db.selectFrom('audit_events').select(['action', 'outcome']).where('actor_id', '=', dana.id).orderBy('seq', 'desc').executeTakeFirstOrThrow();
    assert.deepEqual([denial.action, denial.outcome], ['authz.admin', 'denied'], 'the refusal is an audited denial');
    const revealer = { ...dana.ctx(), actor: { ...dana.ctx().actor, mfaAt: h.clock.now() } };
    assert.equal(await codeOf(h.services.values.read(revealer, 'CARD_VAULT_KEY', 'production')), 'FORBIDDEN');
  });

  test('re-owning a secret into a permit that would open it to its author is refused too', async () => {
    const bot = (await machineContext(h, 'ci-bot', { role: 'secret-admin', environments: ['staging'] })).ctx();
    assert.equal(await codeOf(h.services.secrets.update(bot, 'BLOG_API_KEY', { owner: 'shared' })), 'FORBIDDEN');
    assert.equal((await h.services.secrets.describe(h.ctx, 'BLOG_API_KEY')).owner, 'marketing');
  });

  test('changes that open nothing new to their author go through; the admin may make any', async () => {
    await h.services.secrets.update(dana.ctx(), 'CARD_VAULT_KEY', { tags: ['pci', 'team-pay', 'card-data'], owner: 'payments-core' });
    assert.deepEqual((await h.services.secrets.describe(h.ctx, 'CARD_VAULT_KEY')).tags, ['pci', 'team-pay', 'card-data']);
    const stepped = { ...admin.ctx(), actor: { ...admin.ctx().actor, mfaAt: h.clock.now() } };
    await h.services.secrets.update(stepped, 'CARD_VAULT_KEY', { tags: ['team-pay'] });
    assert.deepEqual((await h.services.secrets.describe(h.ctx, 'CARD_VAULT_KEY')).tags, ['team-pay']);
  });
});
