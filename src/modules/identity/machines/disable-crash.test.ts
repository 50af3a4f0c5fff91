import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { unrevokedTokens } from '../../../../test/helpers/identities.ts';

/**
 * A token lookup never reads its identity's row, so a disabled identity's tokens stop working only
 * because the disable revoked them. That revocation commits with the disable: a process that stops
 * right after the commit (before its second, cache-clearing pass) leaves no live token behind.
 */
describeEachDialect('disabling a machine identity, then stopping', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('the tokens are revoked by the commit itself, not by the pass after it', async () => {
    const m = await h.services.machines.create(h.ctx, { name: 'stops-after-commit', kind: 'client_secret' });
    const issue = () => h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: m.id, name: m.name, ttlMs: 3_600_000 });
    const [a, b] = [await issue(), await issue()];
    const tokens = h.services.tokens;
    const revokeAllFor = tokens.revokeAllFor;
    // The pass after the commit runs without a transaction: the process dies there.
    tokens.revokeAllFor = async (principalId, executor) => {
      if (executor === undefined) throw new Error('process stopped after the commit');
      return revokeAllFor(principalId, executor);
    };
    try {
      await assert.rejects(h.services.machines.disable(h.ctx, m.id), /process stopped after the commit/);
    } finally {
      tokens.revokeAllFor = revokeAllFor;
    }
    assert.deepEqual(await unrevokedTokens(h, m.id), []);
    for (const t of [a, b]) assert.equal(await h.services.tokens.authenticate(t.token), null);
  });
});
