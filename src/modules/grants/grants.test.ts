import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { createCedarAuthorizer } from '../policy/cedar-authorizer.ts';
import { createPolicyEngine } from '../policy/engine.ts';
import { createGrantService } from './grant-service.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';


describeEachDialect('grants: narrowed by environment and name, expiring, revocable', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    for (const name of ['STRIPE_LIVE_KEY', 'STRIPE_TEST_KEY', 'DB_PASSWORD']) {
      await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
      for (const env of ['staging', 'production']) await h.services.values.write(h.ctx, name, env, { value: `${name}-${env}` });
    }
  });
  after(() => h.close());

  test('a revealer outside its environments is denied', async () => {
    const ann = await userContext(h, h.ctx.tenantId, 'ann');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: ann.id, role: 'revealer', environments: ['staging'] });
    assert.equal((await h.services.values.read(ann.ctx(), 'DB_PASSWORD', 'staging')).value, 'DB_PASSWORD-staging');
    assert.equal(await codeOf(h.services.values.read(ann.ctx(), 'DB_PASSWORD', 'production')), 'FORBIDDEN');
  });

  test('an empty list of environments or name patterns is refused, never stored as a grant on everything', async () => {
    const m = await h.services.machines.create(h.ctx, { name: 'narrow-to-nothing', kind: 'client_secret' });
    const before = await h.services.grants.list(h.ctx, { principalId: m.id });
    for (const narrowing of [{ environments: [] }, { namePatterns: [] }]) {
      const res = await h.app.inject({
        method: 'POST', url: '/v1/grants', headers: { authorization: `Bearer ${h.rootToken}` },
        payload: { principalType: 'machine', principalId: m.id, role: 'builder', ...narrowing },
      });
      assert.deepEqual([res.statusCode, res.json().error.code], [400, 'VALIDATION_FAILED'], JSON.stringify(narrowing));
      // The service refuses it too, for callers that do not come through HTTP.
      assert.equal(await codeOf(h.services.grants.create(h.ctx, { principalType: 'machine', principalId: m.id, role: 'builder', ...narrowing })), 'VALIDATION_FAILED');
    }
    assert.deepEqual(await h.services.grants.list(h.ctx, { principalId: m.id }), before, 'nothing was stored');
  });

  test('name patterns narrow a grant to matching secrets; listing shows only those', async () => {
    const bob = await userContext(h, h.ctx.tenantId, 'bob');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: bob.id, role: 'revealer', namePatterns: ['STRIPE_*'] });
    assert.equal((await h.services.values.read(bob.ctx(), 'STRIPE_TEST_KEY', 'production')).value, 'STRIPE_TEST_KEY-production');
    assert.equal(await codeOf(h.services.values.read(bob.ctx(), 'DB_PASSWORD', 'production')), 'SECRET_NOT_FOUND');
    assert.deepEqual((await h.services.secrets.list(bob.ctx())).items.map((s) => s.name), ['STRIPE_LIVE_KEY', 'STRIPE_TEST_KEY']);
  });

  test('an expired grant stops working at its expiry (fake clock), without any sweeper', async () => {
    const cy = await userContext(h, h.ctx.tenantId, 'cy');
    const expiresAt = new Date(h.clock.now() + 3_600_000).toISOString();
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: cy.id, role: 'revealer', expiresAt });
    assert.equal(await codeOf(h.services.values.read(cy.ctx(), 'DB_PASSWORD', 'staging')), 'ok');
    h.clock.advance(3_600_000 - 1000);
    assert.equal(await codeOf(h.services.values.read(cy.ctx(), 'DB_PASSWORD', 'staging')), 'ok');
    h.clock.advance(2000);
    assert.equal(await codeOf(h.services.values.read(cy.ctx(), 'DB_PASSWORD', 'staging')), 'SECRET_NOT_FOUND');
  });

  test('listing hides expired grants unless asked (includeExpired), and says which state each grant is in', async () => {
    const gil = await userContext(h, h.ctx.tenantId, 'gil');
    const expiresAt = new Date(h.clock.now() + 60_000).toISOString();
    const lasting = await h.services.grants.create(h.ctx, { principalType: 'user', principalId: gil.id, role: 'viewer' });
    const brief = await h.services.grants.create(h.ctx, { principalType: 'user', principalId: gil.id, role: 'builder', expiresAt });
    const briefRevoked = await h.services.grants.create(h.ctx, { principalType: 'user', principalId: gil.id, role: 'revealer', expiresAt });
    await h.services.grants.revoke(h.ctx, briefRevoked.id);
    const states = async (opts: { includeRevoked?: boolean; includeExpired?: boolean }) =>
      (await h.services.grants.list(h.ctx, { principalId: gil.id, ...opts })).map((g) => [g.role, g.state]);
    assert.deepEqual(await states({}), [['viewer', 'live'], ['builder', 'live']]);
    // At its expiry exactly the grant stops counting (as decisions judge it), so it leaves the default list then too.
    h.clock.advance(60_000);
    assert.deepEqual(await states({}), [['viewer', 'live']]);
    assert.deepEqual(await states({ includeExpired: true }), [['viewer', 'live'], ['builder', 'expired']]);
    // A revoked grant is listed as revoked (with includeRevoked), whether or not it has expired since.
    assert.deepEqual(await states({ includeRevoked: true }), [['viewer', 'live'], ['revealer', 'revoked']]);
    assert.deepEqual(await states({ includeRevoked: true, includeExpired: true }), [['viewer', 'live'], ['builder', 'expired'], ['revealer', 'revoked']]);
    const res = await h.app.inject({ method: 'GET', url: `/v1/grants?principalId=${gil.id}`, headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.deepEqual(res.json().items.map((g: { id: string; state: string }) => [g.id, g.state]), [[lasting.id, 'live']]);
    const all = await h.app.inject({ method: 'GET', url: `/v1/grants?principalId=${gil.id}&includeExpired=true`, headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.deepEqual(all.json().items.map((g: { id: string; state: string }) => [g.id, g.state]), [[lasting.id, 'live'], [brief.id, 'expired']]);
  });

  test('revoking a grant that has already expired is GRANT_NOT_FOUND, records nothing, and it stays expired', async () => {
    const hal = await userContext(h, h.ctx.tenantId, 'hal');
    const grant = await h.services.grants.create(h.ctx, { principalType: 'user', principalId: hal.id, role: 'viewer', expiresAt: new Date(h.clock.now() + 60_000).toISOString() });
    h.clock.advance(60_000);
    const revokes = async () => (await h.services.auditQueries.list(h.ctx, { action: 'grant.revoke' })).items.length;
    const before = await revokes();
    const res = await h.app.inject({ method: 'DELETE', url: `/v1/grants/${grant.id}`, headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.deepEqual([res.statusCode, res.json().error.code], [404, 'GRANT_NOT_FOUND']);
    assert.equal(await revokes(), before);
    assert.deepEqual((await h.services.grants.list(h.ctx, { principalId: hal.id, includeExpired: true, includeRevoked: true })).map((g) => [g.id, g.state]), [[grant.id, 'expired']]);
  });

  test('revoking a grant takes effect on the very next request (the decision cache is invalidated)', async () => {
    const di = await userContext(h, h.ctx.tenantId, 'di');
    const grant = await h.services.grants.create(h.ctx, { principalType: 'user', principalId: di.id, role: 'builder' });
    assert.equal(await h.services.authz.allowed(di.ctx(), 'admin', { type: 'tenant' }), false, 'a builder does not administer');
    assert.equal((await h.services.secrets.list(di.ctx())).items.length, 3);
    await h.services.grants.revoke(h.ctx, grant.id);
    assert.equal((await h.services.secrets.list(di.ctx())).items.length, 0);
  });

  test('a revoke stops the grant on another node even when this node fails right after the commit', async () => {
    // Another node: its own authorizer and engine over the same database, with its own grants cache.
    const otherNode = createCedarAuthorizer({ db: h.storage.db, engine: createPolicyEngine(), clock: h.clock, stepUpWindowMs: 600_000, audit: h.services.audit, identifiers: h.services.identifiers });
    // This node dies (or its cache drop throws) between the commit and anything after it.
    const crashing = createGrantService({
      db: h.storage.db, tenants: h.services.tenants, clock: h.clock, audit: h.services.audit,
      authz: { ...h.services.authz, invalidate: () => { throw new Error('process died after commit'); } },
    });
    const flo = await userContext(h, h.ctx.tenantId, 'flo');
    const grant = await h.services.grants.create(h.ctx, { principalType: 'user', principalId: flo.id, role: 'builder' });
    const secret = { type: 'tenant' } as const;
    assert.equal(await otherNode.allowed(flo.ctx(), 'list', secret), true, 'the other node caches the live grant');
    await assert.rejects(crashing.revoke(h.ctx, grant.id), /process died after commit/);
    assert.notEqual((await h.services.grants.list(h.ctx, { includeRevoked: true })).find((g) => g.id === grant.id)?.revokedAt, null, 'the revoke committed');
    h.clock.advance(2_001);
    assert.equal(await otherNode.allowed(flo.ctx(), 'list', secret), false, 'the generation moved with the revoke');
  });

  test('a person needs a fresh second factor to reveal: STEP_UP_REQUIRED, then allowed after step-up', async () => {
    const ed = await userContext(h, h.ctx.tenantId, 'ed', { mfaAgoMs: 11 * 60_000 });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: ed.id, role: 'revealer' });
    assert.equal(await codeOf(h.services.values.read(ed.ctx(), 'DB_PASSWORD', 'staging')), 'STEP_UP_REQUIRED');
    const fresh = await userContext(h, h.ctx.tenantId, 'ed2', { mfaAgoMs: 9 * 60_000 });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: fresh.id, role: 'revealer' });
    assert.equal(await codeOf(h.services.values.read(fresh.ctx(), 'DB_PASSWORD', 'staging')), 'ok');
    const never = await userContext(h, h.ctx.tenantId, 'ed3', { mfaAgoMs: null });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: never.id, role: 'builder' });
    assert.equal(await codeOf(h.services.values.read(never.ctx(), 'DB_PASSWORD', 'staging')), 'FORBIDDEN', 'no step-up hint for what a factor would not allow');
  });

  test('grants refuse unknown roles, principals of another tenant, unknown environments, bad patterns and past expiry', async () => {
    const other = await h.services.tenants.create('grant-other');
    const stranger = await userContext(h, other.id, 'stranger');
    const fi = await userContext(h, h.ctx.tenantId, 'fi');
    assert.equal(await codeOf(h.services.grants.create(h.ctx, { principalType: 'user', principalId: stranger.id, role: 'viewer' })), 'USER_NOT_FOUND');
    assert.equal(await codeOf(h.services.grants.create(h.ctx, { principalType: 'user', principalId: fi.id, role: 'god' })), 'VALIDATION_FAILED');
    assert.equal(await codeOf(h.services.grants.create(h.ctx, { principalType: 'user', principalId: fi.id, role: 'viewer', environments: ['qa'] })), 'ENVIRONMENT_NOT_FOUND');
    assert.equal(await codeOf(h.services.grants.create(h.ctx, { principalType: 'user', principalId: fi.id, role: 'viewer', namePatterns: ['a b'] })), 'VALIDATION_FAILED');
    assert.equal(await codeOf(h.services.grants.create(h.ctx, { principalType: 'user', principalId: fi.id, role: 'viewer', expiresAt: new Date(h.clock.now() - 1).toISOString() })), 'VALIDATION_FAILED');
  });

  test('revoking another tenant\'s grant by its id over HTTP is 404 GRANT_NOT_FOUND, and that grant stays live', async () => {
    const other = await h.services.tenants.create('grant-victim');
    const victim = await userContext(h, other.id, 'victim');
    const theirs = await h.services.grants.create(h.contextFor(other.id), { principalType: 'user', principalId: victim.id, role: 'viewer' });
    const res = await h.app.inject({ method: 'DELETE', url: `/v1/grants/${theirs.id}`, headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.equal(res.statusCode, 404, res.body);
    assert.equal(res.json().error.code, 'GRANT_NOT_FOUND');
    assert.deepEqual((await h.services.grants.list(h.contextFor(other.id))).map((g) => [g.id, g.revokedAt]), [[theirs.id, null]]);
  });

  test('only an administrator may grant: a revealer cannot grant itself more', async () => {
    const gus = await userContext(h, h.ctx.tenantId, 'gus');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: gus.id, role: 'revealer' });
    assert.equal(await codeOf(h.services.grants.create(gus.ctx(), { principalType: 'user', principalId: gus.id, role: 'tenant-admin' })), 'FORBIDDEN');
  });
});

describeEachDialect('a caller without rights in an environment learns nothing about values there', (dialect) => {
  test('a production-only revealer asking for an unset staging value gets FORBIDDEN, not VALUE_NOT_SET', async () => {
    const h = await createHarness(dialect);
    try {
      await h.services.secrets.create(h.ctx, { name: 'ONLY_PROD', owner: 'ops' });
      await h.services.values.write(h.ctx, 'ONLY_PROD', 'production', { value: 'p' });
      const ann = await userContext(h, h.ctx.tenantId, 'ann');
      await h.services.grants.create(h.ctx, { principalType: 'user', principalId: ann.id, role: 'revealer', environments: ['production'] });
      assert.equal(await codeOf(h.services.values.read(ann.ctx(), 'ONLY_PROD', 'staging')), 'FORBIDDEN');
      assert.equal(await codeOf(h.services.values.read(h.ctx, 'ONLY_PROD', 'staging')), 'VALUE_NOT_SET');
    } finally {
      await h.close();
    }
  });
});
