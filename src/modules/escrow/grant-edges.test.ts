import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { setUpEscrow, type EscrowCast } from '../../../test/helpers/escrow.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';
import type { TenantContext } from '../shared/context.ts';

const why = 'INC-5150: compare the live key with the one the provider shows';

describeEachDialect('escrow edges: the expiry instant, deny racing approve, grants bound to the secret, other tenants\' reviews', (dialect) => {
  let h: Harness;
  let c: EscrowCast;
  const use = (ctx: TenantContext, name: string) => codeOf(h.services.values.read(ctx, name, 'production'));
  const file = (ctx: TenantContext, secrets: string[], action: string, durationSeconds: number) =>
    h.services.escrow.requests.file(ctx, { secrets, environment: 'production', action, justification: why, durationSeconds });
  const approve = (ctx: TenantContext, id: string) => h.services.escrow.decisions.approve(ctx, id, { comment: 'ok' });

  before(async () => {
    h = await createHarness(dialect);
    c = await setUpEscrow(h, ['STRIPE_EDGE', 'STRIPE_RACE', 'STRIPE_GONE', 'PAY_EDGE']);
  });
  after(() => h.close());

  test('a grant ends at exactly its expiry instant: allowed 1 ms before, refused at it, for a reveal and for a machine\'s remembered use', async () => {
    const byMachine = await file(c.runner.ctx(), ['PAY_EDGE'], 'use', 600);
    const machineEnd = Date.parse((await approve(c.bob.ctx(), byMachine.id)).grant.expiresAt!);
    const byPerson = await file(c.builder.ctx(), ['STRIPE_EDGE'], 'reveal', 600);
    await approve(c.alice.ctx(), byPerson.id);
    const personEnd = Date.parse((await approve(c.bob.ctx(), byPerson.id)).grant.expiresAt!);
    assert.equal(machineEnd, personEnd, 'both approved at the same instant of the fake clock');

    h.clock.set(machineEnd - 1);
    // A machine has no factor age, so its second read is answered from the authorizer's remembered allows.
    assert.equal(await use(c.runner.ctx(), 'PAY_EDGE'), 'ok');
    assert.equal(await use(c.runner.ctx(), 'PAY_EDGE'), 'ok');
    assert.equal(await use(c.builder.ctx(), 'STRIPE_EDGE'), 'ok');
    h.clock.set(machineEnd);
    assert.equal(await use(c.runner.ctx(), 'PAY_EDGE'), 'APPROVAL_REQUIRED', 'a remembered allow ends with the grant');
    assert.equal(await use(c.builder.ctx(), 'STRIPE_EDGE'), 'APPROVAL_REQUIRED');
    assert.deepEqual([(await h.services.escrow.requests.show(c.builder.ctx(), byPerson.id)).grant.state, (await h.services.escrow.requests.show(c.alice.ctx(), byMachine.id)).grant.state], ['expired', 'expired']);
    assert.equal(await codeOf(h.services.escrow.requests.revoke(c.builder.ctx(), byPerson.id)), 'REQUEST_NOT_ACTIVE', 'nothing left to revoke at the instant');
  });

  test('a denial and an approval racing for the last approval: exactly one decides, and the loser leaves nothing behind', async () => {
    for (let round = 0; round < 6; round++) {
      const req = await file(c.builder.ctx(), ['STRIPE_RACE'], 'reveal', 600);
      await approve(c.alice.ctx(), req.id);
      const [ok, no] = await Promise.allSettled([approve(c.bob.ctx(), req.id), h.services.escrow.decisions.deny(c.carol.ctx(), req.id, { comment: 'not during the freeze' })]);
      const won = [ok, no].filter((r) => r.status === 'fulfilled');
      const lost = [ok, no].filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as { code: string }).code);
      assert.deepEqual([won.length, lost], [1, ['REQUEST_NOT_PENDING']], `round ${round}`);
      const shown = await h.services.escrow.requests.show(c.builder.ctx(), req.id);
      const grants = await h.storage.db.selectFrom('access_grants').select('id').where('request_id', '=', req.id).execute();
      const decisions = shown.approvals.map((a) => `${a.approverId === c.alice.id ? 'alice' : a.approverId === c.bob.id ? 'bob' : 'carol'}:${a.decision}`).sort();
      if (shown.state === 'approved') {
        assert.deepEqual([grants.length, decisions, shown.grant.state], [1, ['alice:approve', 'bob:approve'], 'active'], `round ${round}: approved, no denial recorded`);
        await h.services.escrow.requests.revoke(c.builder.ctx(), req.id);
      } else {
        assert.deepEqual([shown.state, grants.length, decisions, shown.grant.state], ['denied', 0, ['alice:approve', 'carol:deny'], 'none'], `round ${round}: denied, no grant`);
      }
      const finals = (await h.services.audit.readAfter(0, 100_000)).filter((e) => (e.action === 'access-request.approved' || e.action === 'access-request.denied') && e.resource.id === req.id);
      assert.deepEqual(finals.map((e) => e.action), [`access-request.${shown.state}`], `round ${round}: one final event`);
    }
  });

  test('a grant is bound to the secret, not its name: destroyed and created again under the same name, the new secret needs its own request', async () => {
    const req = await file(c.builder.ctx(), ['STRIPE_GONE'], 'reveal', 3600);
    await approve(c.alice.ctx(), req.id);
    await approve(c.bob.ctx(), req.id);
    assert.equal(await use(c.builder.ctx(), 'STRIPE_GONE'), 'ok');
    await h.services.secrets.remove(h.ctx, 'STRIPE_GONE');
    await h.services.secrets.destroy(h.ctx, 'STRIPE_GONE');
    await h.services.secrets.create(h.ctx, { name: 'STRIPE_GONE', owner: 'payments', classification: 'confidential' });
    await h.services.values.write(h.ctx, 'STRIPE_GONE', 'production', { value: 'stripe_gone-production-reborn-value' });
    assert.equal(await use(c.builder.ctx(), 'STRIPE_GONE'), 'APPROVAL_REQUIRED', 'the grant named the old secret\'s id');
    assert.equal((await h.services.escrow.requests.show(c.builder.ctx(), req.id)).grant.state, 'active', 'the old grant itself still runs its course');
  });

  test('a justification counts its visible characters: ten of them with a joiner among them is enough, fewer padded with invisible ones is not', async () => {
    const ask = (justification: string) => codeOf(h.services.escrow.requests.file(c.builder.ctx(), { secrets: ['STRIPE_EDGE'], environment: 'production', action: 'reveal', justification }));
    assert.equal(await ask('INC-77\u200d: fix'), 'ok', 'a zero-width joiner (emoji, Indic and Persian text need them) is kept');
    assert.equal(await ask(`INC-7${'\u200b'.repeat(10)}`), 'VALIDATION_FAILED');
    assert.equal(await ask(`INC-7${' '.repeat(10)}.`), 'VALIDATION_FAILED', 'spaces pad it to length without saying anything');
  });

  test('over HTTP: another tenant asking for a break-glass review by id gets 404 REVIEW_NOT_FOUND, to read or to complete it', async () => {
    const taken = await h.services.escrow.breakGlass.breakGlass(c.oncall.ctx(), { secrets: ['STRIPE_EDGE'], environment: 'production', action: 'reveal', justification: why });
    const reviewId = taken.review!.id;
    const inject = (method: 'GET' | 'POST', url: string, tenant?: string, payload?: object) => h.app.inject({
      method, url, headers: { authorization: `Bearer ${h.rootToken}`, ...(tenant ? { 'x-keyhold-tenant': tenant } : {}) }, ...(payload ? { payload } : {}),
    });
    assert.equal((await inject('GET', `/v1/reviews/${reviewId}`)).statusCode, 200, 'its own tenant sees it');
    await h.services.tenants.create('review-elsewhere');
    for (const [method, payload] of [['GET', undefined], ['POST', { outcome: 'justified', comment: 'looks fine from here' }]] as const) {
      const res = await inject(method, `/v1/reviews/${reviewId}`, 'review-elsewhere', payload);
      assert.deepEqual([res.statusCode, res.json().error.code], [404, 'REVIEW_NOT_FOUND'], method);
    }
    assert.equal((await h.services.escrow.breakGlass.showReview(c.alice.ctx(), reviewId)).state, 'open', 'still open');
  });
});
