import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../test/helpers/harness.ts';

/**
 * The authentication hook is attached to each route that asks for it, and answers from the
 * credential cache without waiting when it can. These cases pin down that neither shortcut
 * lets a request through that the full lookup would refuse.
 */
describeEachDialect('HTTP authentication', (dialect) => {
  let h: Harness;
  let token: string;
  let tokenId: string;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'AUTH_PROBE', owner: 'ops' });
    await h.services.values.write(h.ctx, 'AUTH_PROBE', 'production', { value: 'auth-probe-value-1' });
    const machine = await h.services.machines.create(h.ctx, { name: 'probe', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machine.id, role: 'builder', environments: ['production'] });
    const issued = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: machine.id, name: 'probe', ttlMs: 60_000 });
    token = issued.token;
    tokenId = issued.id;
  });
  after(() => h.close());

  const read = (method: 'GET' | 'HEAD', headers: Record<string, string> = {}) =>
    h.app.inject({ method, url: '/v1/secrets/AUTH_PROBE/values/production', headers });

  test('GET and HEAD of a tenant route without a token are refused before anything else runs', async () => {
    for (const method of ['GET', 'HEAD'] as const) {
      const res = await read(method);
      assert.equal(res.statusCode, 401, method);
    }
    const res = await read('GET', { authorization: 'Bearer kh_not-a-token' });
    assert.equal(res.json().error.code, 'UNAUTHENTICATED');
  });

  test('the first request looks the token up, later ones are answered from the cache, both the same', async () => {
    const first = await read('GET', { authorization: `Bearer ${token}` });
    assert.equal(first.statusCode, 200, first.body);
    assert.ok(h.services.authenticator.cached(token), 'the token is cached after its first use');
    const second = await read('GET', { authorization: `Bearer ${token}` });
    assert.deepEqual([second.statusCode, second.json().value], [200, 'auth-probe-value-1']);
  });

  test('a cached token stops working the moment it is revoked', async () => {
    assert.equal((await read('GET', { authorization: `Bearer ${token}` })).statusCode, 200);
    await h.services.tokens.revoke(tokenId, h.ctx.tenantId);
    assert.equal(h.services.authenticator.cached(token), undefined);
    const res = await read('GET', { authorization: `Bearer ${token}` });
    assert.deepEqual([res.statusCode, res.json().error.code], [401, 'UNAUTHENTICATED']);
  });

  test('a cached token stops working at its expiry (fake clock)', async () => {
    const machine = await h.services.machines.create(h.ctx, { name: 'short-lived', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machine.id, role: 'builder', environments: ['production'] });
    const { token: brief } = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: machine.id, name: 'brief', ttlMs: 2_000 });
    assert.equal((await read('GET', { authorization: `Bearer ${brief}` })).statusCode, 200);
    h.clock.advance(1_000);
    assert.equal((await read('GET', { authorization: `Bearer ${brief}` })).statusCode, 200, 'one second before expiry');
    h.clock.advance(1_000);
    assert.equal(h.services.authenticator.cached(brief), undefined);
    assert.equal((await read('GET', { authorization: `Bearer ${brief}` })).statusCode, 401, 'at expiry');
  });

  test('a tenant-scoped token naming another tenant gets one answer whether it exists or not, without that tenant being looked up', async () => {
    await h.services.tenants.create('acme');
    // The root token reads in acme first, so this process holds acme's name in memory: a lookup of it would answer faster
    // than one of a name that does not exist, and the time of the answer would tell the two apart.
    assert.equal((await h.app.inject({ method: 'GET', url: '/v1/environments', headers: { authorization: `Bearer ${h.rootToken}`, 'x-keyhold-tenant': 'acme' } })).statusCode, 200);
    const tenants = h.services.tenants;
    const original = tenants.findByName;
    const looked: string[] = [];
    tenants.findByName = (name) => (looked.push(name), original(name));
    const machine = await h.services.machines.create(h.ctx, { name: 'tenant-prober', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machine.id, role: 'builder', environments: ['production'] });
    const { token: probe } = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: machine.id, name: 'prober', ttlMs: 60_000 });
    try {
      for (const tenant of ['acme', 'no-such-tenant']) {
        const res = await read('GET', { authorization: `Bearer ${probe}`, 'x-keyhold-tenant': tenant });
        assert.deepEqual([res.statusCode, res.json().error.code], [404, 'TENANT_NOT_FOUND'], tenant);
      }
      const own = (await h.services.tenants.findById(h.ctx.tenantId))!.name;
      assert.equal((await read('GET', { authorization: `Bearer ${probe}`, 'x-keyhold-tenant': own })).statusCode, 200, 'its own tenant, named');
      assert.deepEqual(looked.filter((n) => n !== own), [], 'no other name was looked up');
    } finally {
      tenants.findByName = original;
    }
  });

  test('routes that need no token answer without one', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/v1/sys/status' });
    assert.ok(res.statusCode < 400, `${res.statusCode} ${res.body}`);
  });

  test('a sealed server refuses a cached token with SEALED', async () => {
    assert.equal((await read('GET', { authorization: `Bearer ${h.rootToken}` })).statusCode, 200);
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    try {
      const res = await read('GET', { authorization: `Bearer ${h.rootToken}` });
      assert.deepEqual([res.statusCode, res.json().error.code], [503, 'SEALED']);
    } finally {
      for (const share of h.shares.slice(0, 2)) await h.services.system.unseal(share);
    }
  });
});
