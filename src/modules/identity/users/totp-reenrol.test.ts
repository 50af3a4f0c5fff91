import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { call, codeAt, enrolTotp, login, newUser, nextStep, sessionFor, ticketFor } from '../../../../test/helpers/users.ts';

/** Re-enrolling a confirmed second factor: the old one stays in force until the new one is confirmed. */
describeEachDialect('TOTP re-enrolment', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  const factorRow = (id: string) => h.storage.db.selectFrom('users').select(['totp_secret', 'totp_enabled', 'totp_pending_secret']).where('id', '=', id).executeTakeFirstOrThrow();

  test('a re-enrolment started and never confirmed does not let a password alone sign in, and the old codes keep working', async () => {
    const { id, username } = await newUser(h, 'downgrade');
    const oldSecret = await enrolTotp(h, await sessionFor(h, username));
    const before = await factorRow(id);
    const token = await sessionFor(h, username, { totp: codeAt(oldSecret, h.clock.now()) });
    const started = await call(h, 'POST', '/v1/auth/totp/enroll', { token });
    assert.equal(started.status, 200, 'a freshly stepped-up session may start a re-enrolment');
    const newSecret: string = started.body.secret;

    const after = await factorRow(id);
    assert.equal(after.totp_enabled, 1, 'the factor stays enabled');
    assert.deepEqual(Buffer.from(after.totp_secret!), Buffer.from(before.totp_secret!), 'the confirmed secret is untouched');
    assert.notEqual(after.totp_pending_secret, null);

    nextStep(h);
    const passwordOnly = await login(h, { username });
    assert.deepEqual([passwordOnly.status, passwordOnly.body.error.code], [401, 'INVALID_CREDENTIALS'], 'the second factor is still required');
    const withNewCode = await login(h, { username, totp: codeAt(newSecret, h.clock.now()) });
    assert.equal(withNewCode.status, 401, 'an unconfirmed secret does not sign in');
    const withOldCode = await login(h, { username, totp: codeAt(oldSecret, h.clock.now()) });
    assert.equal(withOldCode.status, 200, 'the old factor works until the new one is confirmed');

    // A session whose step-up has gone stale cannot restart enrolment, even mid re-enrolment.
    h.clock.advance(11 * 60_000);
    const stale = await call(h, 'POST', '/v1/auth/totp/enroll', { token: withOldCode.body.token });
    assert.deepEqual([stale.status, stale.body.error.code], [403, 'STEP_UP_REQUIRED']);
    nextStep(h);
    const stepUpNew = await call(h, 'POST', '/v1/auth/step-up', { token: withOldCode.body.token, body: { code: codeAt(newSecret, h.clock.now()) } });
    assert.deepEqual([stepUpNew.status, stepUpNew.body.error.code], [400, 'TOTP_INVALID'], 'nor does it step up');
  });

  test('confirming with a code from the new secret swaps the factors: the old codes stop working then, not before', async () => {
    const { id, username } = await newUser(h, 'swap');
    const oldSecret = await enrolTotp(h, await sessionFor(h, username));
    const token = await sessionFor(h, username, { totp: codeAt(oldSecret, h.clock.now()) });
    const newSecret: string = (await call(h, 'POST', '/v1/auth/totp/enroll', { token })).body.secret;
    nextStep(h);
    const withOld = await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(oldSecret, h.clock.now()) } });
    assert.deepEqual([withOld.status, withOld.body.error.code], [400, 'TOTP_INVALID'], 'the old secret cannot confirm the new one');
    const confirmCode = codeAt(newSecret, h.clock.now());
    assert.equal((await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: confirmCode } })).status, 200);
    const replay = await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: confirmCode } });
    assert.deepEqual([replay.status, replay.body.error.code], [409, 'TOTP_NOT_ENROLLED'], 'nothing is pending any more');
    assert.equal((await login(h, { username, totp: confirmCode })).status, 401, 'the confirming code is used up');
    assert.equal((await factorRow(id)).totp_pending_secret, null);

    nextStep(h);
    assert.equal((await login(h, { username, totp: codeAt(oldSecret, h.clock.now()) })).status, 401, 'the old factor is gone');
    assert.equal((await login(h, { username })).status, 401);
    assert.equal((await login(h, { username, totp: codeAt(newSecret, h.clock.now()) })).status, 200);
  });

  test('restarting an enrolment replaces the pending secret: only the latest one confirms', async () => {
    const { id, username } = await newUser(h, 'restart');
    const token = await sessionFor(h, username);
    // A first factor not yet confirmed: each start needs a ticket of its own (the first one is used up).
    const first: string = (await call(h, 'POST', '/v1/auth/totp/enroll', { token, body: { ticket: await ticketFor(h, id) } })).body.secret;
    const second: string = (await call(h, 'POST', '/v1/auth/totp/enroll', { token, body: { ticket: await ticketFor(h, id) } })).body.secret;
    const stale = await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(first, h.clock.now()) } });
    assert.deepEqual([stale.status, stale.body.error.code], [400, 'TOTP_INVALID']);
    assert.equal((await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(second, h.clock.now()) } })).status, 200);
  });

  test('two concurrent confirmations of one enrolment: exactly one succeeds', async () => {
    const { id, username } = await newUser(h, 'confirm-race');
    const tokens = [await sessionFor(h, username), await sessionFor(h, username)];
    const secret: string = (await call(h, 'POST', '/v1/auth/totp/enroll', { token: tokens[0], body: { ticket: await ticketFor(h, id) } })).body.secret;
    const code = codeAt(secret, h.clock.now());
    const results = await Promise.all(tokens.map((token) => call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code } })));
    const statuses = results.map((r) => r.status).sort();
    assert.equal(statuses.filter((s) => s === 200).length, 1, JSON.stringify(results.map((r) => r.body)));
    assert.ok(statuses.every((s) => s === 200 || s === 400 || s === 409), JSON.stringify(statuses));
  });

  test('a pending enrolment survives a KEK rotation and the rewrap that retires the old key', async () => {
    const { username } = await newUser(h, 'pending-rotated');
    const oldSecret = await enrolTotp(h, await sessionFor(h, username));
    const token = await sessionFor(h, username, { totp: codeAt(oldSecret, h.clock.now()) });
    const newSecret: string = (await call(h, 'POST', '/v1/auth/totp/enroll', { token })).body.secret;
    await h.services.keys.rotate(h.ctx);
    await h.services.keys.rewrap(h.ctx);
    nextStep(h);
    assert.equal((await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(newSecret, h.clock.now()) } })).status, 200);
    nextStep(h);
    assert.equal((await login(h, { username, totp: codeAt(newSecret, h.clock.now()) })).status, 200);
  });
});
