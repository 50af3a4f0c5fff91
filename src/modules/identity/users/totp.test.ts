import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { call, codeAt, enrolTotp, login, newUser, nextStep, PASSWORD, sessionFor, ticketFor } from '../../../../test/helpers/users.ts';
import { sql } from 'kysely';
import { decodeSealedTotp } from './totp.ts';

/** Base32 (RFC 4648, no padding) to bytes, to look for the raw secret in stored rows. */
function base32Bytes(text: string): Buffer {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const ch of text) bits += alphabet.indexOf(ch).toString(2).padStart(5, '0');
  return Buffer.from((bits.match(/.{8}/g) ?? []).map((b) => parseInt(b, 2)));
}

describeEachDialect('TOTP second factor and step-up', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('enrolment shows the secret once, stores it sealed, and takes effect only when confirmed', async () => {
    const { id, username } = await newUser(h, 'enrol');
    const token = await sessionFor(h, username);
    const enrol = await call(h, 'POST', '/v1/auth/totp/enroll', { token, body: { ticket: await ticketFor(h, id) } });
    assert.equal(enrol.status, 200);
    assert.equal(enrol.headers['cache-control'], 'no-store');
    const secret: string = enrol.body.secret;
    assert.match(secret, /^[A-Z2-7]{32}$/);
    assert.ok(enrol.body.uri.startsWith('otpauth://totp/'));
    assert.ok(enrol.body.uri.includes(`secret=${secret}`));

    const row = await h.storage.db.selectFrom('users').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
    assert.equal(row.totp_secret, null, 'nothing is in force until confirmed');
    const stored = Buffer.from(row.totp_pending_secret!);
    for (const needle of [Buffer.from(secret), Buffer.from(secret.toLowerCase()), base32Bytes(secret)]) {
      assert.equal(stored.indexOf(needle), -1, 'the secret is not stored in the clear');
    }
    assert.ok(!JSON.stringify(row).includes(secret));
    assert.ok(decodeSealedTotp(stored), 'stored as [format][length][ciphertext][wrapped DEK]');
    assert.equal(row.totp_enabled, 0);
    assert.equal((await login(h, { username })).status, 200, 'an unconfirmed factor does not gate login');

    const wrong = await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: '000000' } });
    assert.deepEqual([wrong.status, wrong.body.error.code], [400, 'TOTP_INVALID']);
    const confirmed = await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(secret, h.clock.now()) } });
    assert.equal(confirmed.status, 200);
    assert.equal(confirmed.body.totpEnabled, true);
    nextStep(h);

    const withoutCode = await login(h, { username });
    assert.deepEqual([withoutCode.status, withoutCode.body.error.code], [401, 'INVALID_CREDENTIALS']);
    const withCode = await login(h, { username, totp: codeAt(secret, h.clock.now()) });
    assert.equal(withCode.status, 200);
    assert.equal(withCode.body.mfaAt, new Date(h.clock.now()).toISOString());
  });

  test('a code used at login cannot be used again, at login or at step-up', async () => {
    const { username } = await newUser(h, 'replay');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const code = codeAt(secret, h.clock.now());
    const first = await login(h, { username, totp: code });
    assert.equal(first.status, 200);
    const again = await login(h, { username, totp: code });
    assert.deepEqual([again.status, again.body.error.code], [401, 'INVALID_CREDENTIALS']);
    const stepUp = await call(h, 'POST', '/v1/auth/step-up', { token: first.body.token, body: { code } });
    assert.deepEqual([stepUp.status, stepUp.body.error.code], [400, 'TOTP_INVALID']);
    // Nor an older code still inside the drift window.
    h.clock.advance(30_000);
    const stale = await call(h, 'POST', '/v1/auth/step-up', { token: first.body.token, body: { code } });
    assert.equal(stale.status, 400);
    assert.equal((await call(h, 'POST', '/v1/auth/step-up', { token: first.body.token, body: { code: codeAt(secret, h.clock.now()) } })).status, 200);
  });

  test('step-up sets this session\'s mfa time, whoami shows it, and the same code is refused the second time', async () => {
    const { username } = await newUser(h, 'stepper');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const session = await login(h, { username, totp: codeAt(secret, h.clock.now()) });
    const other = await login(h, { username, totp: codeAt(secret, h.clock.now() + 30_000) }); // next step, still in the window
    const token = session.body.token;
    h.clock.advance(5 * 60_000);
    const code = codeAt(secret, h.clock.now());
    const res = await call(h, 'POST', '/v1/auth/step-up', { token, body: { code } });
    assert.equal(res.status, 200);
    const now = new Date(h.clock.now()).toISOString();
    assert.equal(res.body.mfaAt, now);
    assert.equal((await call(h, 'GET', '/v1/auth/whoami', { token })).body.mfaAt, now);
    assert.notEqual((await call(h, 'GET', '/v1/auth/whoami', { token: other.body.token })).body.mfaAt, now, 'only this session');
    const replay = await call(h, 'POST', '/v1/auth/step-up', { token: other.body.token, body: { code } });
    assert.deepEqual([replay.status, replay.body.error.code], [400, 'TOTP_INVALID']);
  });

  test('two concurrent uses of one code: exactly one succeeds', async () => {
    const { username } = await newUser(h, 'racer');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const tokens: string[] = [];
    // Three sessions: with the failures of each round, one user's code budget (5) is never exhausted.
    for (let i = 0; i < 3; i++) {
      tokens.push((await login(h, { username, totp: codeAt(secret, h.clock.now()) })).body.token);
      nextStep(h);
    }
    for (let round = 0; round < 3; round++) {
      nextStep(h);
      const code = codeAt(secret, h.clock.now());
      const results = await Promise.all(tokens.map((token) => call(h, 'POST', '/v1/auth/step-up', { token, body: { code } })));
      assert.deepEqual(results.map((r) => r.status).sort(), [200, 400, 400], `round ${round}`);
    }
    nextStep(h);
    const code = codeAt(secret, h.clock.now());
    const logins = await Promise.all([0, 1, 2].map(() => login(h, { username, totp: code })));
    assert.deepEqual(logins.map((r) => r.status).sort(), [200, 401, 401]);
  });

  test('codes from one step either side are accepted; two steps away they are not', async () => {
    const { username } = await newUser(h, 'drift');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const token = await sessionFor(h, username, { totp: codeAt(secret, h.clock.now()) });
    h.clock.advance(5 * 30_000);
    const now = h.clock.now();
    const stepUp = (at: number) => call(h, 'POST', '/v1/auth/step-up', { token, body: { code: codeAt(secret, at) } });
    assert.equal((await stepUp(now - 60_000)).status, 400, 'two steps old');
    assert.equal((await stepUp(now + 60_000)).status, 400, 'two steps ahead');
    assert.equal((await stepUp(now - 30_000)).status, 200, 'one step old');
    assert.equal((await stepUp(now + 30_000)).status, 200, 'one step ahead');
  });

  test('step-up needs an enrolled factor and a user session, and code guessing is rate limited', async () => {
    const { username } = await newUser(h, 'no-factor');
    const token = await sessionFor(h, username);
    const none = await call(h, 'POST', '/v1/auth/step-up', { token, body: { code: '123456' } });
    assert.deepEqual([none.status, none.body.error.code], [409, 'TOTP_NOT_ENROLLED']);
    const confirm = await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: '123456' } });
    assert.equal(confirm.body.error.code, 'TOTP_NOT_ENROLLED');
    const root = await call(h, 'POST', '/v1/auth/step-up', { token: h.rootToken, body: { code: '123456' } });
    assert.deepEqual([root.status, root.body.error.code], [403, 'FORBIDDEN']);

    const guesser = await newUser(h, 'guesser');
    const guesserToken = await sessionFor(h, guesser.username);
    const secret = await enrolTotp(h, guesserToken);
    const statuses: number[] = [];
    for (let i = 0; i < 6; i++) statuses.push((await call(h, 'POST', '/v1/auth/step-up', { token: guesserToken, body: { code: 'abcdef' } })).status);
    assert.deepEqual(statuses, [400, 400, 400, 400, 400, 429]);
    const limited = await call(h, 'POST', '/v1/auth/step-up', { token: guesserToken, body: { code: codeAt(secret, h.clock.now()) } });
    assert.equal(limited.status, 429);
    assert.ok(Number(limited.headers['retry-after']) > 0);
  });

  test('a stolen session with the password cannot buy more code guesses: a right current password does not refill the code budget', async () => {
    const victim = await newUser(h, 'refill');
    const token = await sessionFor(h, victim.username);
    await enrolTotp(h, token);
    const stepUp = () => call(h, 'POST', '/v1/auth/step-up', { token, body: { code: '000000' } });
    for (let i = 0; i < 4; i++) assert.equal((await stepUp()).status, 400);
    // A right current password with a new one too weak to be stored: nothing changes, and no event is written.
    const change = await call(h, 'POST', '/v1/auth/password', { token, body: { current: PASSWORD, new: 'password1234' } });
    assert.equal(change.body.error.code, 'WEAK_PASSWORD');
    const more = [(await stepUp()).status, (await stepUp()).status];
    assert.deepEqual(more, [400, 429], 'the fifth wrong code spends the budget; the password check refilled nothing');
    // And the other way round: spent password guesses are not refilled by anything but their own success.
    const guesses: number[] = [];
    for (let i = 0; i < 6; i++) guesses.push((await call(h, 'POST', '/v1/auth/password', { token, body: { current: `wrong-${i}-password`, new: 'violet-harbor-engine-9' } })).status);
    assert.deepEqual(guesses, [401, 401, 401, 401, 401, 429]);
  });

  test('enrolled factors survive a KEK rotation and rewrap that retires the old key', async () => {
    const { id, username } = await newUser(h, 'rotated');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const before = Buffer.from((await h.storage.db.selectFrom('users').select('totp_secret').where('id', '=', id).executeTakeFirstOrThrow()).totp_secret!);
    await h.services.keys.rotate(h.ctx);
    const rewrapped = await h.services.keys.rewrap(h.ctx);
    assert.ok(rewrapped.minDecryptionVersion > 1);
    const after = Buffer.from((await h.storage.db.selectFrom('users').select('totp_secret').where('id', '=', id).executeTakeFirstOrThrow()).totp_secret!);
    assert.ok(!after.equals(before), 'the wrapped DEK moved to the new KEK');
    assert.deepEqual(decodeSealedTotp(after)!.ciphertext, decodeSealedTotp(before)!.ciphertext, 'the sealed secret itself is untouched');
    assert.equal((await login(h, { username, totp: codeAt(secret, h.clock.now()) })).status, 200);
  });

  test('replacing a confirmed factor needs a fresh step-up', async () => {
    const { username } = await newUser(h, 'replacer');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const token = await sessionFor(h, username, { totp: codeAt(secret, h.clock.now()) });
    h.clock.advance(11 * 60_000);
    const stale = await call(h, 'POST', '/v1/auth/totp/enroll', { token });
    assert.deepEqual([stale.status, stale.body.error.code], [403, 'STEP_UP_REQUIRED']);
    assert.equal((await call(h, 'POST', '/v1/auth/step-up', { token, body: { code: codeAt(secret, h.clock.now()) } })).status, 200);
    const fresh = await call(h, 'POST', '/v1/auth/totp/enroll', { token });
    assert.equal(fresh.status, 200);
    assert.notEqual(fresh.body.secret, secret);
  });

  test('with the audit log unwritable, step-up and TOTP confirmation fail closed and change nothing', async () => {
    const { id, username } = await newUser(h, 'unaudited');
    const secret = await enrolTotp(h, await sessionFor(h, username));
    nextStep(h);
    const token = await sessionFor(h, username, { totp: codeAt(secret, h.clock.now()) });
    h.clock.advance(11 * 60_000);
    const session = () => h.storage.db.selectFrom('sessions').select('mfa_at').where('user_id', '=', id).where('revoked_at', 'is', null).orderBy('created_at', 'desc').executeTakeFirstOrThrow();
    const mfaBefore = (await session()).mfa_at;
    // A second user mid-enrolment, to confirm while the log is down.
    const pending = await newUser(h, 'unconfirmed');
    const pendingToken = await sessionFor(h, pending.username);
    const pendingSecret = (await call(h, 'POST', '/v1/auth/totp/enroll', { token: pendingToken, body: { ticket: await ticketFor(h, pending.id) } })).body.secret as string;

    await sql`alter table audit_events rename to audit_events_gone`.execute(h.storage.db);
    try {
      const stepUp = await call(h, 'POST', '/v1/auth/step-up', { token, body: { code: codeAt(secret, h.clock.now()) } });
      assert.deepEqual([stepUp.status, stepUp.body.error.code], [503, 'AUDIT_UNAVAILABLE']);
      const confirm = await call(h, 'POST', '/v1/auth/totp/confirm', { token: pendingToken, body: { code: codeAt(pendingSecret, h.clock.now()) } });
      assert.deepEqual([confirm.status, confirm.body.error.code], [503, 'AUDIT_UNAVAILABLE']);
    } finally {
      await sql`alter table audit_events_gone rename to audit_events`.execute(h.storage.db);
    }
    assert.equal((await session()).mfa_at, mfaBefore, 'the refused step-up left the session as it was');
    const stillPending = await h.storage.db.selectFrom('users').select('totp_enabled').where('id', '=', pending.id).executeTakeFirstOrThrow();
    assert.equal(stillPending.totp_enabled, 0, 'the refused confirmation left the factor unconfirmed');
    const stale = await call(h, 'POST', '/v1/auth/totp/enroll', { token });
    assert.deepEqual([stale.status, stale.body.error.code], [403, 'STEP_UP_REQUIRED'], 'the session gained no step-up');

    nextStep(h);
    const ok = await call(h, 'POST', '/v1/auth/step-up', { token, body: { code: codeAt(secret, h.clock.now()) } });
    assert.equal(ok.status, 200, 'with the log back, the next code steps up');
    const events = await h.storage.db.selectFrom('audit_events').select(['action', 'actor_id']).where('actor_id', '=', id).where('action', '=', 'auth.step-up').execute();
    assert.equal(events.length, 1, 'one step-up happened, and it has its event');
  });
});
