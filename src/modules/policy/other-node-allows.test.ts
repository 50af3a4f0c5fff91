import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { machineContext } from '../../../test/helpers/identities.ts';
import { frozenResource } from '../secrets/read-views.ts';
import { createCedarAuthorizer } from './cedar-authorizer.ts';
import { createPolicyEngine } from './engine.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';


/**
 * A node learns of another node's grant change only through the tenant's generation, which it
 * re-reads after GENERATION_TTL_MS (2 s). Its remembered allows are bound to that re-read too: they
 * may not outlive a revoke on another node until the hour ends.
 */
describeEachDialect('an allow remembered on one node and a revoke on another', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'ELSEWHERE', owner: 'ops' });
  });
  after(() => h.close());

  test('the allow ends once the other node\'s generation is re-read', async () => {
    const otherNode = createCedarAuthorizer({ db: h.storage.db, engine: createPolicyEngine(), clock: h.clock, stepUpWindowMs: 600_000, audit: h.services.audit, identifiers: h.services.identifiers });
    const { grant, ctx: actingAs } = await machineContext(h, 'two-nodes', { role: 'builder' });
    const ctx = actingAs();
    // The read path hands the authorizer one frozen view of the row: only such views are remembered.
    const secret = frozenResource(await h.services.secrets.load(h.ctx, 'ELSEWHERE'));
    assert.equal(await codeOf(otherNode.require(ctx, 'use', secret, 'production')), 'ok');
    assert.ok(otherNode.cachedAllow?.(ctx, 'use', secret, 'production'), 'remembered on the other node');
    await h.services.grants.revoke(h.ctx, grant.id); // on this node: the other node's cache is not told
    h.clock.advance(2_001);
    assert.equal(otherNode.cachedAllow?.(ctx, 'use', secret, 'production'), undefined);
    assert.equal(await codeOf(otherNode.require(ctx, 'use', secret, 'production')), 'FORBIDDEN');
  });
});
