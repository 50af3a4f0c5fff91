import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { identitySettings } from '../../config/config.ts';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { ESCROW_POLICY, setUpEscrow, type EscrowCast } from '../../../test/helpers/escrow.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';
import { sql } from 'kysely';
import { newId } from '../../platform/ids.ts';

const why = 'PAGE-99: payouts down, the provider asks us to re-send with the live key';

describeEachDialect('escrow: break-glass, reviews, access policy versions, and the HTTP surface', (dialect) => {
  let h: Harness;
  let c: EscrowCast;
  const breakGlass = (ctx: ReturnType<EscrowCast['oncall']['ctx']>, secrets = ['STRIPE_KEY']) =>
    h.services.escrow.breakGlass.breakGlass(ctx, { secrets, environment: 'production', action: 'reveal', justification: why });

  before(async () => {
    h = await createHarness(dialect);
    c = await setUpEscrow(h, ['STRIPE_KEY', 'VAULT_ROOT']);
  });
  after(() => h.close());

  test('break-glass: a listed person reveals at once for one hour, with a high-severity event, an alert and an open review', async () => {
    const taken = await breakGlass(c.oncall.ctx());
    assert.deepEqual([taken.state, taken.breakGlass, taken.grant.state, taken.review?.state], ['approved', true, 'active', 'open']);
    assert.equal(Date.parse(taken.grant.expiresAt!), h.clock.now() + 3600_000, 'default one hour');
    assert.equal((await h.services.values.read(c.oncall.ctx(), 'STRIPE_KEY', 'production')).value, 'stripe_key-production-v2-value');

    const event = (await h.services.audit.readAfter(0, 100_000)).find((e) => e.action === 'access-request.break-glass' && e.outcome === 'allowed')!;
    assert.deepEqual([event.context.severity, event.context.justification, event.actor.id], ['high', why, c.oncall.id]);
    const alert = h.notifications.ofType('escrow.break-glass').at(-1)!;
    assert.equal(alert.severity, 'alert');
    assert.deepEqual(alert.recipients.filter((r) => r.kind === 'group').map((r) => r.id).sort(), ['leads', 'security']);

    const open = await h.services.escrow.breakGlass.listReviews(c.alice.ctx());
    const review = open.items.find((r) => r.requestId === taken.id)!;
    assert.equal(review.state, 'open');
    assert.equal(await codeOf(h.services.escrow.breakGlass.review(c.oncall.ctx(), review.id, { outcome: 'justified', comment: 'it was me' })), 'SELF_APPROVAL');
    const selfReviews = (await h.services.audit.readAfter(0, 100_000)).filter((e) => e.action === 'access-review.complete' && e.outcome === 'denied');
    assert.deepEqual(selfReviews.map((e) => [e.reason, e.actor.id, e.resource.id, e.context.reviewId]), [['SELF_APPROVAL', c.oncall.id, taken.id, review.id]], 'the taker\'s attempt to clear their own break-glass is audited, once');
    assert.equal(await codeOf(h.services.escrow.breakGlass.review(c.alice.stale(), review.id, { outcome: 'justified', comment: 'ok' })), 'STEP_UP_REQUIRED');
    // A comment of zero-width characters reads as none.
    assert.equal(await codeOf(h.services.escrow.breakGlass.review(c.alice.ctx(), review.id, { outcome: 'justified', comment: '\u200b\u2060\ufeff' })), 'VALIDATION_FAILED');
    const done = await h.services.escrow.breakGlass.review(c.alice.ctx(), review.id, { outcome: 'justified', comment: 'matches PAGE-99' });
    assert.deepEqual([done.state, done.reviewedBy, done.outcome], ['done', c.alice.id, 'justified']);
    assert.equal(await codeOf(h.services.escrow.breakGlass.review(c.bob.ctx(), review.id, { outcome: 'unjustified', comment: 'late' })), 'REVIEW_ALREADY_DONE');
    assert.ok(!(await h.services.escrow.breakGlass.listReviews(c.alice.ctx())).items.some((r) => r.id === review.id), 'no longer open');

    h.clock.advance(3600_000 + 1000);
    assert.equal(await codeOf(h.services.values.read(c.oncall.ctx(), 'STRIPE_KEY', 'production')), 'APPROVAL_REQUIRED', 'the glass mends after an hour');
  });

  test('a break-glass review is a person\'s act: a machine identity cannot complete it, even with admin and approve', async () => {
    const taken = await breakGlass(c.oncall.ctx());
    // A CI identity of the person who broke the glass, with every role a review needs but no person behind it.
    const ci = newId();
    await h.storage.db.insertInto('machine_identities').values({
      id: ci, tenant_id: h.ctx.tenantId, name: 'oncall-ci', kind: 'client_secret', client_id: `khc_${ci}`, client_secret_hash: 'x',
      oidc_issuer: null, oidc_jwks_url: null, oidc_audience: null, oidc_subject: null, oidc_claims: null, token_ttl_ms: 900_000,
      owner_user_id: c.oncall.id, created_at: h.clock.now(), disabled_at: null,
    }).execute();
    for (const role of ['tenant-admin', 'approver']) await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: ci, role });
    const ciCtx = { tenantId: h.ctx.tenantId, requestId: 'test', actor: { type: 'machine' as const, id: ci, name: 'oncall-ci', homeTenantId: h.ctx.tenantId } };
    const review = (await h.services.escrow.breakGlass.listReviews(c.alice.ctx())).items.find((r) => r.requestId === taken.id)!;
    assert.equal(await codeOf(h.services.escrow.breakGlass.review(ciCtx, review.id, { outcome: 'justified', comment: 'all good' })), 'NOT_AN_APPROVER');
    assert.equal((await h.services.escrow.breakGlass.showReview(c.alice.ctx(), review.id)).state, 'open', 'still waiting for a person');
  });

  test('break-glass by someone the rule does not list is refused, and the refusal is audited', async () => {
    assert.equal(await codeOf(breakGlass(c.builder.ctx())), 'BREAK_GLASS_NOT_ALLOWED');
    assert.equal(await codeOf(breakGlass(c.oncall.ctx(), ['VAULT_ROOT'])), 'BREAK_GLASS_NOT_ALLOWED', 'listed on one rule, not on another');
    assert.equal(await codeOf(breakGlass(c.runner.ctx())), 'VALIDATION_FAILED', 'machines do not reveal');
    const refused = (await h.services.audit.readAfter(0, 100_000)).filter((e) => e.action === 'access-request.break-glass' && e.outcome === 'denied');
    assert.equal(refused.length, 2);
    assert.ok(refused.every((e) => e.context.justification === why && e.reason === 'BREAK_GLASS_NOT_ALLOWED'));
    assert.equal(await codeOf(h.services.values.read(c.builder.ctx(), 'STRIPE_KEY', 'production')), 'APPROVAL_REQUIRED');
  });

  test('break-glass is an approval the taker gives themselves: it needs a fresh second factor, and a refusal is audited and grants nothing', async () => {
    const before = (await h.storage.db.selectFrom('access_requests').select('id').where('break_glass', '=', 1).execute()).length;
    const alerts = h.notifications.ofType('escrow.break-glass').length;
    const never = { ...c.oncall.ctx(), actor: { ...c.oncall.ctx().actor, mfaAt: null } };
    for (const ctx of [c.oncall.stale(), never]) assert.equal(await codeOf(breakGlass(ctx)), 'STEP_UP_REQUIRED');
    assert.equal((await h.storage.db.selectFrom('access_requests').select('id').where('break_glass', '=', 1).execute()).length, before, 'no request, no grant');
    assert.equal(h.notifications.ofType('escrow.break-glass').length, alerts, 'no alert for access that was not taken');
    const refused = (await h.services.audit.readAfter(0, 100_000)).filter((e) => e.action === 'access-request.break-glass' && e.reason === 'STEP_UP_REQUIRED');
    assert.deepEqual(refused.map((e) => [e.outcome, e.actor.id, e.context.severity]), [['denied', c.oncall.id, 'high'], ['denied', c.oncall.id, 'high']]);
  });

  test('a second factor one millisecond older than the step-up window does not break the glass', async () => {
    const before = (await h.storage.db.selectFrom('access_requests').select('id').where('break_glass', '=', 1).execute()).length;
    const windowMs = identitySettings().stepUpWindowMs;
    const justOut = { ...c.oncall.ctx(), actor: { ...c.oncall.ctx().actor, mfaAt: h.clock.now() - windowMs - 1 } };
    assert.equal(await codeOf(breakGlass(justOut)), 'STEP_UP_REQUIRED');
    assert.equal((await h.storage.db.selectFrom('access_requests').select('id').where('break_glass', '=', 1).execute()).length, before, 'no request, no grant');
  });

  test('access policies are versioned: history, diff and rollback; a bad document never takes effect', async () => {
    const policies = h.services.escrow.accessPolicies;
    const before = await policies.current(h.ctx);
    const bad = [
      { ...ESCROW_POLICY, rules: [{ id: 'x', actions: ['reveal'], steps: [{ groups: ['nobody'], approvals: 1 }] }] },
      { ...ESCROW_POLICY, rules: [{ id: 'x', actions: ['reveal'], steps: [{ groups: ['security'], approvals: 3 }] }] },
      { ...ESCROW_POLICY, rules: [{ id: 'x', actions: ['reveal'], steps: [{ groups: ['security'], approvals: 2 }, { groups: ['security'], approvals: 1 }] }] },
      { groups: { leads: ['ghost'] }, rules: [] },
      { ...ESCROW_POLICY, rules: [{ id: 'x', environments: ['nowhere'], actions: ['reveal'], steps: [{ groups: ['leads'], approvals: 1 }] }] },
      { ...ESCROW_POLICY, surprise: true },
    ];
    for (const document of bad) assert.equal(await codeOf(policies.put(h.ctx, { document })), 'ACCESS_POLICY_INVALID', JSON.stringify(document).slice(0, 80));
    assert.equal((await policies.current(h.ctx)).version, before.version, 'nothing was stored');
    assert.equal((await policies.validate(h.ctx, bad[0])).valid, false);
    assert.equal(await codeOf(policies.put(c.alice.ctx(), { document: ESCROW_POLICY })), 'FORBIDDEN', 'only admins change access policies');

    const relaxed = await policies.put(h.ctx, { document: { ...ESCROW_POLICY, rules: ESCROW_POLICY.rules.filter((r) => r.id !== 'staging-reveal') }, comment: 'no staging approvals' });
    assert.equal(relaxed.version, before.version + 1);
    assert.match((await policies.diff(h.ctx, before.version, relaxed.version)).diff, /^- .*"staging-reveal"/m);
    // The rule is gone: a builder's staging reveal is their role's business again (a builder has none).
    assert.equal(await codeOf(h.services.values.read(c.builder.ctx(), 'STRIPE_KEY', 'staging')), 'FORBIDDEN');
    const back = await policies.rollback(h.ctx, before.version);
    assert.deepEqual([back.version, back.active], [before.version + 2, true]);
    assert.equal(await codeOf(h.services.values.read(c.builder.ctx(), 'STRIPE_KEY', 'staging')), 'APPROVAL_REQUIRED', 'the rollback took effect at once');
    assert.deepEqual((await policies.history(h.ctx)).map((v) => v.version).slice(0, 3), [before.version + 2, before.version + 1, before.version]);
    assert.equal(await codeOf(policies.get(h.ctx, 999)), 'ACCESS_POLICY_VERSION_NOT_FOUND');
  });

  test('break-glass never outlasts the rule\'s maximum duration: the default is cut to it, and a longer one is refused', async () => {
    const policies = h.services.escrow.accessPolicies;
    const short = (breakGlass: object) => ({ ...ESCROW_POLICY, rules: ESCROW_POLICY.rules.map((r) => (r.id === 'prod-reveal' ? { ...r, maxDurationSeconds: 600, breakGlass } : r)) });
    assert.equal(await codeOf(policies.put(h.ctx, { document: short({ users: ['oncall'], durationSeconds: 3600 }) })), 'ACCESS_POLICY_INVALID');
    await policies.put(h.ctx, { document: short({ users: ['oncall'] }), comment: 'payment reveals last ten minutes' });
    try {
      const taken = await breakGlass(c.oncall.ctx());
      assert.equal(Date.parse(taken.grant.expiresAt!), h.clock.now() + 600_000, 'ten minutes, not the default hour');
      assert.equal(await codeOf(h.services.escrow.breakGlass.breakGlass(c.oncall.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: why, durationSeconds: 601 })), 'VALIDATION_FAILED');
    } finally {
      await policies.put(h.ctx, { document: ESCROW_POLICY, comment: 'back' });
    }
  });

  test('over HTTP: an oversized justification is a 400 and writes nothing; another tenant gets 404 for a request id', async () => {
    const count = async () => Number((await h.storage.db.selectFrom('access_requests').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    const before = await count();
    const inject = (method: 'GET' | 'POST', url: string, payload?: object, tenant?: string) => h.app.inject({
      method, url, headers: { authorization: `Bearer ${h.rootToken}`, ...(tenant ? { 'x-keyhold-tenant': tenant } : {}) }, ...(payload ? { payload } : {}),
    });
    const big = await inject('POST', '/v1/requests', { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: 'x'.repeat(5000) });
    assert.equal(big.statusCode, 400);
    assert.equal(big.json().error.code, 'VALIDATION_FAILED');
    const extra = await inject('POST', '/v1/requests', { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: why, approvedBy: 'me' });
    assert.equal(extra.json().error.code, 'UNKNOWN_FIELD');
    const huge = await inject('POST', '/v1/break-glass', { secrets: Array.from({ length: 50 }, (_, i) => `S${i}`), environment: 'production', action: 'reveal', justification: why });
    assert.equal(huge.statusCode, 400);
    assert.equal(await count(), before, 'nothing was written');

    const req = await h.services.escrow.requests.file(c.builder.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: why });
    assert.equal((await inject('GET', `/v1/requests/${req.id}`)).statusCode, 200);
    await h.services.tenants.create('elsewhere');
    for (const [method, url, body] of [['GET', `/v1/requests/${req.id}`], ['POST', `/v1/requests/${req.id}/approve`, {}], ['POST', `/v1/requests/${req.id}/revoke`, {}]] as const) {
      const res = await inject(method, url, body, 'elsewhere');
      assert.deepEqual([res.statusCode, res.json().error.code], [404, 'REQUEST_NOT_FOUND'], `${method} ${url}`);
    }
    const openapi = (await inject('GET', '/v1/openapi.json')).json();
    assert.ok(openapi.paths['/v1/requests/{id}/approve'] && openapi.paths['/v1/break-glass'] && openapi.paths['/v1/access-policies']);
  });

  test('a review list that cannot be read fails, and never passes for an empty one', async () => {
    const taken = await breakGlass(c.oncall.ctx());
    assert.ok((await h.services.escrow.breakGlass.listReviews(c.alice.ctx())).items.some((r) => r.requestId === taken.id));
    // Past the grant's end, reading the request records its expiry: with the audit log unwritable, that fails.
    h.clock.advance(3600_000 + 1000);
    await sql`alter table audit_events rename to audit_events_gone`.execute(h.storage.db);
    try {
      assert.equal(await codeOf(h.services.escrow.breakGlass.listReviews(c.alice.ctx())), 'AUDIT_UNAVAILABLE');
    } finally {
      await sql`alter table audit_events_gone rename to audit_events`.execute(h.storage.db);
    }
    assert.ok((await h.services.escrow.breakGlass.listReviews(c.alice.ctx())).items.some((r) => r.requestId === taken.id));
  });
});

test('with KEYHOLD_NOTIFY_* channels configured, a break-glass alert reaches them as well as the log', async () => {
  const received: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      received.push(body);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/hook`;
  const h = await createHarness('sqlite', { notify: { webhook: { url, secret: 'a-webhook-secret-of-32-characters' }, smtp: null } });
  try {
    const c = await setUpEscrow(h, ['STRIPE_KEY']);
    await h.services.escrow.breakGlass.breakGlass(c.oncall.ctx(), { secrets: ['STRIPE_KEY'], environment: 'production', action: 'reveal', justification: why });
    assert.equal(h.notifications.ofType('escrow.break-glass').length, 1, 'the log');
    // Notifications are sent after the action commits, not awaited by it.
    for (const until = Date.now() + 20_000; received.length === 0 && Date.now() < until;) await new Promise((r) => setTimeout(r, 20));
    const hooked = received.map((b) => JSON.parse(b) as { type: string; severity: string });
    assert.deepEqual(hooked.filter((n) => n.type === 'escrow.break-glass').map((n) => n.severity), ['alert'], 'the webhook');
    assert.ok(!received.join('').includes('stripe_key-production'), 'no value in what the webhook got');
  } finally {
    await h.close();
    await new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); });
  }
});
