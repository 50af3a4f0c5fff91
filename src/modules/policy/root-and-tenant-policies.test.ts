import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { SYSTEM_ACTOR } from '../shared/context.ts';
import { createCedarAuthorizer } from './cedar-authorizer.ts';
import { createPolicyEngine } from './engine.ts';

const TENANT = { type: 'tenant' } as const;

/**
 * The root token (and the server's own system actor) is the recovery credential: permitted
 * everything in every tenant by the built-ins. A tenant policy must not bind it, or a tenant admin
 * could lock out the one credential able to repair the tenant. Before, root's decisions used
 * whatever policy set another principal's request had last installed in the process, so the same
 * root request was allowed on a fresh node and refused on a warm one.
 */
describeEachDialect('the root token is decided by the built-ins alone, on every node', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a tenant policy that forbids everything cannot lock root out, however warm the node', async () => {
    const user = await userContext(h, h.ctx.tenantId, 'warms-the-cache');
    await h.services.policies.put(h.ctx, { text: '@id("lockdown") forbid (principal, action, resource);', comment: 'lock everyone out' });
    // Any tenant principal's request installs the tenant's policy set in this process.
    assert.equal(await h.services.authz.allowed(user.ctx(), 'list', TENANT), false);
    const cold = createCedarAuthorizer({ db: h.storage.db, engine: createPolicyEngine(), clock: h.clock, stepUpWindowMs: 600_000, audit: h.services.audit, identifiers: h.services.identifiers });
    assert.equal(await cold.allowed(h.ctx, 'admin', TENANT), true, 'a node that never loaded the tenant');
    assert.equal(await h.services.authz.allowed(h.ctx, 'admin', TENANT), true, 'this node, which has');
    assert.equal(await h.services.authz.allowed({ ...h.ctx, actor: SYSTEM_ACTOR }, 'rotate', TENANT, 'production'), true, 'the scheduler acts as root');
    const back = await h.services.policies.rollback(h.ctx, 0);
    assert.equal(back.text, '');
  });
});
