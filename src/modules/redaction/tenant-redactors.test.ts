import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, ROLLBACK_WINDOW_MS, type Harness } from '../../../test/helpers/harness.ts';
import { pauseAfterColumn } from '../../../test/helpers/pause-after-column.ts';
import { createTenantRedactors } from './index.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';


describeEachDialect('tenant redactors: every live value of the tenant, fresh after changes, dropped on seal', (dialect) => {
  let h: Harness;
  let otherTenant: string;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'PAYMENT_API_KEY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'PAYMENT_API_KEY', 'staging', { value: 'pay-staging-old-111111' });
    await h.services.values.write(h.ctx, 'PAYMENT_API_KEY', 'staging', { value: 'pay-staging-new-222222' });
    await h.services.values.write(h.ctx, 'PAYMENT_API_KEY', 'production', { value: 'pay-production-333333' });
    const other = await h.services.tenants.create('redaction-other');
    otherTenant = other.id;
    const octx = h.contextFor(other.id);
    await h.services.secrets.create(octx, { name: 'PAYMENT_API_KEY', owner: 'ops' });
    await h.services.values.write(octx, 'PAYMENT_API_KEY', 'staging', { value: 'other-tenant-value-444444' });
  });
  after(() => h.close());

  const make = (ttlMs = 1_000) => createTenantRedactors({ db: h.storage.db, keyring: h.services.keyring, clock: h.clock, seal: h.services.seal, ttlMs });

  test('masks current and previous values in every environment, and none of another tenant', async () => {
    const r = await make().forTenant(h.ctx.tenantId);
    assert.equal(r.size, 3);
    assert.equal(r.redact('a pay-staging-old-111111 b pay-staging-new-222222 c pay-production-333333'), 'a [REDACTED] b [REDACTED] c [REDACTED]');
    assert.equal(r.redact('other-tenant-value-444444'), 'other-tenant-value-444444');
    const o = await make().forTenant(otherTenant);
    assert.equal(o.redact('other-tenant-value-444444 pay-production-333333'), '[REDACTED] pay-production-333333');
  });

  test('is cached: a new value is seen after ttlMs through the freshness check, or at once after forget()', async () => {
    const redactors = make(5_000);
    const first = await redactors.forTenant(h.ctx.tenantId);
    assert.equal(await redactors.forTenant(h.ctx.tenantId), first, 'the same redactor while fresh');
    await h.services.values.write(h.ctx, 'PAYMENT_API_KEY', 'development', { value: 'pay-dev-new-555555' });
    assert.equal((await redactors.forTenant(h.ctx.tenantId)).redact('pay-dev-new-555555'), 'pay-dev-new-555555', 'within ttl: cached');
    h.clock.advance(5_000);
    assert.equal((await redactors.forTenant(h.ctx.tenantId)).redact('pay-dev-new-555555'), '[REDACTED]');
    const unchanged = await redactors.forTenant(h.ctx.tenantId);
    h.clock.advance(5_000);
    assert.equal(await redactors.forTenant(h.ctx.tenantId), unchanged, 'an unchanged tenant is not rebuilt');
    await h.services.values.write(h.ctx, 'PAYMENT_API_KEY', 'development', { value: 'pay-dev-newer-666666' });
    redactors.forget(h.ctx.tenantId);
    assert.equal((await redactors.forTenant(h.ctx.tenantId)).redact('pay-dev-newer-666666'), '[REDACTED]');
  });

  test('concurrent callers share one build', async () => {
    const redactors = make();
    const [a, b, c] = await Promise.all([1, 2, 3].map(() => redactors.forTenant(h.ctx.tenantId)));
    assert.equal(a, b);
    assert.equal(b, c);
  });

  test('a destroyed version has no value to mask once the retention sweep shreds it', async () => {
    await h.services.secrets.create(h.ctx, { name: 'SHORT_LIVED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'SHORT_LIVED', 'staging', { value: 'shredded-soon-777777' });
    await h.services.values.write(h.ctx, 'SHORT_LIVED', 'staging', { value: 'shredded-later-888888' });
    await h.services.values.write(h.ctx, 'SHORT_LIVED', 'staging', { value: 'kept-current-999999' });
    const redactors = make();
    assert.equal((await redactors.forTenant(h.ctx.tenantId)).redact('shredded-soon-777777'), '[REDACTED]', 'superseded but not yet destroyed');
    h.clock.advance(ROLLBACK_WINDOW_MS + 1);
    assert.ok((await h.services.retention.sweep()) >= 1);
    h.clock.advance(1_000);
    const r = await redactors.forTenant(h.ctx.tenantId);
    assert.equal(r.redact('shredded-soon-777777'), 'shredded-soon-777777');
    assert.equal(r.redact('kept-current-999999'), '[REDACTED]');
  });

  test('seal drops every cached redactor and the known values; sealed, a build is refused; after unseal it works again', async () => {
    const redactors = make(60_000);
    await redactors.forTenant(h.ctx.tenantId);
    await h.services.redactors.forTenant(h.ctx.tenantId);
    assert.equal(h.services.knownValues.redactor().redact('pay-production-333333'), '[REDACTED]', 'the log registry knows the snapshot');
    h.services.seal.seal();
    assert.equal(h.services.knownValues.redactor().size, 0, 'known values dropped on seal');
    assert.equal(await codeOf(redactors.forTenant(h.ctx.tenantId)), 'SEALED');
    for (const share of h.shares.slice(0, 2)) await h.services.system.unseal(share);
    assert.equal((await redactors.forTenant(h.ctx.tenantId)).redact('pay-production-333333'), '[REDACTED]');
  });

  test('a build that was under way when forget() was called is not cached: the value written meanwhile is masked at once', async () => {
    let entered!: () => void;
    const inOpen = new Promise<void>((resolve) => (entered = resolve));
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const keyring: typeof h.services.keyring = Object.create(h.services.keyring);
    keyring.openValue = async (...args: Parameters<typeof h.services.keyring.openValue>) => {
      entered();
      await gate;
      return h.services.keyring.openValue(...args);
    };
    const redactors = createTenantRedactors({ db: h.storage.db, keyring, clock: h.clock, seal: h.services.seal, ttlMs: 60_000 });
    const stale = redactors.forTenant(h.ctx.tenantId);
    await inOpen; // the build has read the versions; the next value is not among them
    await h.services.values.write(h.ctx, 'PAYMENT_API_KEY', 'development', { value: 'pay-dev-late-777777' });
    redactors.forget(h.ctx.tenantId);
    release();
    assert.equal((await stale).redact('pay-dev-late-777777'), 'pay-dev-late-777777', 'the build under way did not see it');
    assert.equal((await redactors.forTenant(h.ctx.tenantId)).redact('pay-dev-late-777777'), '[REDACTED]');
  });

  const rotateAndRewrap = async () => {
    await h.services.keys.rotate(h.ctx);
    await h.services.keys.rewrap(h.ctx);
  };

  test('a build that read the versions just before a rewrap retired their KEK reads the moved rows again and masks every value', async () => {
    const pause = pauseAfterColumn('wrapped_dek', rotateAndRewrap);
    const redactors = createTenantRedactors({ db: h.storage.db.withPlugin(pause), keyring: h.services.keyring, clock: h.clock, seal: h.services.seal });
    const r = await redactors.forTenant(h.ctx.tenantId);
    assert.ok(pause.fired(), 'the rewrap ran between the read and the decryption');
    assert.equal(r.redact('a pay-staging-new-222222 b pay-production-333333 c kept-current-999999'), 'a [REDACTED] b [REDACTED] c [REDACTED]');
  });

  test('a version really left under a retired KEK still fails the build: corruption is not masked away', async () => {
    await h.services.secrets.create(h.ctx, { name: 'LEFT_BEHIND', owner: 'ops' });
    await h.services.values.write(h.ctx, 'LEFT_BEHIND', 'staging', { value: 'left-behind-121212' });
    const row = () => h.storage.db.selectFrom('secret_versions').select(['id', 'wrapped_dek', 'kek_version'])
      .where('tenant_id', '=', h.ctx.tenantId).where('secret_id', '=', h.storage.db.selectFrom('secrets').select('id').where('tenant_id', '=', h.ctx.tenantId).where('name', '=', 'LEFT_BEHIND'))
      .executeTakeFirstOrThrow();
    const old = await row();
    await rotateAndRewrap();
    const moved = await row();
    const put = (r: typeof old) => h.storage.db.updateTable('secret_versions').set({ wrapped_dek: r.wrapped_dek, kek_version: r.kek_version }).where('id', '=', r.id).execute();
    await put(old);
    try {
      assert.equal(await codeOf(make().forTenant(h.ctx.tenantId)), 'KEY_VERSION_RETIRED');
    } finally {
      await put(moved);
    }
    assert.equal((await make().forTenant(h.ctx.tenantId)).redact('left-behind-121212'), '[REDACTED]');
  });

  test('a tenant with no values gets an empty redactor', async () => {
    const empty = await h.services.tenants.create('redaction-empty');
    assert.equal((await make().forTenant(empty.id)).size, 0);
  });
});
