import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import type { TenantContext } from '../shared/context.ts';
import { machineContext, userContext } from '../../../test/helpers/identities.ts';
import { frozenResource } from '../secrets/read-views.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const HOUR = 3_600_000;

/**
 * The authorizer remembers allows so the hot read path skips Cedar. A remembered allow must never
 * outlive any input of the decision: each case below changes one input right after an allow was
 * remembered and expects the very next read to be decided afresh.
 */
describeEachDialect('remembered allows end exactly when a decision input changes', (dialect) => {
  let h: Harness;
  let seq = 0;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'MEMO', owner: 'ops' });
    await h.services.values.write(h.ctx, 'MEMO', 'production', { value: 'remembered-allow-value' });
  });
  after(() => h.close());

  /** A fresh machine with `builder` in production (optionally expiring). */
  const reader = (opts: { expiresAt?: number } = {}) => machineContext(h, `memo-${++seq}`, {
    role: 'builder', environments: ['production'], ...(opts.expiresAt ? { expiresAt: new Date(opts.expiresAt).toISOString() } : {}),
  });
  const read = (ctx: TenantContext) => codeOf(h.services.values.read(ctx, 'MEMO', 'production'));
  const loadSecret = () => h.services.secrets.load(h.ctx, 'MEMO');

  test('an allow is remembered for the read path, and only for it (frozen resource views)', async () => {
    const r = await reader();
    assert.equal(await read(r.ctx()), 'ok');
    assert.equal(await read(r.ctx()), 'ok');
    // A resource object a caller could still change is never remembered.
    const plain = { type: 'secret' as const, ...(await loadSecret()), tags: [] as string[] };
    await h.services.authz.require(r.ctx(), 'use', plain, 'production');
    assert.equal(h.services.authz.cachedAllow?.(r.ctx(), 'use', plain, 'production'), undefined);
  });

  test('a grant that expires ends the remembered allow at that millisecond (fake clock)', async () => {
    const r = await reader({ expiresAt: h.clock.now() + 5_000 });
    assert.equal(await read(r.ctx()), 'ok');
    h.clock.advance(4_999);
    assert.equal(await read(r.ctx()), 'ok', 'one millisecond before expiry');
    h.clock.advance(1);
    assert.equal(await read(r.ctx()), 'SECRET_NOT_FOUND', 'at expiry');
  });

  test('revoking the grant ends it at once', async () => {
    const r = await reader();
    assert.equal(await read(r.ctx()), 'ok');
    await h.services.grants.revoke(h.ctx, r.grant.id);
    assert.equal(await read(r.ctx()), 'SECRET_NOT_FOUND');
  });

  test('a tenant policy that forbids it ends it at once, and rolling the policy back allows again', async () => {
    const r = await reader();
    assert.equal(await read(r.ctx()), 'ok');
    const forbid = `@id("no-memo-use")\nforbid(principal == Keyhold::Machine::"${r.machine.id}", action == Keyhold::Action::"use", resource);`;
    await h.services.policies.put(h.ctx, { text: forbid, comment: 'forbid one machine' });
    assert.equal(await read(r.ctx()), 'FORBIDDEN');
    await h.services.policies.put(h.ctx, { text: '', comment: 'lift it' });
    assert.equal(await read(r.ctx()), 'ok');
  });

  test('reclassifying the secret ends it at once: a policy keyed on the classification judges the next read', async () => {
    await h.services.secrets.create(h.ctx, { name: 'MEMO_CLASS', owner: 'ops' });
    await h.services.values.write(h.ctx, 'MEMO_CLASS', 'production', { value: 'reclassified-value' });
    const forbid = '@id("no-restricted-use")\nforbid(principal, action == Keyhold::Action::"use", resource is Keyhold::Secret) when { resource.classification == "restricted" };';
    await h.services.policies.put(h.ctx, { text: forbid, comment: 'machines never use restricted secrets' });
    const r = await reader();
    const readIt = () => codeOf(h.services.values.read(r.ctx(), 'MEMO_CLASS', 'production'));
    assert.equal(await readIt(), 'ok');
    assert.equal(await readIt(), 'ok', 'remembered');
    await h.services.secrets.update(h.ctx, 'MEMO_CLASS', { classification: 'restricted' });
    assert.equal(await readIt(), 'FORBIDDEN');
    await h.services.secrets.update(h.ctx, 'MEMO_CLASS', { classification: 'internal' });
    assert.equal(await readIt(), 'ok');
    await h.services.policies.put(h.ctx, { text: '', comment: 'lift it' });
  });

  test('the next UTC hour is decided afresh (policies may read the hour)', async () => {
    const r = await reader();
    // Forbid this machine's use during the hour after the current one only.
    const next = new Date(Math.floor(h.clock.now() / HOUR) * HOUR + HOUR).getUTCHours();
    const text = `@id("not-next-hour")\nforbid(principal == Keyhold::Machine::"${r.machine.id}", action, resource) when { context.hour == ${next} };`;
    await h.services.policies.put(h.ctx, { text, comment: 'hour-bound' });
    try {
      assert.equal(await read(r.ctx()), 'ok');
      h.clock.set(Math.floor(h.clock.now() / HOUR) * HOUR + HOUR - 1);
      assert.equal(await read(r.ctx()), 'ok', 'the last millisecond of the allowed hour');
      h.clock.advance(1);
      assert.equal(await read(r.ctx()), 'SECRET_NOT_FOUND', 'the first millisecond of the forbidden hour');
    } finally {
      await h.services.policies.put(h.ctx, { text: '', comment: 'lift it' });
    }
  });

  test('another source address is decided afresh', async () => {
    const r = await reader();
    const text = `@id("office-only")\nforbid(principal == Keyhold::Machine::"${r.machine.id}", action, resource) unless { context.sourceIp.isInRange(ip("127.0.0.0/8")) };`;
    await h.services.policies.put(h.ctx, { text, comment: 'loopback only' });
    try {
      assert.equal(await read(r.ctx({ sourceIp: '127.0.0.1' })), 'ok');
      assert.equal(await read(r.ctx({ sourceIp: '10.1.2.3' })), 'SECRET_NOT_FOUND');
      assert.equal(await read(r.ctx({ sourceIp: '127.0.0.1' })), 'ok');
    } finally {
      await h.services.policies.put(h.ctx, { text: '', comment: 'lift it' });
    }
  });

  test('denials are never remembered: each one is decided and audited', async () => {
    const stranger = await userContext(h, h.ctx.tenantId, `stranger-${++seq}`, { mfaAgoMs: null });
    const denials = async () => (await h.storage.db.selectFrom('audit_events').select('seq')
      .where('actor_id', '=', stranger.id).where('outcome', '=', 'denied').execute()).length;
    for (let i = 0; i < 3; i++) assert.equal(await read(stranger.ctx()), 'SECRET_NOT_FOUND');
    assert.equal(await denials(), 3);
  });

  test('a person with a verified second factor is decided afresh each time (its age is in the context)', async () => {
    const person = await userContext(h, h.ctx.tenantId, `revealer-${++seq}`, { mfaAgoMs: 1_000 });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: person.id, role: 'revealer', environments: ['production'] });
    assert.equal(await read(person.ctx()), 'ok');
    const secret = await loadSecret();
    const frozen = frozenResource(secret);
    await h.services.authz.require(person.ctx(), 'reveal', frozen, 'production');
    assert.equal(h.services.authz.cachedAllow?.(person.ctx(), 'reveal', frozen, 'production'), undefined);
  });
});
