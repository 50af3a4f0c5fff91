import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { createTokenService, TOKEN_CACHE_TTL_MS } from './token-service.ts';

/**
 * SPEC §13: several nodes on one database. Another node keeps its own token lookup cache, which a
 * revocation here cannot clear; it asks the database again once its entry is TOKEN_CACHE_TTL_MS
 * old (docs/threat-model.md names that window). These tests hold the other node to the bound: a
 * token it had cached as live, revoked here, is refused there once the bound has passed.
 */
describeEachDialect('a machine token revoked on one node, looked up on another', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  /** A second node's token service: the same database and clock, its own cache. */
  const otherNode = () => createTokenService({ db: h.storage.db, dialect, clock: h.clock });

  async function machineWithToken(name: string) {
    const m = await h.services.machines.create(h.ctx, { name, kind: 'client_secret' });
    const issued = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: m.id, name: m.name, ttlMs: 3_600_000 });
    return { machine: m, issued };
  }

  async function cachedLiveOn(node: ReturnType<typeof otherNode>, token: string) {
    assert.ok(await node.authenticate(token), 'the other node admits the token while it is live');
    assert.ok(node.cached(token), 'and holds it in its cache');
  }

  describe('revocation reaches the other node within the bound', () => {
    test('one revoked token is refused here at once and on the other node once its entry expires', async () => {
      const { issued } = await machineWithToken(`revoked-elsewhere-${dialect}`);
      const b = otherNode();
      await cachedLiveOn(b, issued.token);
      await h.services.machines.revokeToken(h.ctx, issued.id);
      assert.equal(await h.services.tokens.authenticate(issued.token), null, 'this node refuses at once');
      h.clock.advance(TOKEN_CACHE_TTL_MS);
      assert.equal(b.cached(issued.token), undefined, 'the other node no longer trusts its entry');
      assert.equal(await b.authenticate(issued.token), null, 'and refuses the revoked token');
      const seen = await b.lookup(issued.token);
      assert.deepEqual(seen && 'dead' in seen ? seen.dead.state : seen, 'revoked', 'named as revoked, for the refusal\'s event');
    });

    test('disabling the identity kills every token it held on the other node too', async () => {
      const { machine, issued } = await machineWithToken(`disabled-elsewhere-${dialect}`);
      const second = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: machine.id, name: machine.name, ttlMs: 3_600_000 });
      const b = otherNode();
      for (const t of [issued, second]) await cachedLiveOn(b, t.token);
      await h.services.machines.disable(h.ctx, machine.id);
      h.clock.advance(TOKEN_CACHE_TTL_MS);
      for (const t of [issued, second]) assert.equal(await b.authenticate(t.token), null);
    });

    test('an entry refreshed just before the revocation still ends one bound after that refresh', async () => {
      const { issued } = await machineWithToken(`refreshed-elsewhere-${dialect}`);
      const b = otherNode();
      await cachedLiveOn(b, issued.token);
      // The entry expires and is read again (live) a moment before the revoke commits.
      h.clock.advance(TOKEN_CACHE_TTL_MS);
      await cachedLiveOn(b, issued.token);
      h.clock.advance(1);
      await h.services.machines.revokeToken(h.ctx, issued.id);
      h.clock.advance(TOKEN_CACHE_TTL_MS - 1);
      assert.equal(await b.authenticate(issued.token), null, 'no lookup extends an entry: the bound runs from the read');
    });
  });

  test('a token that expires is refused on the other node at its expiry, not at the end of its cache entry', async () => {
    const m = await h.services.machines.create(h.ctx, { name: `expiring-elsewhere-${dialect}`, kind: 'client_secret' });
    const issued = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: m.id, name: m.name, ttlMs: 1_000 });
    const b = otherNode();
    await cachedLiveOn(b, issued.token);
    h.clock.advance(1_000);
    assert.equal(b.cached(issued.token), undefined);
    assert.equal(await b.authenticate(issued.token), null);
  });
});
