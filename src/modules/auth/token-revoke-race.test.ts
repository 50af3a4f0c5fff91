import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { KyselyPlugin } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { createTokenService } from './token-service.ts';

/**
 * A lookup reads a token's row; a revoke commits and forgets the token while that read's answer is
 * still on its way. The lookup may answer "live" (it raced the revoke) but must not cache it: the
 * revoked token would then authenticate from the cache for TOKEN_CACHE_TTL_MS.
 */
describeEachDialect('a token revoked while its lookup is in flight', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('is not cached as live, and the next request is refused', async () => {
    let hold: Promise<void> | null = null;
    let release!: () => void;
    let arrived!: () => void;
    const held = new Promise<void>((r) => (arrived = r));
    // Delays the answer of any query while `hold` is set: the SELECT has run, its rows arrive late.
    const plugin: KyselyPlugin = {
      transformQuery: (a) => a.node,
      transformResult: async (a) => {
        if (hold) {
          arrived();
          await hold;
        }
        return a.result;
      },
    };
    const tokens = createTokenService({ db: h.storage.db.withPlugin(plugin), dialect, clock: h.clock });
    const m = await h.services.machines.create(h.ctx, { name: `race-${dialect}`, kind: 'client_secret' });
    const issued = await tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: m.id, name: m.name, ttlMs: 900_000 });
    hold = new Promise<void>((r) => (release = r));
    const inFlight = tokens.lookup(issued.token);
    await held; // the lookup's SELECT has read the row (live); its answer is on its way
    hold = null;
    await tokens.revoke(issued.id, h.ctx.tenantId, h.storage.db);
    tokens.forgetToken(issued.id);
    release();
    const read = await inFlight;
    assert.ok(read && 'principal' in read, 'the in-flight lookup itself read the row while it was live');
    assert.equal(tokens.cached(issued.token), undefined, 'a revoked token must not be served from the cache');
    assert.equal(await tokens.authenticate(issued.token), null);
    // Without any forget meanwhile, a lookup still caches (the cache keeps working).
    const other = await tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: m.id, name: m.name, ttlMs: 900_000 });
    await tokens.lookup(other.token);
    assert.ok(tokens.cached(other.token));
  });
});
