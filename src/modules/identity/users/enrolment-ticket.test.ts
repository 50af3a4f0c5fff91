import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { userContext } from '../../../../test/helpers/identities.ts';
import { call, codeAt, enrolTotp, newUser, nextStep, PASSWORD, sessionFor, ticketFor } from '../../../../test/helpers/users.ts';

const REFUSED = [403, 'TOTP_TICKET_INVALID'];

/** A user's first second factor needs a one-time enrolment ticket from an admin; a password alone never yields one. */
describeEachDialect('TOTP enrolment tickets', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  const enrol = (token: string, ticket?: string) => call(h, 'POST', '/v1/auth/totp/enroll', { token, ...(ticket !== undefined ? { body: { ticket } } : {}) });
  const userRow = (id: string) => h.storage.db.selectFrom('users')
    .select(['totp_enabled', 'totp_pending_secret', 'totp_ticket_hash', 'totp_ticket_expires_at']).where('id', '=', id).executeTakeFirstOrThrow();
  async function eventsOf(action: string, resourceId: string) {
    const rows = await h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', action).where('resource_id', '=', resourceId).orderBy('seq').execute();
    return rows.map((r) => ({ ...r, context: JSON.parse(r.context) as Record<string, string> }));
  }
  /** A ticket-shaped string no one issued. */
  const forged = () => h.canaries.add('TOTP enrolment ticket', `khe_${randomBytes(32).toString('base64url')}`);

  test('a session from a password alone cannot enrol a first factor, and the refusal is a denied event', async () => {
    const { id, username } = await newUser(h, 'no-ticket');
    const token = await sessionFor(h, username);
    for (const res of [await enrol(token), await call(h, 'POST', '/v1/auth/totp/enroll', { token, body: {} })]) {
      assert.deepEqual([res.status, res.body.error.code], REFUSED);
    }
    assert.equal((await userRow(id)).totp_pending_secret, null, 'nothing is pending');
    const events = await eventsOf('auth.totp-enroll', id);
    assert.deepEqual(events.map((e) => [e.outcome, e.reason]), [['denied', 'TOTP_TICKET_INVALID'], ['denied', 'TOTP_TICKET_INVALID']]);
    const step = await call(h, 'POST', '/v1/auth/step-up', { token, body: { code: '123456' } });
    assert.equal(step.body.error.code, 'TOTP_NOT_ENROLLED', 'and so no step-up either');
  });

  test("a wrong, expired, used, replaced or another user's ticket gets one answer and a denied event", async () => {
    const { id, username } = await newUser(h, 'ticket-cases');
    const other = await newUser(h, 'ticket-other');
    const token = await sessionFor(h, username);
    let othersTicket = '';
    const cases: Array<[string, () => Promise<string>]> = [
      ['a ticket no one issued', async () => forged()],
      ['a ticket one character off', async () => {
        const real = await ticketFor(h, id);
        return h.canaries.add('TOTP enrolment ticket', real.slice(0, -1) + (real.endsWith('A') ? 'B' : 'A'));
      }],
      ['an expired ticket', async () => {
        const ticket = await ticketFor(h, id, { ttlSeconds: 300 });
        h.clock.advance(300_000);
        return ticket;
      }],
      ['a ticket replaced by a newer one', async () => {
        const old = await ticketFor(h, id);
        await ticketFor(h, id);
        return old;
      }],
      ["another user's ticket", async () => (othersTicket = await ticketFor(h, other.id))],
      ['a ticket already used', async () => {
        const ticket = await ticketFor(h, id);
        assert.equal((await enrol(token, ticket)).status, 200, 'the first use starts an enrolment');
        return ticket;
      }],
    ];
    const messages = new Set<string>();
    for (const [name, make] of cases) {
      const res = await enrol(token, await make());
      assert.deepEqual([res.status, res.body.error.code], REFUSED, name);
      messages.add(res.body.error.message);
    }
    assert.equal(messages.size, 1, 'the message does not tell the cases apart');
    const denied = (await eventsOf('auth.totp-enroll', id)).filter((e) => e.outcome === 'denied');
    assert.deepEqual(denied.map((e) => e.reason), cases.map(() => 'TOTP_TICKET_INVALID'));
    assert.ok(denied.every((e) => e.actor_id === id));

    // The other user's ticket was not used up by the refused attempt.
    assert.equal((await enrol(await sessionFor(h, other.username), othersTicket)).status, 200);
  });

  test('two concurrent enrolments with one ticket: exactly one succeeds, and its secret is the pending one', async () => {
    for (let round = 0; round < 3; round++) {
      const { id, username } = await newUser(h, 'ticket-race');
      const tokens = [await sessionFor(h, username), await sessionFor(h, username), await sessionFor(h, username)];
      const ticket = await ticketFor(h, id);
      const results = await Promise.all(tokens.map((token) => enrol(token, ticket)));
      const won = results.filter((r) => r.status === 200);
      assert.equal(won.length, 1, `round ${round}: ${JSON.stringify(results.map((r) => r.body))}`);
      for (const lost of results.filter((r) => r.status !== 200)) assert.deepEqual([lost.status, lost.body.error.code], REFUSED);
      const row = await userRow(id);
      assert.deepEqual([row.totp_ticket_hash, row.totp_ticket_expires_at], [null, null], 'the ticket is consumed');
      const winner = tokens[results.indexOf(won[0]!)]!;
      const confirmed = await call(h, 'POST', '/v1/auth/totp/confirm', { token: winner, body: { code: codeAt(won[0]!.body.secret, h.clock.now()) } });
      assert.equal(confirmed.status, 200);
      nextStep(h);
    }
  });

  test('the ticket is shown once with no-store, stored only as its SHA-256, and its event carries the expiry, never the ticket', async () => {
    const { id, username } = await newUser(h, 'ticket-stored');
    const res = await call(h, 'POST', `/v1/users/${id}/totp-ticket`, { token: h.rootToken });
    assert.equal(res.status, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    const ticket = h.canaries.add('TOTP enrolment ticket', res.body.ticket as string);
    assert.match(ticket, /^khe_[A-Za-z0-9_-]{43}$/, '256 random bits behind the prefix');
    assert.equal(res.body.expiresAt, new Date(h.clock.now() + 24 * 3600_000).toISOString(), 'a day by default');
    const row = await userRow(id);
    assert.equal(row.totp_ticket_hash, createHash('sha256').update(ticket).digest('base64url'));
    assert.equal(Number(row.totp_ticket_expires_at), h.clock.now() + 24 * 3600_000);
    assert.ok(!JSON.stringify(row).includes(ticket));

    const [event] = await eventsOf('user.totp-ticket', id);
    assert.ok(event, 'issuing is an event');
    assert.deepEqual([event.outcome, event.actor_type, event.resource_name], ['allowed', 'root', username]);
    assert.equal(event.context.expiresAt, res.body.expiresAt);
    assert.equal(event.context.factorEnrolled, 'false');
    assert.ok(!JSON.stringify(event).includes(ticket.slice(4, 16)));

    const shorter = await call(h, 'POST', `/v1/users/${id}/totp-ticket`, { token: h.rootToken, body: { ttlSeconds: 3600 } });
    assert.equal(shorter.body.expiresAt, new Date(h.clock.now() + 3600_000).toISOString());
    const token = await sessionFor(h, username);
    assert.deepEqual([(await enrol(token, ticket)).status], [403], 'the replaced ticket no longer works');
    assert.equal((await enrol(token, shorter.body.ticket)).status, 200);
  });

  test('a lifetime out of bounds or of the wrong type, or an unknown field, is refused and issues nothing', async () => {
    const { id } = await newUser(h, 'ticket-ttl');
    const cases: Array<[unknown, string]> = [
      [{ ttlSeconds: 299 }, 'VALIDATION_FAILED'], [{ ttlSeconds: 7 * 86_400 + 1 }, 'VALIDATION_FAILED'], [{ ttlSeconds: 600.5 }, 'VALIDATION_FAILED'],
      [{ ttlSeconds: '3600' }, 'VALIDATION_FAILED'], [{ ttlSeconds: 3600, ticket: 'mine' }, 'UNKNOWN_FIELD'],
    ];
    for (const [body, code] of cases) {
      const res = await call(h, 'POST', `/v1/users/${id}/totp-ticket`, { token: h.rootToken, body });
      assert.deepEqual([res.status, res.body.error.code], [400, code], JSON.stringify(body));
    }
    await assert.rejects(h.services.users.issueTotpTicket(h.ctx, id, { ttlSeconds: 10 }), { code: 'VALIDATION_FAILED' });
    assert.equal((await userRow(id)).totp_ticket_hash, null);
    assert.deepEqual(await eventsOf('user.totp-ticket', id), []);
    const unknown = await call(h, 'POST', '/v1/auth/totp/enroll', { token: await sessionFor(h, (await newUser(h, 'enrol-field')).username), body: { ticket: 'x', secret: 'mine' } });
    assert.equal(unknown.body.error.code, 'UNKNOWN_FIELD');
  });

  test('only an admin of the tenant issues tickets: others are forbidden, a tenant admin needs a fresh step-up', async () => {
    const target = await newUser(h, 'ticket-target');
    const plain = await newUser(h, 'not-admin');
    const refused = await call(h, 'POST', `/v1/users/${target.id}/totp-ticket`, { token: await sessionFor(h, plain.username) });
    assert.deepEqual([refused.status, refused.body.error.code], [403, 'FORBIDDEN']);

    const admin = await userContext(h, h.ctx.tenantId, 'ticket-admin', { mfaAgoMs: 60 * 60_000 });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: admin.id, role: 'tenant-admin' });
    await assert.rejects(h.services.users.issueTotpTicket(admin.ctx(), target.id), { code: 'STEP_UP_REQUIRED' });
    assert.equal((await userRow(target.id)).totp_ticket_hash, null, 'refusals issue nothing');
    const fresh = await userContext(h, h.ctx.tenantId, 'ticket-admin-fresh', { mfaAgoMs: 60_000 });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: fresh.id, role: 'tenant-admin' });
    const issued = await h.services.users.issueTotpTicket(fresh.ctx(), target.id);
    h.canaries.add('TOTP enrolment ticket', issued.ticket);
    assert.equal((await enrol(await sessionFor(h, target.username), issued.ticket)).status, 200);
    const [event] = await eventsOf('user.totp-ticket', target.id);
    assert.deepEqual([event?.actor_type, event?.actor_id], ['user', fresh.id]);
  });

  test('a user id of another tenant, or none, is USER_NOT_FOUND and changes nothing', async () => {
    const other = await h.services.tenants.create('ticket-elsewhere');
    const stranger = await h.services.users.create(h.contextFor(other.id), { username: 'stranger', password: PASSWORD });
    for (const id of [stranger.id, 'no-such-user']) {
      const res = await call(h, 'POST', `/v1/users/${id}/totp-ticket`, { token: h.rootToken });
      assert.deepEqual([res.status, res.body.error.code], [404, 'USER_NOT_FOUND'], id);
    }
    assert.equal((await userRow(stranger.id)).totp_ticket_hash, null);
    assert.deepEqual(await eventsOf('user.totp-ticket', stranger.id), []);
    // In its own tenant, the same id works.
    const own = await call(h, 'POST', `/v1/users/${stranger.id}/totp-ticket`, { token: h.rootToken, tenant: 'ticket-elsewhere' });
    assert.equal(own.status, 200);
  });

  test('an admin resets a lost factor: the factor and every session end at once, and only the ticket enrols a new one', async () => {
    const { id, username } = await newUser(h, 'lost-phone');
    const lost = await enrolTotp(h, await sessionFor(h, username));
    const session = await sessionFor(h, username, { totp: codeAt(lost, h.clock.now()) });
    nextStep(h);
    // Without a code of the lost factor the user cannot even sign in.
    assert.equal((await call(h, 'POST', '/v1/auth/login', { body: { tenant: 'default', username, password: PASSWORD } })).status, 401);

    const res = await call(h, 'POST', `/v1/users/${id}/totp-ticket`, { token: h.rootToken, body: { resetFactor: true } });
    assert.equal(res.status, 200);
    const ticket = h.canaries.add('TOTP enrolment ticket', res.body.ticket as string)!;
    assert.equal((await userRow(id)).totp_enabled, 0, 'the factor is gone');
    assert.equal((await call(h, 'GET', '/v1/auth/whoami', { token: session })).status, 401, 'the session that had the old factor has ended');
    const [event] = (await eventsOf('user.totp-ticket', id)).slice(-1);
    assert.deepEqual([event!.context.resetFactor, event!.context.revokedSessions, event!.context.factorEnrolled], ['true', '2', 'true'], 'both sessions (the one that enrolled, the one that signed in with the code) ended');

    // The password alone signs in again, but reaches nothing that needs a step-up until the ticket enrols a factor.
    const token = await sessionFor(h, username);
    assert.equal((await call(h, 'POST', '/v1/auth/step-up', { token, body: { code: codeAt(lost, h.clock.now()) } })).body.error.code, 'TOTP_NOT_ENROLLED', 'the lost factor\'s codes are worthless');
    assert.deepEqual([(await enrol(token)).body.error.code], ['TOTP_TICKET_INVALID']);
    const enrolled = await enrol(token, ticket);
    assert.equal(enrolled.status, 200);
    const confirmed = await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(enrolled.body.secret as string, h.clock.now()) } });
    assert.equal(confirmed.status, 200);
    nextStep(h);
  });

  test('a factor reset is an admin\'s: anyone else is refused and nothing changes', async () => {
    const { id, username } = await newUser(h, 'keep-factor');
    await enrolTotp(h, await sessionFor(h, username));
    const other = await newUser(h, 'not-admin');
    const token = await sessionFor(h, other.username);
    const res = await call(h, 'POST', `/v1/users/${id}/totp-ticket`, { token, body: { resetFactor: true } });
    assert.equal(res.status, 403);
    assert.equal((await userRow(id)).totp_enabled, 1);
  });

  test('a reset fences work in flight for the old factor: a second factor verified under it counts for nothing', async () => {
    const { id, username } = await newUser(h, 'in-flight');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const user = (await h.storage.db.selectFrom('users').select(['tenant_id', 'factor_epoch']).where('id', '=', id).executeTakeFirstOrThrow());
    assert.equal((await call(h, 'POST', `/v1/users/${id}/totp-ticket`, { token: h.rootToken, body: { resetFactor: true } })).status, 200);
    // A login that checked a code of the old factor before the reset, and issues its session after it.
    const late = await h.services.sessions.issue({ id, tenantId: user.tenant_id }, { at: h.clock.now(), epoch: user.factor_epoch });
    const me = await call(h, 'GET', '/v1/auth/whoami', { token: late.token });
    assert.equal(me.status, 200);
    assert.equal(me.body.mfaAt, null, 'signed in, but with no second factor');
    // A code of the old factor claimed after the reset is refused outright.
    nextStep(h);
    const login = await call(h, 'POST', '/v1/auth/login', { body: { tenant: 'default', username, password: PASSWORD, totp: codeAt(secret, h.clock.now()) } });
    assert.equal(login.status, 200, 'the password alone signs in (the factor is gone)');
    assert.equal(login.body.mfaAt ?? null, null);
  });

  test('a replacement started before a reset does not survive it', async () => {
    const { id, username } = await newUser(h, 'replace-race');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const token = await sessionFor(h, username, { totp: codeAt(secret, h.clock.now()) });
    nextStep(h);
    // The admin's reset commits while the replacement is between its checks and its write.
    const tenants = h.services.tenants;
    const findById = tenants.findById;
    tenants.findById = async (tenantId: string) => {
      tenants.findById = findById;
      assert.equal((await call(h, 'POST', `/v1/users/${id}/totp-ticket`, { token: h.rootToken, body: { resetFactor: true } })).status, 200);
      return findById(tenantId);
    };
    try {
      const res = await enrol(token);
      assert.deepEqual([res.status, res.body.error?.code], REFUSED);
    } finally {
      tenants.findById = findById;
    }
    const row = await userRow(id);
    assert.deepEqual([row.totp_enabled, row.totp_pending_secret], [0, null], 'no factor, nothing pending: only the ticket enrols one');
  });

  test('a new ticket supersedes an enrolment started with an earlier one and not confirmed', async () => {
    const { id, username } = await newUser(h, 'leaked-qr');
    const token = await sessionFor(h, username);
    const first = await enrol(token, await ticketFor(h, id));
    assert.equal(first.status, 200);
    await ticketFor(h, id);
    const confirm = await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(first.body.secret as string, h.clock.now()) } });
    assert.deepEqual([confirm.status, confirm.body.error.code], [409, 'TOTP_NOT_ENROLLED']);
    assert.equal((await userRow(id)).totp_enabled, 0);
  });

  test('a machine identity holding tenant-admin issues no ticket: it has no second factor to prove', async () => {
    const { id } = await newUser(h, 'by-machine');
    const machine = { tenantId: h.ctx.tenantId, requestId: 'test', actor: { type: 'machine' as const, id: 'm-1', name: 'robot', homeTenantId: h.ctx.tenantId } };
    const authz = h.services.authz;
    const require = authz.require;
    authz.require = async () => undefined; // as if a grant of tenant-admin allowed it
    try {
      await assert.rejects(h.services.users.issueTotpTicket(machine, id, { resetFactor: true }), /FORBIDDEN|in person/);
    } finally {
      authz.require = require;
    }
    assert.equal((await userRow(id)).totp_ticket_hash, null);
    const denied = await eventsOf('user.totp-ticket', id);
    assert.deepEqual(denied.map((e) => [e.outcome, e.reason]), [['denied', 'FORBIDDEN']]);
  });

  test('replacing a confirmed factor still needs a fresh step-up, and a ticket does not stand in for it', async () => {
    const { id, username } = await newUser(h, 'ticket-replace');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const token = await sessionFor(h, username, { totp: codeAt(secret, h.clock.now()) });
    h.clock.advance(11 * 60_000);
    const ticket = await ticketFor(h, id);
    const withTicket = await enrol(token, ticket);
    assert.deepEqual([withTicket.status, withTicket.body.error.code], [403, 'STEP_UP_REQUIRED']);
    nextStep(h);
    assert.equal((await call(h, 'POST', '/v1/auth/step-up', { token, body: { code: codeAt(secret, h.clock.now()) } })).status, 200);
    const replaced = await enrol(token);
    assert.equal(replaced.status, 200, 'no ticket is needed to replace a factor');
    const issued = await eventsOf('user.totp-ticket', id);
    assert.deepEqual(issued.map((e) => e.context.factorEnrolled), ['false', 'true'], 'the helper\'s ticket, then this one');
  });
});
