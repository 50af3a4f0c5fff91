import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { call, freshIp, newUser, PASSWORD, sessionFor } from '../../../../test/helpers/users.ts';
import { createAttemptGuards, DEFAULT_ATTEMPT_LIMITS } from './attempts.ts';
import { createLoginService } from './login-service.ts';
import { createPasswordHasher, type PasswordHasher } from './passwords.ts';
import { createUserRepository } from './user-repository.ts';

const NEW_PASSWORD = 'copper-heron-lantern-9';

/**
 * A login verifies the password (argon2, tens of milliseconds) before it starts the session. A
 * password change or a disable that commits in between must still win: "a password change ends
 * every other session" has to hold for a session whose login was in flight, or whoever holds the
 * old password keeps a session the change was meant to end.
 */
describeEachDialect('a login racing a change to the account', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  /** A login service whose password check, once it has verified, waits for `release` before login goes on. */
  function pausedLogins() {
    const real = createPasswordHasher();
    let verified!: () => void;
    let release!: () => void;
    const reached = new Promise<void>((r) => (verified = r));
    const gate = new Promise<void>((r) => (release = r));
    const passwords: PasswordHasher = {
      ...real,
      async verify(hash, password) {
        const ok = await real.verify(hash, password);
        verified();
        await gate;
        return ok;
      },
    };
    const logins = createLoginService({
      db: h.storage.db, repo: createUserRepository(h.storage.db, dialect), tenants: h.services.tenants, sessions: h.services.sessions,
      totp: h.services.totp, passwords, guards: createAttemptGuards(DEFAULT_ATTEMPT_LIMITS, h.clock), clock: h.clock,
      audit: h.services.audit, identifiers: h.services.identifiers,
    });
    return { logins, reached, release };
  }

  const liveSessions = (userId: string) => h.storage.db.selectFrom('sessions').select('id')
    .where('user_id', '=', userId).where('revoked_at', 'is', null).execute();

  test('a password change that commits while a login with the old password is being checked leaves that login no session', async () => {
    const { id, username } = await newUser(h, 'race-pw');
    const own = await sessionFor(h, username);
    const { logins, reached, release } = pausedLogins();
    const attempt = logins.login({ tenant: 'default', username, password: PASSWORD }, { requestId: 'race', sourceIp: freshIp() });
    attempt.catch(() => undefined);
    await reached;
    const changed = await call(h, 'POST', '/v1/auth/password', { token: own, body: { current: PASSWORD, new: NEW_PASSWORD } });
    assert.equal(changed.status, 200, JSON.stringify(changed.body));
    release();
    await assert.rejects(attempt, (err: { code?: string }) => err.code === 'INVALID_CREDENTIALS');
    assert.deepEqual((await liveSessions(id)).map((s) => s.id), [(await h.services.authenticator.authenticate(own))!.credentialId],
      'only the session that changed the password lives');
  });

  test('a disable that commits while a login is being checked leaves that login no session', async () => {
    const { id, username } = await newUser(h, 'race-disable');
    const { logins, reached, release } = pausedLogins();
    const attempt = logins.login({ tenant: 'default', username, password: PASSWORD }, { requestId: 'race', sourceIp: freshIp() });
    attempt.catch(() => undefined);
    await reached;
    assert.equal((await call(h, 'POST', `/v1/users/${id}/disable`, { token: h.rootToken })).status, 200);
    release();
    await assert.rejects(attempt, (err: { code?: string }) => err.code === 'INVALID_CREDENTIALS');
    assert.deepEqual(await liveSessions(id), []);
  });

  test('without a change meanwhile the same login succeeds', async () => {
    const { username } = await newUser(h, 'race-none');
    const { logins, reached, release } = pausedLogins();
    const attempt = logins.login({ tenant: 'default', username, password: PASSWORD }, { requestId: 'race', sourceIp: freshIp() });
    await reached;
    release();
    const session = await attempt;
    assert.equal((await h.services.authenticator.authenticate(session.token))?.id, session.userId);
  });
});
