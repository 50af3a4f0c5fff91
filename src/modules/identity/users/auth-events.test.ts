import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { codeAt, enrolTotp, login, newUser, nextStep, PASSWORD, sessionFor, ticketFor, type Reply } from '../../../../test/helpers/users.ts';

const AGENT = 'keyhold-cli/9.9 (events test)';

/** Sign-in and second-factor events (SPEC §7): each attempt, allowed or refused, with where it came from. */
describeEachDialect('sign-in and second-factor events', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  /** A call with a known user agent and address, returning the request id the server gave it. */
  async function send(url: string, opts: { token?: string; body?: unknown; ip: string }): Promise<Reply & { requestId: string }> {
    const res = await h.app.inject({
      method: 'POST', url, remoteAddress: opts.ip,
      headers: { 'user-agent': AGENT, ...(opts.token ? { authorization: `Bearer ${opts.token}` } : {}) },
      ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
    });
    const body = res.body === '' ? null : res.json();
    return { status: res.statusCode, body, headers: res.headers, requestId: String(res.headers['x-request-id'] ?? '') };
  }

  async function eventsOf(action: string, where: { actorId?: string; outcome?: string } = {}) {
    let q = h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', action);
    if (where.actorId) q = q.where('actor_id', '=', where.actorId);
    if (where.outcome) q = q.where('outcome', '=', where.outcome);
    const rows = await q.orderBy('seq').execute();
    return rows.map((r) => ({ ...r, context: JSON.parse(r.context) as Record<string, string> }));
  }

  /** The context every request-borne event carries, as auditFrom gives it. */
  function assertSource(context: Record<string, string>, reply: { requestId: string }, ip: string, what: string): void {
    assert.equal(context.sourceIp, ip, `${what}: source address`);
    assert.equal(context.userAgent, AGENT, `${what}: user agent`);
    assert.match(reply.requestId, /\S/);
    assert.equal(context.requestId, reply.requestId, `${what}: the id of the request that did it`);
  }

  test('a wrong step-up code, and a step-up over the attempt budget, are denied events with their reason', async () => {
    const { id, username } = await newUser(h, 'step-denied');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const token = await sessionFor(h, username, { totp: codeAt(secret, h.clock.now()) });
    const wrong = await send('/v1/auth/step-up', { token, body: { code: '000000' }, ip: '10.9.0.1' });
    assert.equal(wrong.status, 400);
    const [denied] = await eventsOf('auth.step-up', { actorId: id, outcome: 'denied' });
    assert.ok(denied, 'the failed step-up is an event');
    assert.equal(denied.reason, 'TOTP_INVALID');
    assert.deepEqual([denied.resource_type, denied.resource_id], ['user', id]);
    assertSource(denied.context, wrong, '10.9.0.1', 'denied step-up');
    assert.ok(!JSON.stringify(denied).includes('000000'), 'the code is not recorded');

    for (let i = 0; i < 5; i++) await send('/v1/auth/step-up', { token, body: { code: '111111' }, ip: '10.9.0.1' });
    const reasons = (await eventsOf('auth.step-up', { actorId: id, outcome: 'denied' })).map((e) => e.reason);
    assert.deepEqual(reasons, ['TOTP_INVALID', 'TOTP_INVALID', 'TOTP_INVALID', 'TOTP_INVALID', 'TOTP_INVALID', 'RATE_LIMITED']);
  });

  test('starting and confirming an enrolment are events, and neither carries the secret or the code', async () => {
    const { id, username } = await newUser(h, 'enrol-events');
    const token = await sessionFor(h, username);
    const ticket = await ticketFor(h, id);
    const started = await send('/v1/auth/totp/enroll', { token, body: { ticket }, ip: '10.9.0.2' });
    assert.equal(started.status, 200);
    const secret: string = started.body.secret;
    const wrong = await send('/v1/auth/totp/confirm', { token, body: { code: '222222' }, ip: '10.9.0.2' });
    assert.equal(wrong.status, 400);
    const code = codeAt(secret, h.clock.now());
    const confirmed = await send('/v1/auth/totp/confirm', { token, body: { code }, ip: '10.9.0.2' });
    assert.equal(confirmed.status, 200);

    const [enrol] = await eventsOf('auth.totp-enroll', { actorId: id });
    assert.equal(enrol?.outcome, 'allowed');
    assert.equal(enrol.context.replacing, 'false');
    assertSource(enrol.context, started, '10.9.0.2', 'enrol');
    const confirms = await eventsOf('auth.totp-confirm', { actorId: id });
    assert.deepEqual(confirms.map((e) => [e.outcome, e.reason]), [['denied', 'TOTP_INVALID'], ['allowed', null]]);
    assert.equal(confirms[1]!.context.replaced, 'false');
    assertSource(confirms[0]!.context, wrong, '10.9.0.2', 'refused confirm');
    assertSource(confirms[1]!.context, confirmed, '10.9.0.2', 'confirm');
    const all = JSON.stringify([enrol, ...confirms]);
    for (const needle of [secret, secret.toLowerCase(), code, '222222', ticket]) assert.ok(!all.includes(needle), 'no secret, code or ticket in the events');
  });

  test('a re-enrolment refused for want of a fresh step-up is a denied event', async () => {
    const { id, username } = await newUser(h, 'enrol-refused');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const token = await sessionFor(h, username, { totp: codeAt(secret, h.clock.now()) });
    h.clock.advance(11 * 60_000);
    const refused = await send('/v1/auth/totp/enroll', { token, ip: '10.9.0.3' });
    assert.deepEqual([refused.status, refused.body.error.code], [403, 'STEP_UP_REQUIRED']);
    const denied = await eventsOf('auth.totp-enroll', { actorId: id, outcome: 'denied' });
    assert.deepEqual(denied.map((e) => e.reason), ['STEP_UP_REQUIRED']);
    assertSource(denied[0]!.context, refused, '10.9.0.3', 'refused enrol');

    nextStep(h);
    assert.equal((await send('/v1/auth/step-up', { token, body: { code: codeAt(secret, h.clock.now()) }, ip: '10.9.0.3' })).status, 200);
    assert.equal((await send('/v1/auth/totp/enroll', { token, ip: '10.9.0.3' })).status, 200);
    const allowed = await eventsOf('auth.totp-enroll', { actorId: id, outcome: 'allowed' });
    assert.deepEqual(allowed.map((e) => e.context.replacing), ['false', 'true']);
  });

  test('login events carry the request id, source address and user agent; a success names its session', async () => {
    const { id, username } = await newUser(h, 'login-events');
    const ok = await send('/v1/auth/login', { body: { tenant: 'default', username, password: PASSWORD }, ip: '10.9.0.4' });
    assert.equal(ok.status, 200);
    const [allowed] = await eventsOf('auth.login', { actorId: id, outcome: 'allowed' });
    assert.ok(allowed);
    assertSource(allowed.context, ok, '10.9.0.4', 'login');
    assert.equal(allowed.context.sessionId, ok.body.sessionId);
    assert.equal(allowed.context.credentialId, ok.body.sessionId, 'the same field later events of the session carry');
    assert.equal(allowed.context.secondFactor, 'none');

    const before = (await eventsOf('auth.login', { outcome: 'denied' })).length;
    const bad = await send('/v1/auth/login', { body: { tenant: 'default', username, password: 'wrong-password-entirely' }, ip: '10.9.0.5' });
    assert.equal(bad.status, 401);
    const denied = (await eventsOf('auth.login', { outcome: 'denied' })).slice(before);
    assert.equal(denied.length, 1);
    assertSource(denied[0]!.context, bad, '10.9.0.5', 'refused login');
    assert.equal(denied[0]!.context.credentialId, undefined);
    assert.ok(!JSON.stringify(denied).includes('wrong-password-entirely'));
    assert.equal((await login(h, { username })).status, 200);
  });
});
