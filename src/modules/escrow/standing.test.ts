import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { ESCROW_POLICY, setUpEscrow, type EscrowCast } from '../../../test/helpers/escrow.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';
import type { AccessPolicyDocument } from './access-policy.ts';
import type { TenantContext } from '../shared/context.ts';

const why = 'CHG-2207: check the key the provider shows matches ours';

/** ESCROW_POLICY with one rule replaced (or removed, with null). */
function withRule(id: string, rule: AccessPolicyDocument['rules'][number] | null): AccessPolicyDocument {
  const rules = ESCROW_POLICY.rules.flatMap((r) => (r.id !== id ? [r] : rule ? [rule] : []));
  return { groups: ESCROW_POLICY.groups, rules };
}
const prodReveal = ESCROW_POLICY.rules.find((r) => r.id === 'prod-reveal')!;

describeEachDialect('escrow standing: a new access policy supersedes what waits under changed terms; a grant holds only while its holder keeps its standing', (dialect) => {
  let h: Harness;
  let c: EscrowCast;
  const file = (ctx: TenantContext, secret: string, environment = 'production', durationSeconds = 600) =>
    h.services.escrow.requests.file(ctx, { secrets: [secret], environment, action: 'reveal', justification: why, durationSeconds });
  const approve = (ctx: TenantContext, id: string) => h.services.escrow.decisions.approve(ctx, id, { comment: 'ok' });
  const state = async (id: string) => (await h.services.escrow.requests.show(h.ctx, id)).state;
  const apply = (document: AccessPolicyDocument) => h.services.escrow.accessPolicies.put(h.ctx, { document, comment: 'change' });

  before(async () => {
    h = await createHarness(dialect);
    c = await setUpEscrow(h, ['STRIPE_TIGHT', 'STRIPE_LOOSE', 'STRIPE_KEPT', 'STRIPE_HELD']);
  });
  after(() => h.close());

  test('a stricter rule supersedes a half-approved request: the approval that would have completed it under the old quorum finds nothing pending', async () => {
    const waiting = await file(c.builder.ctx(), 'STRIPE_TIGHT');
    await approve(c.alice.ctx(), waiting.id);
    const staging = await file(c.builder.ctx(), 'STRIPE_KEPT', 'staging');
    const sentBefore = h.notifications.ofType('escrow.request-superseded').length;

    const policy = await apply(withRule('prod-reveal', { ...prodReveal, steps: [{ groups: ['leads', 'security'], approvals: 3 }] }));

    assert.equal(await state(waiting.id), 'superseded');
    assert.equal(await codeOf(approve(c.bob.ctx(), waiting.id)), 'REQUEST_NOT_PENDING', 'two approvals no longer complete it');
    assert.equal(await codeOf(h.services.values.read(c.builder.ctx(), 'STRIPE_TIGHT', 'production')), 'APPROVAL_REQUIRED', 'and no grant came of it');
    assert.equal(await state(staging.id), 'pending', 'a request under an unchanged rule still waits');
    const events = (await h.services.audit.readAfter(0, 100_000)).filter((e) => e.action === 'access-request.supersede' && e.resource.id === waiting.id);
    assert.equal(events.length, 1);
    assert.equal(events[0]!.context.policyVersion, String(policy.version));
    assert.match(events[0]!.context.why!, /rule "prod-reveal" changed/);
    const told = h.notifications.ofType('escrow.request-superseded').slice(sentBefore);
    assert.deepEqual(told.map((n) => n.resource.id), [waiting.id], 'the requester and the approvers hear of it once');
    assert.ok(told[0]!.recipients.some((r) => r.kind === 'user' && r.id === c.builder.id));

    // Filed again under the new terms, three approvals complete it.
    const again = await file(c.builder.ctx(), 'STRIPE_TIGHT');
    for (const p of [c.alice, c.bob]) await approve(p.ctx(), again.id);
    assert.equal(await state(again.id), 'pending');
    await approve(c.carol.ctx(), again.id);
    assert.equal(await state(again.id), 'approved');
    await apply(ESCROW_POLICY);
  });

  test('a looser or removed rule supersedes too; a change of group members alone, or of break-glass users, does not', async () => {
    const loose = await file(c.builder.ctx(), 'STRIPE_LOOSE');
    const kept = await file(c.builder.ctx(), 'STRIPE_KEPT');
    await apply({ ...ESCROW_POLICY, groups: { ...ESCROW_POLICY.groups, leads: ['alice', 'bob', 'carol'] } });
    await apply(withRule('prod-reveal', { ...prodReveal, breakGlass: { users: ['oncall', 'alice'] } }));
    assert.deepEqual([await state(loose.id), await state(kept.id)], ['pending', 'pending'], 'membership and break-glass users are read when they are used');

    await apply(withRule('prod-reveal', { ...prodReveal, maxDurationSeconds: 300 }));
    assert.deepEqual([await state(loose.id), await state(kept.id)], ['superseded', 'superseded'], 'a shorter maximum than the 600 s they asked for');
    const gone = await file(c.builder.ctx(), 'STRIPE_LOOSE', 'production', 300);
    await apply(withRule('prod-reveal', null));
    assert.equal(await state(gone.id), 'superseded', 'no rule covers it any more');
    assert.equal(await codeOf(h.services.escrow.requests.cancel(c.builder.ctx(), gone.id)), 'REQUEST_NOT_PENDING');
    await apply(ESCROW_POLICY);
  });

  test('the last approval racing a stricter policy: either it is approved under the old terms or superseded, never both, never a grant of a superseded request', async () => {
    const stricter = withRule('prod-reveal', { ...prodReveal, steps: [{ groups: ['leads', 'security'], approvals: 3 }] });
    for (let round = 0; round < 6; round++) {
      const req = await file(c.builder.ctx(), 'STRIPE_KEPT');
      await approve(c.alice.ctx(), req.id);
      const [decided] = await Promise.allSettled([approve(c.bob.ctx(), req.id), apply(stricter)]);
      const final = await state(req.id);
      const grants = await h.storage.db.selectFrom('access_grants').select('id').where('request_id', '=', req.id).execute();
      const superseding = (await h.services.audit.readAfter(0, 100_000)).filter((e) => e.action === 'access-request.supersede' && e.resource.id === req.id);
      if (final === 'approved') {
        assert.deepEqual([decided.status, grants.length, superseding.length], ['fulfilled', 1, 0], `round ${round}: approved first`);
        await h.services.escrow.requests.revoke(h.ctx, req.id);
      } else {
        assert.equal(final, 'superseded', `round ${round}`);
        assert.equal(decided.status === 'rejected' && (decided.reason as { code: string }).code, 'REQUEST_NOT_PENDING', `round ${round}: the approval found it superseded`);
        assert.deepEqual([grants.length, superseding.length], [0, 1], `round ${round}`);
      }
      await apply(ESCROW_POLICY);
    }
  });

  test('an approved grant stops allowing once its holder loses the standing to list the secret, and allows again if it is given back', async () => {
    const req = await file(c.builder.ctx(), 'STRIPE_HELD');
    await approve(c.alice.ctx(), req.id);
    await approve(c.bob.ctx(), req.id);
    const reveal = () => codeOf(h.services.values.read(c.builder.ctx(), 'STRIPE_HELD', 'production'));
    assert.equal(await reveal(), 'ok');

    const roles = (await h.services.grants.list(h.ctx, { principalId: c.builder.id })).filter((g) => g.role === 'builder');
    assert.equal(roles.length, 1);
    await h.services.grants.revoke(h.ctx, roles[0]!.id);
    assert.equal(await reveal(), 'APPROVAL_REQUIRED', 'the escrow grant alone is not a standing: it is as if there were none');
    assert.equal((await h.services.escrow.requests.show(h.ctx, req.id)).grant.state, 'active', 'the grant itself still runs its course');

    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: c.builder.id, role: 'viewer' });
    assert.equal(await reveal(), 'ok', 'a viewer may list it: the grant allows the reveal that was approved');
  });
});
