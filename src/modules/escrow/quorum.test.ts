import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { ESCROW_POLICY, setUpEscrow, type EscrowCast } from '../../../test/helpers/escrow.ts';

const why = 'CHG-2211: rotate the payout webhook after the vendor migration';

/**
 * A quorum is of people who could approve now: an approval whose approver has since lost the
 * standing to give it (out of the group, disabled, no longer holding `approve`) stops counting.
 */
describeEachDialect('escrow: the quorum counts only approvers who still may approve', (dialect) => {
  const CASES: Array<{ what: string; lapse: (h: Harness, c: EscrowCast) => Promise<void> }> = [
    {
      what: 'taken out of the approver groups',
      lapse: async (h) => {
        const leads = ESCROW_POLICY.groups.leads!.filter((u) => u !== 'alice');
        await h.services.escrow.accessPolicies.put(h.ctx, { document: { ...ESCROW_POLICY, groups: { ...ESCROW_POLICY.groups, leads } }, comment: 'alice moved teams' });
      },
    },
    { what: 'disabled', lapse: async (h, c) => void (await h.services.users.disable(h.ctx, c.alice.id)) },
    {
      what: 'stripped of the approve permission',
      lapse: async (h, c) => {
        for (const g of await h.services.grants.list(h.ctx, { principalId: c.alice.id })) await h.services.grants.revoke(h.ctx, g.id);
      },
    },
  ];

  for (const { what, lapse } of CASES) {
    test(`an approver ${what} after approving no longer counts towards the quorum`, async () => {
      const h = await createHarness(dialect);
      try {
        const c = await setUpEscrow(h, ['STRIPE_KEY']);
        const req = await h.services.escrow.requests.file(c.builder.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: why });
        assert.equal((await h.services.escrow.decisions.approve(c.alice.ctx(), req.id, { comment: 'ok' })).state, 'pending', 'one of two');
        await lapse(h, c);
        const second = await h.services.escrow.decisions.approve(c.bob.ctx(), req.id, { comment: 'ok' });
        assert.equal(second.state, 'pending', 'alice\'s approval no longer makes the second of two');
        assert.equal(second.grant.state, 'none');
        assert.equal(second.waitingForStep, 1);
        assert.deepEqual(Object.fromEntries(second.approvals.map((a) => [a.approverId, a.counts])), { [c.alice.id]: false, [c.bob.id]: true });
        const queue = await h.services.escrow.requests.list(c.carol.ctx(), { scope: 'queue' });
        assert.ok(queue.items.some((r) => r.id === req.id), 'it is in the queue of the approvers who may complete it');
        const third = await h.services.escrow.decisions.approve(c.carol.ctx(), req.id, { comment: 'ok' });
        assert.deepEqual([third.state, third.grant.state], ['approved', 'active'], 'two approvers who may approve now');
      } finally {
        await h.close();
      }
    });
  }
  test('a request whose quorum is whole again (an approver who lapsed counts once more) can still be decided, and is in the queue', async () => {
    const h = await createHarness(dialect);
    try {
      const c = await setUpEscrow(h, ['STRIPE_KEY']);
      const withLeads = (leads: string[]) => ({ ...ESCROW_POLICY, groups: { ...ESCROW_POLICY.groups, leads } });
      const req = await h.services.escrow.requests.file(c.builder.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: why });
      await h.services.escrow.decisions.approve(c.alice.ctx(), req.id, { comment: 'ok' });
      await h.services.escrow.accessPolicies.put(h.ctx, { document: withLeads(['bob', 'carol', 'frank']), comment: 'alice on leave' });
      assert.equal((await h.services.escrow.decisions.approve(c.bob.ctx(), req.id, { comment: 'ok' })).state, 'pending', 'alice does not count');
      await h.services.escrow.accessPolicies.put(h.ctx, { document: ESCROW_POLICY, comment: 'alice is back' });
      const shown = await h.services.escrow.requests.show(c.builder.ctx(), req.id);
      assert.deepEqual([shown.state, shown.approvals.map((a) => a.counts)], ['pending', [true, true]], 'both approvals count again');
      assert.equal(shown.waitingForStep, 1, 'it waits for its last step, which someone in it can complete');
      assert.ok((await h.services.escrow.requests.list(c.carol.ctx(), { scope: 'queue' })).items.some((r) => r.id === req.id), 'in the queue of those who may complete it');
      const done = await h.services.escrow.decisions.approve(c.carol.ctx(), req.id, { comment: 'ok' });
      assert.deepEqual([done.state, done.grant.state], ['approved', 'active']);
    } finally {
      await h.close();
    }
  });

  test('an approver\'s queue holds what waits for them however many newer requests they filed themselves or may not decide', async () => {
    const h = await createHarness(dialect);
    try {
      const c = await setUpEscrow(h, ['STRIPE_KEY', 'VAULT_KEY']);
      const staging = (ctx: ReturnType<EscrowCast['alice']['ctx']>) => h.services.escrow.requests.file(ctx, { secrets: ['STRIPE_KEY'], environment: 'staging', action: 'reveal', justification: why });
      const waiting = await staging(c.builder.ctx());
      h.clock.advance(1000);
      // Newer pending requests alice cannot decide: her own, and one waiting for the security step she is not in.
      for (let i = 0; i < 3; i++) await staging(c.alice.ctx());
      const vault = await h.services.escrow.requests.file(c.builder.ctx(), { secrets: ['VAULT_KEY'], environment: 'production', action: 'reveal', justification: why });
      await h.services.escrow.decisions.approve(c.bob.ctx(), vault.id, { comment: 'ok' });
      const queue = await h.services.escrow.requests.list(c.alice.ctx(), { scope: 'queue', limit: 2 });
      assert.deepEqual(queue.items.map((r) => r.id), [waiting.id]);
    } finally {
      await h.close();
    }
  });

  test('an approval is judged from where its approver gave it, not from where whoever looks at the request is', async () => {
    const h = await createHarness(dialect);
    try {
      const c = await setUpEscrow(h, ['STRIPE_KEY']);
      await h.services.policies.put(h.ctx, {
        text: '@id("office-approvals")\nforbid (principal, action == Keyhold::Action::"approve", resource) unless { context.sourceIp.isInRange(ip("10.0.0.0/8")) };',
        comment: 'approvals from the office network only',
      });
      const from = (ctx: ReturnType<EscrowCast['alice']['ctx']>, sourceIp: string) => ({ ...ctx, sourceIp });
      const req = await h.services.escrow.requests.file(c.builder.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: why });
      await h.services.escrow.decisions.approve(from(c.alice.ctx(), '10.1.2.3'), req.id, { comment: 'ok, from the office' });
      for (const [who, ctx] of [['the requester at home', from(c.builder.ctx(), '203.0.113.7')], ['an admin on the VPN', from(h.ctx, '10.9.9.9')]] as const) {
        const shown = await h.services.escrow.requests.show(ctx, req.id);
        assert.deepEqual(shown.approvals.map((a) => a.counts), [true], `${who} sees alice's approval counting`);
      }
      const queue = await h.services.escrow.requests.list(from(c.carol.ctx(), '198.51.100.4'), { scope: 'queue' });
      assert.ok(queue.items.some((r) => r.id === req.id && r.approvals[0]!.counts), 'carol looking from outside sees the request waiting for one more approval');
      const done = await h.services.escrow.decisions.approve(from(c.bob.ctx(), '10.4.5.6'), req.id, { comment: 'ok' });
      assert.deepEqual([done.state, done.grant.state], ['approved', 'active']);
    } finally {
      await h.close();
    }
  });

  test('a pending request whose secret was deleted after an approval still shows and lists; the approval does not count until it is restored', async () => {
    const h = await createHarness(dialect);
    try {
      const c = await setUpEscrow(h, ['STRIPE_KEY', 'STRIPE_OTHER']);
      const req = await h.services.escrow.requests.file(c.builder.ctx(), { secrets: ['STRIPE_KEY', 'STRIPE_OTHER'], environment: 'production', action: 'reveal', justification: why });
      await h.services.escrow.decisions.approve(c.alice.ctx(), req.id, { comment: 'ok' });
      await h.services.secrets.remove(h.ctx, 'STRIPE_OTHER');
      // Every approver's queue and every admin's list hold this request: one deleted secret must not break them.
      const queue = await h.services.escrow.requests.list(c.carol.ctx(), { scope: 'queue' });
      assert.ok(queue.items.some((r) => r.id === req.id), 'still in the queue of those who could complete it');
      assert.ok((await h.services.escrow.requests.list(h.ctx, { scope: 'all' })).items.some((r) => r.id === req.id));
      const shown = await h.services.escrow.requests.show(c.builder.ctx(), req.id);
      assert.deepEqual(shown.approvals.map((a) => a.counts), [false], 'nobody can approve a deleted secret');
      await h.services.secrets.restore(h.ctx, 'STRIPE_OTHER');
      assert.deepEqual((await h.services.escrow.requests.show(c.builder.ctx(), req.id)).approvals.map((a) => a.counts), [true], 'counts again once restored');
    } finally {
      await h.close();
    }
  });
});
