import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { call, codeAt, enrolTotp, login, newUser, PASSWORD, sessionFor } from '../../../../test/helpers/users.ts';
import { identitySettings } from '../../../config/config.ts';
import { fail } from '../../../errors/index.ts';
import { newId } from '../../../platform/ids.ts';
import type { Authorizer } from '../../policy/authorizer.ts';
import { createUserModule } from './index.ts';
import { createSessionService } from './session-service.ts';
import { rejects } from '../../../../test/helpers/rejects.ts';

describeEachDialect('human users and their sessions', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a created user is stored with an argon2id hash, never the password, and shown without it', async () => {
    const created = await call(h, 'POST', '/v1/users', { token: h.rootToken, body: { username: 'ada.lovelace', password: PASSWORD } });
    assert.equal(created.status, 201);
    assert.deepEqual(Object.keys(created.body).sort(), ['createdAt', 'disabledAt', 'email', 'id', 'passwordChangedAt', 'totpEnabled', 'username']);
    assert.equal(created.body.totpEnabled, false);
    const row = await h.storage.db.selectFrom('users').selectAll().where('id', '=', created.body.id).executeTakeFirstOrThrow();
    assert.match(row.password_hash, /^\$argon2id\$v=19\$m=19456,t=2,p=1\$/);
    assert.ok(!JSON.stringify(row).includes(PASSWORD));
    const listed = await call(h, 'GET', '/v1/users', { token: h.rootToken });
    assert.ok(listed.body.items.some((u: { username: string }) => u.username === 'ada.lovelace'));
    assert.equal((await call(h, 'GET', `/v1/users/${created.body.id}`, { token: h.rootToken })).body.username, 'ada.lovelace');
  });

  test('weak passwords, bad usernames and duplicates are refused and nothing is written', async () => {
    const cases: Array<[string, string, number, string]> = [
      ['weak-short', 'short-pw', 400, 'WEAK_PASSWORD'],
      ['weak-common', 'Password1234', 400, 'WEAK_PASSWORD'],
      ['weak-same', 'aaaaaaaaaaaaaaaa', 400, 'WEAK_PASSWORD'],
      ['weak-name', 'xx-weak-name-xx', 400, 'WEAK_PASSWORD'],
      ['Upper', PASSWORD, 400, 'VALIDATION_FAILED'],
      ['has space', PASSWORD, 400, 'VALIDATION_FAILED'],
      ['1starts-with-digit', PASSWORD, 400, 'VALIDATION_FAILED'],
      ['x'.repeat(65), PASSWORD, 400, 'VALIDATION_FAILED'],
      ['ada.lovelace', PASSWORD, 409, 'USER_EXISTS'],
    ];
    for (const [username, password, status, code] of cases) {
      const res = await call(h, 'POST', '/v1/users', { token: h.rootToken, body: { username, password } });
      assert.deepEqual([res.status, res.body.error.code], [status, code], username);
    }
    const extra = await call(h, 'POST', '/v1/users', { token: h.rootToken, body: { username: 'x-extra', password: PASSWORD, admin: true } });
    assert.equal(extra.body.error.code, 'UNKNOWN_FIELD');
    const names = (await h.storage.db.selectFrom('users').select('username').execute()).map((r) => r.username);
    assert.deepEqual(names.filter((n) => n.startsWith('weak') || n === 'x-extra'), []);
  });

  test('a user id of another tenant is USER_NOT_FOUND, never theirs', async () => {
    const other = await h.services.tenants.create('other-users');
    const stranger = await h.services.users.create(h.contextFor(other.id), { username: 'stranger', password: PASSWORD });
    for (const [method, url] of [['GET', `/v1/users/${stranger.id}`], ['POST', `/v1/users/${stranger.id}/disable`], ['GET', `/v1/users/${newId()}`]] as const) {
      const res = await call(h, method, url, { token: h.rootToken });
      assert.deepEqual([res.status, res.body.error.code], [404, 'USER_NOT_FOUND'], url);
    }
    assert.equal((await h.services.users.get(h.contextFor(other.id), stranger.id)).disabledAt, null);
    // Their session cannot name the default tenant either.
    const token = await sessionFor(h, 'stranger', { tenant: 'other-users' });
    const res = await h.app.inject({ method: 'GET', url: '/v1/auth/whoami', headers: { authorization: `Bearer ${token}`, 'x-keyhold-tenant': 'default' } });
    assert.equal(res.statusCode, 404);
  });

  test('user administration asks the authorizer for admin, and a refusal writes nothing', async () => {
    const deny: Authorizer = {
      require: async () => fail('FORBIDDEN', 'denied'),
      allowed: async () => false,
      bumpInTx: async () => {},
      invalidate: () => {},
    };
    const denied = createUserModule({
      db: h.storage.db, dialect, keyring: h.services.keyring, tenants: h.services.tenants, authz: deny, clock: h.clock,
      identity: identitySettings(), audit: h.services.audit, identifiers: h.services.identifiers,
    });
    await rejects(denied.users.create(h.ctx, { username: 'never-made', password: PASSWORD }), 'FORBIDDEN');
    await rejects(denied.users.list(h.ctx), 'FORBIDDEN');
    assert.equal(await h.storage.db.selectFrom('users').select('id').where('username', '=', 'never-made').executeTakeFirst(), undefined);

    // Through the real authorizer: a user without a grant is forbidden; a tenant admin needs a fresh second factor.
    const admin = await newUser(h, 'admin');
    const token = await sessionFor(h, admin.username);
    assert.equal((await call(h, 'GET', '/v1/users', { token })).body.error.code, 'FORBIDDEN');
    await h.storage.db.insertInto('grants').values({
      id: newId(), tenant_id: h.ctx.tenantId, principal_type: 'user', principal_id: admin.id, role: 'tenant-admin',
      environments: null, name_patterns: null, expires_at: null, created_at: h.clock.now(), created_by: 'test', revoked_at: null,
    }).execute();
    await h.services.authz.invalidate(h.ctx.tenantId);
    assert.equal((await call(h, 'GET', '/v1/users', { token })).body.error.code, 'STEP_UP_REQUIRED');
    const secret = await enrolTotp(h, token); // confirming the factor counts as a second factor just verified
    assert.equal((await call(h, 'GET', '/v1/users', { token })).status, 200);
    const step = await call(h, 'POST', '/v1/auth/step-up', { token, body: { code: codeAt(secret, h.clock.now()) } });
    assert.equal(step.status, 200);
  });

  test('a session expires after the idle time, and use keeps it alive', async () => {
    const { username } = await newUser(h, 'idle');
    const token = await sessionFor(h, username);
    const idle = identitySettings().sessionIdleMs;
    for (let i = 0; i < 3; i++) {
      h.clock.advance(idle - 1000);
      assert.equal((await call(h, 'GET', '/v1/auth/whoami', { token })).status, 200, `use ${i} within the idle time`);
    }
    h.clock.advance(idle + 1);
    const res = await call(h, 'GET', '/v1/auth/whoami', { token });
    assert.deepEqual([res.status, res.body.error.code], [401, 'UNAUTHENTICATED']);
  });

  test('with an idle time shorter than a minute, use still keeps a session alive, and it idles out at the exact instant', async () => {
    const idleMs = 30_000;
    const sessions = createSessionService({ db: h.storage.db, dialect, clock: h.clock, settings: { sessionIdleMs: idleMs, sessionAbsoluteMs: 3_600_000 } });
    const { id } = await newUser(h, 'short-idle');
    const { token } = await sessions.issue({ id, tenantId: h.ctx.tenantId }, null);
    for (let i = 0; i < 6; i++) {
      h.clock.advance(20_000);
      assert.ok(await sessions.authenticate(token), `use ${i}, 20 s after the last one`);
    }
    h.clock.advance(idleMs - 1);
    assert.ok(await sessions.authenticate(token), 'a millisecond before the idle time');
    h.clock.advance(idleMs);
    assert.equal(await sessions.authenticate(token), null, 'the idle time after the last use');
  });

  test('a session ends at its absolute expiry however active it is', async () => {
    const { username } = await newUser(h, 'absolute');
    const started = h.clock.now();
    const token = await sessionFor(h, username);
    const absolute = identitySettings().sessionAbsoluteMs;
    while (h.clock.now() + 20 * 60_000 < started + absolute) {
      h.clock.advance(20 * 60_000);
      assert.equal((await call(h, 'GET', '/v1/auth/whoami', { token })).status, 200);
    }
    h.clock.set(started + absolute);
    assert.equal((await call(h, 'GET', '/v1/auth/whoami', { token })).status, 401);
  });

  test('logout ends the session and only that one', async () => {
    const { username } = await newUser(h, 'logout');
    const [a, b] = [await sessionFor(h, username), await sessionFor(h, username)];
    assert.equal((await call(h, 'POST', '/v1/auth/logout', { token: a })).status, 204);
    assert.equal((await call(h, 'GET', '/v1/auth/whoami', { token: a })).status, 401);
    assert.equal((await call(h, 'POST', '/v1/auth/logout', { token: a })).status, 401);
    assert.equal((await call(h, 'GET', '/v1/auth/whoami', { token: b })).status, 200);
  });

  test('a password change needs the current password and ends every other session', async () => {
    const { username } = await newUser(h, 'changer');
    const [a, b] = [await sessionFor(h, username), await sessionFor(h, username)];
    const wrong = await call(h, 'POST', '/v1/auth/password', { token: a, body: { current: 'not-the-password', new: 'violet-harbor-engine-2' } });
    assert.deepEqual([wrong.status, wrong.body.error.code], [401, 'INVALID_CREDENTIALS']);
    const weak = await call(h, 'POST', '/v1/auth/password', { token: a, body: { current: PASSWORD, new: 'password1234' } });
    assert.deepEqual([weak.status, weak.body.error.code], [400, 'WEAK_PASSWORD']);
    assert.equal((await call(h, 'GET', '/v1/auth/whoami', { token: b })).status, 200, 'failed changes end nothing');
    const ok = await call(h, 'POST', '/v1/auth/password', { token: a, body: { current: PASSWORD, new: 'violet-harbor-engine-2' } });
    assert.deepEqual([ok.status, ok.body], [200, { revokedSessions: 1 }]);
    assert.equal((await call(h, 'GET', '/v1/auth/whoami', { token: a })).status, 200);
    assert.equal((await call(h, 'GET', '/v1/auth/whoami', { token: b })).status, 401);
    assert.equal((await login(h, { username })).status, 401);
    assert.equal((await login(h, { username, password: 'violet-harbor-engine-2' })).status, 200);
    // Root holds no session: the self-service endpoints are for people.
    assert.equal((await call(h, 'POST', '/v1/auth/password', { token: h.rootToken, body: { current: 'x', new: 'y' } })).body.error.code, 'FORBIDDEN');
  });

  test('disabling a user ends their sessions at once and stops their logins', async () => {
    const user = await newUser(h, 'leaver');
    const tokens = [await sessionFor(h, user.username), await sessionFor(h, user.username)];
    const disabled = await call(h, 'POST', `/v1/users/${user.id}/disable`, { token: h.rootToken });
    assert.equal(disabled.status, 200);
    assert.ok(disabled.body.disabledAt);
    for (const token of tokens) assert.equal((await call(h, 'GET', '/v1/auth/whoami', { token })).status, 401);
    const live = await h.storage.db.selectFrom('sessions').select('id').where('user_id', '=', user.id).where('revoked_at', 'is', null).execute();
    assert.equal(live.length, 0);
    assert.equal((await login(h, { username: user.username })).status, 401);
    assert.equal((await call(h, 'POST', `/v1/users/${user.id}/disable`, { token: h.rootToken })).status, 200, 'disabling twice is harmless');
  });

  test('whoami shows who any credential speaks for', async () => {
    const { id, username } = await newUser(h, 'who');
    const token = await sessionFor(h, username);
    const me = await call(h, 'GET', '/v1/auth/whoami', { token });
    assert.deepEqual({ ...me.body, expiresAt: typeof me.body.expiresAt }, { type: 'user', id, name: username, tenant: 'default', mfaAt: null, expiresAt: 'string' });
    const root = await call(h, 'GET', '/v1/auth/whoami', { token: h.rootToken });
    assert.deepEqual([root.body.type, root.body.tenant, root.body.mfaAt], ['root', 'default', null]);
  });
});
