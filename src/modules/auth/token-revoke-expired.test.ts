import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';

/**
 * Revoking is for live tokens: one that already expired has nothing left to stop. Marking it
 * revoked anyway would rewrite what its later refusals say (a revoked token in use reads as a
 * leak in progress, an expired one as a client that forgot to renew) and record a revocation
 * that revoked nothing.
 */
describeEachDialect('revoking a token that has already expired', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('is TOKEN_NOT_FOUND on both revoke routes, records no revocation, and the token stays expired', async () => {
    const m = await h.services.machines.create(h.ctx, { name: `expired-${dialect}`, kind: 'client_secret' });
    const issued = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: m.id, name: m.name, ttlMs: 60_000 });
    h.clock.advance(60_000); // expired from its expiry on, exactly
    const revokes = async () => (await h.services.auditQueries.list(h.ctx, { action: 'auth.token-revoke', allTenants: true })).items.length;
    const before = await revokes();
    for (const url of [`/v1/auth/tokens/${issued.id}`, `/v1/tokens/${issued.id}`]) {
      const res = await h.app.inject({ method: 'DELETE', url, headers: { authorization: `Bearer ${h.rootToken}` } });
      assert.deepEqual([res.statusCode, res.json().error.code], [404, 'TOKEN_NOT_FOUND'], url);
    }
    assert.equal(await revokes(), before, 'no revocation was recorded');
    const seen = await h.services.tokens.lookup(issued.token);
    assert.deepEqual(seen && 'dead' in seen ? seen.dead.state : seen, 'expired');
  });

  test('a token issued with no time left (a TTL of zero or less) is born expired, never without an expiry', async () => {
    // The exchange gives a JWT's token what is left of the JWT, which a slow exchange can bring to nothing.
    const m = await h.services.machines.create(h.ctx, { name: `no-time-${dialect}`, kind: 'client_secret' });
    for (const ttlMs of [0, -5]) {
      const issued = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: m.id, name: m.name, ttlMs });
      assert.equal(issued.expiresAt, h.clock.now() + ttlMs, `ttlMs ${ttlMs}`);
      const seen = await h.services.tokens.lookup(issued.token);
      assert.deepEqual(seen && 'dead' in seen ? seen.dead.state : seen, 'expired', `ttlMs ${ttlMs}`);
    }
  });

  test('a token one millisecond short of its expiry is still revoked', async () => {
    const m = await h.services.machines.create(h.ctx, { name: `almost-${dialect}`, kind: 'client_secret' });
    const issued = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: m.id, name: m.name, ttlMs: 60_000 });
    h.clock.advance(59_999);
    const res = await h.app.inject({ method: 'DELETE', url: `/v1/auth/tokens/${issued.id}`, headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.equal(res.statusCode, 204, res.body);
    const seen = await h.services.tokens.lookup(issued.token);
    assert.deepEqual(seen && 'dead' in seen ? seen.dead.state : seen, 'revoked');
  });
});
