import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { setUpEscrow, type EscrowCast } from '../../../test/helpers/escrow.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';
import type { TenantContext } from '../shared/context.ts';

const why = 'INC-4711: reconcile the payout batch that failed last night';

describeEachDialect('escrow: requests, approvals, separation of duties, expiring grants', (dialect) => {
  let h: Harness;
  let c: EscrowCast;
  const reveal = (ctx: TenantContext, name: string, env: string) => codeOf(h.services.values.read(ctx, name, env));
  const file = (ctx: TenantContext, secrets: string[], environment: string, action = 'reveal', durationSeconds?: number) =>
    h.services.escrow.requests.file(ctx, { secrets, environment, action, justification: why, ...(durationSeconds ? { durationSeconds } : {}) });
  const approve = (ctx: TenantContext, id: string, durationSeconds?: number) =>
    h.services.escrow.decisions.approve(ctx, id, { comment: 'ok', ...(durationSeconds ? { durationSeconds } : {}) });

  before(async () => {
    h = await createHarness(dialect);
    c = await setUpEscrow(h, ['STRIPE_KEY', 'STRIPE_WEBHOOK', 'STRIPE_REVOKED', 'VAULT_ROOT', 'PAY_TOKEN', 'ROT_KEY', 'ROT_OWNED']);
  });
  after(() => h.close());

  test('a production reveal needs an approved request; it works in the window and is denied one second after expiry', async () => {
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_KEY', 'production'), 'APPROVAL_REQUIRED');
    assert.equal(await reveal(c.revealer.ctx(), 'STRIPE_KEY', 'production'), 'APPROVAL_REQUIRED', 'a revealer role is not enough where approval is required');
    const req = await file(c.builder.ctx(), ['STRIPE_KEY'], 'production', 'reveal', 600);
    assert.equal(req.state, 'pending');
    assert.equal((await approve(c.alice.ctx(), req.id)).state, 'pending', 'one of two approvals');
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_KEY', 'production'), 'APPROVAL_REQUIRED');
    const done = await approve(c.bob.ctx(), req.id);
    assert.equal(done.state, 'approved');
    assert.equal(done.grant.state, 'active');
    const expiresAt = Date.parse(done.grant.expiresAt!);
    assert.equal(expiresAt, h.clock.now() + 600_000);

    const value = await h.services.values.read(c.builder.ctx(), 'STRIPE_KEY', 'production');
    assert.equal(value.value, 'stripe_key-production-v2-value');
    const events = await h.services.audit.readAfter(0, 100_000);
    const read = events.filter((e) => e.action === 'secret.reveal' && e.actor.id === c.builder.id).at(-1)!;
    assert.equal(read.context.accessRequestId, req.id, 'a reveal under a grant names its request');
    assert.equal(await reveal(c.builder.stale(), 'STRIPE_KEY', 'production'), 'STEP_UP_REQUIRED', 'the grant does not lift step-up');
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_WEBHOOK', 'production'), 'APPROVAL_REQUIRED', 'exactly the secret requested');

    h.clock.set(expiresAt - 1000);
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_KEY', 'production'), 'ok', 'one second before the end');
    h.clock.set(expiresAt + 1000);
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_KEY', 'production'), 'APPROVAL_REQUIRED', 'one second after the end');
    assert.equal((await h.services.escrow.requests.show(c.builder.ctx(), req.id)).grant.state, 'expired');
    assert.ok((await h.services.audit.readAfter(0, 100_000)).some((e) => e.action === 'access-grant.expire' && e.resource.id === req.id), 'the expiry is recorded when seen');
    const told = h.notifications.ofType('escrow.grant-expired').filter((n) => n.resource.id === req.id);
    assert.equal(told.length, 1, 'the requester hears of the expiry once');
    assert.ok(told[0]!.recipients.some((r) => r.id === c.builder.id));
  });

  test('a grant for staging does not reveal production, nor another action', async () => {
    const req = await file(c.builder.ctx(), ['STRIPE_WEBHOOK'], 'staging');
    await approve(c.alice.ctx(), req.id);
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_WEBHOOK', 'staging'), 'ok');
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_WEBHOOK', 'production'), 'APPROVAL_REQUIRED');
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_KEY', 'staging'), 'APPROVAL_REQUIRED');
    assert.equal(await codeOf(h.services.values.write(c.builder.ctx(), 'STRIPE_WEBHOOK', 'staging', { value: 'overwritten-by-builder' })), 'FORBIDDEN');
  });

  test('the requester cannot approve their own request, directly or through a machine identity they own', async () => {
    const own = await file(c.alice.ctx(), ['STRIPE_KEY'], 'production');
    assert.equal(await codeOf(approve(c.alice.ctx(), own.id)), 'SELF_APPROVAL');

    assert.equal(await codeOf(h.services.values.read(c.runner.ctx(), 'PAY_TOKEN', 'production')), 'APPROVAL_REQUIRED', 'use by a new identity needs approval');
    const byMachine = await file(c.runner.ctx(), ['PAY_TOKEN'], 'production', 'use');
    assert.equal(byMachine.requester.ownerId, c.alice.id, 'the owner is recorded when the machine files');
    assert.equal(await codeOf(approve(c.alice.ctx(), byMachine.id)), 'SELF_APPROVAL');
    assert.equal((await h.services.escrow.requests.show(c.alice.ctx(), byMachine.id)).approvals.length, 0, 'nothing was recorded');
    assert.equal((await approve(c.bob.ctx(), byMachine.id)).state, 'approved');
    assert.equal(await codeOf(h.services.values.read(c.runner.ctx(), 'PAY_TOKEN', 'production')), 'ok');
    const denied = (await h.services.audit.readAfter(0, 100_000)).filter((e) => e.reason === 'SELF_APPROVAL');
    assert.equal(denied.length, 2, 'each refusal is audited');
  });

  test('one person in two approver groups counts once', async () => {
    const req = await file(c.builder.ctx(), ['STRIPE_KEY'], 'production');
    assert.equal((await approve(c.carol.ctx(), req.id)).state, 'pending');
    assert.equal(await codeOf(approve(c.carol.ctx(), req.id)), 'ALREADY_DECIDED');
    const still = await h.services.escrow.requests.show(c.builder.ctx(), req.id);
    assert.deepEqual([still.state, still.approvals.length], ['pending', 1]);
    assert.equal((await approve(c.dave.ctx(), req.id)).state, 'approved');
  });

  test('two approvers racing for the one missing approval: the grant is created exactly once', async () => {
    for (let round = 0; round < 4; round++) {
      const req = await file(c.builder.ctx(), ['STRIPE_KEY', 'STRIPE_WEBHOOK'], 'production');
      await approve(c.alice.ctx(), req.id);
      const results = await Promise.allSettled([approve(c.bob.ctx(), req.id), approve(c.carol.ctx(), req.id), approve(c.dave.ctx(), req.id)]);
      const won = results.filter((r) => r.status === 'fulfilled');
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => (r.reason as { code: string }).code);
      assert.equal(won.length, 1, `round ${round}: one approval completes the request (${lost.join(',')})`);
      assert.deepEqual(lost, ['REQUEST_NOT_PENDING', 'REQUEST_NOT_PENDING']);
      const grants = await h.storage.db.selectFrom('access_grants').select('secret_name').where('request_id', '=', req.id).execute();
      assert.deepEqual(grants.map((g) => g.secret_name).sort(), ['STRIPE_KEY', 'STRIPE_WEBHOOK'], 'one grant per secret, once');
      const approvals = await h.storage.db.selectFrom('access_approvals').select('approver_id').where('request_id', '=', req.id).execute();
      assert.equal(approvals.length, 2, 'the losers left no approval behind');
      const approvedEvents = (await h.services.audit.readAfter(0, 100_000)).filter((e) => e.action === 'access-request.approved' && e.resource.id === req.id);
      assert.equal(approvedEvents.length, 1);
    }
  });

  test('a denied or an expired request cannot be approved afterwards', async () => {
    const denied = await file(c.builder.ctx(), ['STRIPE_KEY'], 'production');
    assert.equal(await codeOf(h.services.escrow.decisions.deny(c.alice.ctx(), denied.id, { comment: '\u200b'.repeat(5) })), 'VALIDATION_FAILED', 'a denial says why in text a reader can see');
    assert.equal((await h.services.escrow.decisions.deny(c.alice.ctx(), denied.id, { comment: 'use the read replica instead' })).state, 'denied');
    assert.equal(await codeOf(approve(c.bob.ctx(), denied.id)), 'REQUEST_NOT_PENDING');
    assert.equal(await codeOf(h.services.escrow.decisions.deny(c.alice.ctx(), denied.id, { comment: 'again' })), 'REQUEST_NOT_PENDING');

    const unanswered = await file(c.builder.ctx(), ['STRIPE_KEY'], 'production');
    await approve(c.alice.ctx(), unanswered.id);
    h.clock.advance(3600_000);
    assert.equal(await codeOf(approve(c.bob.ctx(), unanswered.id)), 'REQUEST_EXPIRED');
    const shown = await h.services.escrow.requests.show(c.builder.ctx(), unanswered.id);
    assert.deepEqual([shown.state, shown.grant.state], ['expired', 'none']);
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_KEY', 'production'), 'APPROVAL_REQUIRED');
    assert.equal(await codeOf(h.services.escrow.requests.cancel(c.builder.ctx(), unanswered.id)), 'REQUEST_EXPIRED');
    assert.ok(h.notifications.ofType('escrow.request-expired').some((n) => n.resource.id === unanswered.id && n.recipients.some((r) => r.id === c.builder.id)));
  });

  test('sequential steps: security cannot approve before the leads, and leads cannot fill the security step', async () => {
    const req = await file(c.builder.ctx(), ['VAULT_ROOT'], 'production');
    assert.equal(await codeOf(approve(c.dave.ctx(), req.id)), 'NOT_AN_APPROVER');
    assert.equal((await approve(c.alice.ctx(), req.id)).waitingForStep, 2);
    assert.equal(await codeOf(approve(c.bob.ctx(), req.id)), 'NOT_AN_APPROVER');
    assert.equal((await approve(c.dave.ctx(), req.id)).state, 'approved');
  });

  test('approving needs a fresh second factor, the approve permission and membership of the step', async () => {
    const req = await file(c.builder.ctx(), ['STRIPE_KEY'], 'production');
    assert.equal(await codeOf(approve(c.alice.stale(), req.id)), 'STEP_UP_REQUIRED');
    assert.equal(await codeOf(approve(c.frank.ctx(), req.id)), 'FORBIDDEN', 'in the group but without the approve permission');
    assert.equal(await codeOf(approve(c.revealer.ctx(), req.id)), 'REQUEST_NOT_FOUND', 'outside every group, the request is not even visible');
    assert.equal(await codeOf(approve(c.runner.ctx(), req.id)), 'REQUEST_NOT_FOUND', 'a machine is in no approver group');
    assert.equal((await h.services.escrow.requests.show(c.builder.ctx(), req.id)).approvals.length, 0);
  });

  test('approvers can shorten the duration, never lengthen it', async () => {
    const req = await file(c.builder.ctx(), ['STRIPE_KEY'], 'production', 'reveal', 3600);
    assert.equal((await approve(c.alice.ctx(), req.id, 120)).durationSeconds, 120);
    assert.equal(await codeOf(approve(c.bob.ctx(), req.id, 600)), 'VALIDATION_FAILED');
    const done = await approve(c.bob.ctx(), req.id);
    assert.equal(Date.parse(done.grant.expiresAt!), h.clock.now() + 120_000);
    assert.equal(await codeOf(file(c.builder.ctx(), ['STRIPE_KEY'], 'production', 'reveal', 7201)), 'VALIDATION_FAILED', 'beyond the rule maximum');
  });

  test('a grant revoked early stops working at once', async () => {
    const req = await file(c.builder.ctx(), ['STRIPE_REVOKED'], 'production');
    await approve(c.alice.ctx(), req.id);
    await approve(c.bob.ctx(), req.id);
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_REVOKED', 'production'), 'ok');
    assert.equal((await h.services.escrow.requests.revoke(c.carol.ctx(), req.id, { comment: 'incident closed' })).grant.state, 'revoked');
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_REVOKED', 'production'), 'APPROVAL_REQUIRED');
    assert.equal(await codeOf(h.services.escrow.requests.revoke(c.builder.ctx(), req.id)), 'REQUEST_NOT_ACTIVE');
  });

  test('seeing a request is not enough to end it: only its requester or an admin cancels it, and revoking its grant needs approve on its secrets', async () => {
    const req = await file(c.builder.ctx(), ['STRIPE_REVOKED'], 'staging');
    // frank is in leads (so he sees the request) as a viewer; alice may approve it.
    assert.equal((await h.services.escrow.requests.show(c.frank.ctx(), req.id)).id, req.id, 'frank sees it');
    for (const who of [c.frank, c.alice]) assert.equal(await codeOf(h.services.escrow.requests.cancel(who.ctx(), req.id)), 'FORBIDDEN', who.name);
    await approve(c.alice.ctx(), req.id);
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_REVOKED', 'staging'), 'ok');
    assert.equal(await codeOf(h.services.escrow.requests.revoke(c.frank.ctx(), req.id)), 'FORBIDDEN');
    assert.equal((await h.services.escrow.requests.show(c.builder.ctx(), req.id)).grant.state, 'active', 'the grant was not revoked by the refused call');
    assert.equal(await reveal(c.builder.ctx(), 'STRIPE_REVOKED', 'staging'), 'ok');
  });

  test('the approver of a rotate request cannot carry out that rotation', async () => {
    const mine = await file(c.alice.ctx(), ['ROT_KEY'], 'production', 'rotate');
    await approve(c.carol.ctx(), mine.id);
    const bobs = await file(c.bob.ctx(), ['ROT_KEY'], 'production', 'rotate');
    await approve(c.alice.ctx(), bobs.id);
    assert.equal(await codeOf(h.services.values.rollback(c.alice.ctx(), 'ROT_KEY', 'production')), 'SEPARATION_OF_DUTIES');
    assert.equal(await codeOf(h.services.values.rollback(c.bob.ctx(), 'ROT_KEY', 'production')), 'ok');
    assert.equal(await codeOf(h.services.values.rollback(c.carol.ctx(), 'ROT_KEY', 'production')), 'SEPARATION_OF_DUTIES');
    await h.services.escrow.requests.revoke(c.bob.ctx(), bobs.id);
    assert.equal(await codeOf(h.services.values.rollback(c.alice.ctx(), 'ROT_KEY', 'production')), 'ok', 'once that grant is gone, her own one works');
  });

  test('the approver of a rotate request cannot carry it out through a machine identity they own either', async () => {
    const bobs = await file(c.bob.ctx(), ['ROT_OWNED'], 'production', 'rotate');
    await approve(c.alice.ctx(), bobs.id);
    // alice's runner gets a rotate grant of its own, approved by someone else (alice may not: SELF_APPROVAL).
    const runners = await file(c.runner.ctx(), ['ROT_OWNED'], 'production', 'rotate');
    await approve(c.carol.ctx(), runners.id);
    assert.equal(await codeOf(h.services.values.rollback(c.runner.ctx(), 'ROT_OWNED', 'production')), 'SEPARATION_OF_DUTIES', 'the machine is alice, as it is for self-approval');
    assert.equal(await codeOf(h.services.values.rollback(c.bob.ctx(), 'ROT_OWNED', 'production')), 'ok', 'the requester carries it out');
    await h.services.escrow.requests.revoke(c.bob.ctx(), bobs.id);
    assert.equal(await codeOf(h.services.values.rollback(c.runner.ctx(), 'ROT_OWNED', 'production')), 'ok', 'once the grant alice approved is gone, the machine\'s own grant works');
  });

  test('requests are filed only for what a rule covers, by identities that may see the secret, with a bounded justification', async () => {
    const ask = (ctx: TenantContext, input: Record<string, unknown>) => codeOf(h.services.escrow.requests.file(ctx, { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: why, ...input } as never));
    assert.equal(await ask(c.builder.ctx(), { environment: 'development' }), 'NO_APPROVAL_RULE');
    assert.equal(await ask(c.builder.ctx(), { justification: 'because' }), 'VALIDATION_FAILED');
    assert.equal(await ask(c.builder.ctx(), { justification: 'x'.repeat(1001) }), 'VALIDATION_FAILED');
    // Invisible characters (zero-width space, word joiner, BOM, soft hyphen, Hangul filler) are no justification, however many.
    for (const blank of ['\u200b'.repeat(12), `ok${'\u2060'.repeat(20)}`, `${'\ufeff\u00ad'.repeat(8)}INC`, '\u3164'.repeat(12)]) {
      assert.equal(await ask(c.builder.ctx(), { justification: blank }), 'VALIDATION_FAILED', JSON.stringify(blank));
      assert.equal(await codeOf(h.services.escrow.breakGlass.breakGlass(c.oncall.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: blank })), 'VALIDATION_FAILED', `break-glass: ${JSON.stringify(blank)}`);
    }
    assert.equal(await ask(c.builder.ctx(), { secrets: ['NOPE'] }), 'SECRET_NOT_FOUND');
    assert.equal(await ask(c.builder.ctx(), { environment: 'nowhere' }), 'ENVIRONMENT_NOT_FOUND');
    assert.equal(await ask(c.builder.ctx(), { secrets: ['STRIPE_KEY', 'VAULT_ROOT'] }), 'VALIDATION_FAILED', 'one rule per request');
    assert.equal(await ask(c.runner.ctx(), {}), 'VALIDATION_FAILED', 'machines use, they do not reveal');
    assert.equal(await ask(h.ctx, {}), 'VALIDATION_FAILED', 'root is outside escrow');
  });

  test('another tenant cannot see or decide a request: 404', async () => {
    const req = await file(c.builder.ctx(), ['STRIPE_KEY'], 'production');
    const other = await h.services.tenants.create('other-escrow');
    const outsider = h.contextFor(other.id);
    assert.equal(await codeOf(h.services.escrow.requests.show(outsider, req.id)), 'REQUEST_NOT_FOUND');
    assert.equal(await codeOf(approve({ ...c.alice.ctx(), tenantId: other.id }, req.id)), 'REQUEST_NOT_FOUND');
    assert.equal(await codeOf(h.services.escrow.requests.show(c.frank.ctx(), req.id)), 'ok', 'frank is in the leads group');
    assert.equal(await codeOf(h.services.escrow.requests.show(c.revealer.ctx(), req.id)), 'REQUEST_NOT_FOUND', 'a colleague outside the groups does not see it');
    const queue = await h.services.escrow.requests.list(c.bob.ctx(), { scope: 'queue' });
    assert.ok(queue.items.some((r) => r.id === req.id), 'it is in an approver\'s queue');
    assert.ok(!(await h.services.escrow.requests.list(c.builder.ctx(), { scope: 'queue' })).items.some((r) => r.id === req.id), 'never in the requester\'s');
  });

  test('every transition is in the audit trail with the justification, notifications went out, and the chain verifies', async () => {
    const events = (await h.services.audit.readAfter(0, 100_000)).filter((e) => e.action.startsWith('access-request.') || e.action.startsWith('access-grant.'));
    const actions = new Set(events.map((e) => e.action));
    for (const a of ['access-request.file', 'access-request.approve', 'access-request.approved', 'access-request.deny', 'access-request.denied',
      'access-request.expire', 'access-grant.revoke', 'access-grant.expire', 'access-request.decide']) {
      assert.ok(actions.has(a), `${a} is audited`);
    }
    for (const e of events) assert.equal(e.context.justification, why, `${e.action} carries the justification`);
    assert.ok(h.notifications.ofType('escrow.request-filed').every((n) => n.recipients.every((r) => r.kind === 'group')));
    assert.ok(h.notifications.ofType('escrow.request-approved').length > 0);
    assert.ok(h.notifications.sent.every((n) => !n.body.includes('-v2-value') && !n.body.includes('-v1-value')), 'no value in a notification');
    const verified = await h.services.audit.verify();
    assert.equal(verified.ok, true);
  });

  test('a secret value pasted into a justification or comment is masked before it is stored, audited, shown or sent', async () => {
    const pasted = 'stripe_webhook-production-v2-value';
    assert.equal((await h.services.values.read(h.ctx, 'STRIPE_WEBHOOK', 'production')).value, pasted, 'a real value of the tenant');
    const req = await h.services.escrow.requests.file(c.builder.ctx(), {
      secrets: ['STRIPE_WEBHOOK'], environment: 'production', action: 'reveal', justification: `INC-9: the key is ${pasted}, rotate it`,
    });
    assert.doesNotMatch(req.justification, new RegExp(pasted));
    await h.services.escrow.decisions.approve(c.alice.ctx(), req.id, { comment: `checked ${pasted}` });
    await h.services.escrow.decisions.approve(c.bob.ctx(), req.id, { comment: 'ok' });
    await h.services.escrow.requests.revoke(c.alice.ctx(), req.id, { comment: `done with ${pasted}` });
    const glass = await h.services.escrow.breakGlass.breakGlass(c.oncall.ctx(), {
      secrets: ['STRIPE_WEBHOOK'], environment: 'production', action: 'reveal', justification: `outage, value ${pasted} leaked`,
    });
    const review = (await h.services.escrow.breakGlass.listReviews(c.alice.ctx())).items.find((r) => r.requestId === glass.id)!;
    await h.services.escrow.breakGlass.review(c.alice.ctx(), review.id, { outcome: 'justified', comment: `fine, ${pasted}` });
    await h.services.policies.put(h.ctx, { text: '', comment: `cleanup after ${pasted}` });

    const shown = JSON.stringify([await h.services.escrow.requests.show(h.ctx, req.id), await h.services.escrow.requests.show(h.ctx, glass.id)]);
    assert.equal(shown.includes(pasted), false, 'the API shows masked text');
    const db = h.storage.db;
    const stored = JSON.stringify([
      await db.selectFrom('access_requests').selectAll().execute(), await db.selectFrom('access_approvals').selectAll().execute(),
      await db.selectFrom('access_reviews').selectAll().execute(), await db.selectFrom('tenant_policies').select(['comment']).execute(),
      await db.selectFrom('audit_events').select(['context', 'reason', 'resource_name']).execute(),
    ]);
    assert.equal(stored.includes(pasted), false, 'no row and no audit event holds the value');
    assert.equal(JSON.stringify(h.notifications.sent).includes(pasted), false, 'no notification carries it');
  });
  test('typed text that could redraw what an approver reads (terminal escapes, line breaks, bidi overrides) is refused, and nothing is recorded', async () => {
    // Shown to approvers by the CLI as "Justification: …": an escape or a line break could paint "Environment: staging" over "production".
    // U+2028 and U+2029 are mandatory line breaks (UAX #14) to every renderer that follows Unicode, as LF is.
    const tricks = ['INC-1 ok\u001b[1A\u001b[2KEnvironment:  staging', 'INC-1 ok\nEnvironment:  staging', 'INC-1 ok \u202enoitcudorp', 'INC-1 ok\r\u0007 bell',
      'INC-1 ok\u2028Environment:  staging', 'INC-1 ok\u2029Environment:  staging'];
    for (const t of tricks) {
      assert.equal(await codeOf(h.services.escrow.requests.file(c.builder.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: t })), 'VALIDATION_FAILED', JSON.stringify(t));
      assert.equal(await codeOf(h.services.escrow.breakGlass.breakGlass(c.oncall.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: t })), 'VALIDATION_FAILED', JSON.stringify(t));
    }
    const req = await file(c.builder.ctx(), ['STRIPE_KEY'], 'production');
    for (const t of tricks) {
      assert.equal(await codeOf(h.services.escrow.decisions.approve(c.alice.ctx(), req.id, { comment: t })), 'VALIDATION_FAILED', JSON.stringify(t));
      assert.equal(await codeOf(h.services.escrow.decisions.deny(c.alice.ctx(), req.id, { comment: t })), 'VALIDATION_FAILED', JSON.stringify(t));
    }
    const shown = await h.services.escrow.requests.show(c.builder.ctx(), req.id);
    assert.deepEqual([shown.state, shown.approvals.length], ['pending', 0], 'nothing was decided');
    await approve(c.alice.ctx(), req.id);
    await approve(c.bob.ctx(), req.id);
    assert.equal(await codeOf(h.services.escrow.requests.revoke(c.alice.ctx(), req.id, { comment: tricks[0]! })), 'VALIDATION_FAILED');
    assert.equal((await h.services.escrow.requests.show(c.builder.ctx(), req.id)).grant.state, 'active', 'the grant was not revoked by the refused call');
    const glass = await h.services.escrow.breakGlass.breakGlass(c.oncall.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: why });
    const review = (await h.services.escrow.breakGlass.listReviews(c.alice.ctx())).items.find((r) => r.requestId === glass.id)!;
    assert.equal(await codeOf(h.services.escrow.breakGlass.review(c.alice.ctx(), review.id, { outcome: 'justified', comment: tricks[1]! })), 'VALIDATION_FAILED');
    assert.equal((await h.services.escrow.breakGlass.showReview(c.alice.ctx(), review.id)).state, 'open');
  });
});
