import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { setUpEscrow, type EscrowCast } from '../../../test/helpers/escrow.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

/**
 * The live grant of an approved access request holds only while its holder keeps the standing the
 * request needed (being allowed to list the secret): the authorizer asks that afresh on each use.
 */
describeEachDialect('an escrow grant and its holder\'s roles', (dialect) => {
  let h: Harness;
  let c: EscrowCast;
  before(async () => {
    h = await createHarness(dialect);
    c = await setUpEscrow(h, ['STRIPE_KEY']);
  });
  after(() => h.close());

  test('a holder whose roles are revoked loses the approved grant too', async () => {
    const reveal = () => codeOf(h.services.values.read(c.builder.ctx(), 'STRIPE_KEY', 'production'));
    const req = await h.services.escrow.requests.file(c.builder.ctx(), {
      secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: 'INC-1: check the key the payout job uses',
    });
    await h.services.escrow.decisions.approve(c.alice.ctx(), req.id, { comment: 'ok' });
    await h.services.escrow.decisions.approve(c.bob.ctx(), req.id, { comment: 'ok' });
    assert.equal(await reveal(), 'ok');
    for (const g of await h.services.grants.list(h.ctx, { principalId: c.builder.id })) await h.services.grants.revoke(h.ctx, g.id);
    assert.equal((await h.services.escrow.requests.show(h.ctx, req.id)).grant.state, 'active', 'the grant itself is untouched');
    assert.notEqual(await reveal(), 'ok');
  });
});
