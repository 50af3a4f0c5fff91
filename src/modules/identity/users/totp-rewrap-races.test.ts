import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Keyring } from '../../../crypto/keyring.ts';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { pauseAfterColumn } from '../../../../test/helpers/pause-after-column.ts';
import { call, codeAt, enrolTotp, freshIp, newUser, nextStep, PASSWORD, sessionFor } from '../../../../test/helpers/users.ts';
import type { TenantContext } from '../../shared/context.ts';
import { createAttemptGuards, DEFAULT_ATTEMPT_LIMITS } from './attempts.ts';
import { createLoginService } from './login-service.ts';
import { createPasswordHasher } from './passwords.ts';
import { createTotpService } from './totp-service.ts';
import { rewrapTotpSecrets } from './totp-rewrap.ts';
import { createUserRepository } from './user-repository.ts';

/**
 * A sign-in, step-up or TOTP confirmation loads the user's row, then opens the sealed TOTP seed in
 * it. A KEK rewrap that commits in between has moved the seed under the new KEK and deleted the old
 * one: the check reads the seed again and goes on, instead of answering 500 KEY_VERSION_RETIRED,
 * which stays for a seed really left under a retired version.
 */
describeEachDialect('a second-factor check racing a rotate and rewrap', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  const rotateAndRewrap = async () => {
    await h.services.keys.rotate(h.ctx);
    await h.services.keys.rewrap(h.ctx);
  };

  /** Services of their own over `db`, with `keyring` (the real one unless given). */
  const servicesOver = (db = h.storage.db, keyring: Pick<Keyring, 'sealerFor' | 'openValue' | 'invalidate'> = h.services.keyring) => {
    const repo = createUserRepository(db, dialect);
    const guards = createAttemptGuards(DEFAULT_ATTEMPT_LIMITS, h.clock);
    const totp = createTotpService({
      db, repo, keyring, tenants: h.services.tenants, sessions: h.services.sessions, guard: guards.factor, clock: h.clock,
      stepUpWindowMs: 10 * 60_000, audit: h.services.audit,
    });
    const logins = createLoginService({
      db, repo, tenants: h.services.tenants, sessions: h.services.sessions, totp, passwords: createPasswordHasher(), guards, clock: h.clock,
      audit: h.services.audit, identifiers: h.services.identifiers,
    });
    return { totp, logins };
  };
  /** Services whose first load of a row with `column` set lets a rotate and rewrap commit. */
  const racedServices = (column: 'totp_secret' | 'totp_pending_secret') => {
    const pause = pauseAfterColumn(column, rotateAndRewrap);
    return { ...servicesOver(h.storage.db.withPlugin(pause)), pause };
  };
  const contextOf = async (token: string): Promise<TenantContext> => {
    const p = (await h.services.authenticator.authenticate(token))!;
    return {
      tenantId: p.tenantId!, requestId: 'rewrap-race',
      actor: { type: 'user', id: p.id, name: p.name, mfaAt: p.mfaAt, credentialId: p.credentialId, homeTenantId: p.tenantId },
    };
  };
  const signIn = (logins: ReturnType<typeof servicesOver>['logins'], username: string, totp: string) =>
    logins.login({ tenant: 'default', username, password: PASSWORD, totp }, { requestId: 'rewrap-race', sourceIp: freshIp() });
  const leftUnderOldKek = async () => rewrapTotpSecrets(h.storage.db, h.ctx.tenantId, await h.services.keyring.rewrapperFor(h.ctx.tenantId));
  /** A user with a confirmed factor, and a session that has just stepped up with it. */
  const enrolled = async (prefix: string) => {
    const { id, username } = await newUser(h, prefix);
    const secret = await enrolTotp(h, await sessionFor(h, username));
    const token = await sessionFor(h, username, { totp: codeAt(secret, h.clock.now()) });
    nextStep(h);
    return { id, username, secret, token };
  };

  test('a sign-in whose user row was loaded just before a rewrap moved the TOTP seed signs in', async () => {
    const { username, secret } = await enrolled('race-login');
    const { logins, pause } = racedServices('totp_secret');
    const session = await signIn(logins, username, codeAt(secret, h.clock.now()));
    assert.ok(pause.fired(), 'the rewrap ran between the load and the check');
    assert.equal((await h.services.authenticator.authenticate(session.token))?.id, session.userId);
  });

  test('a step-up whose user row was loaded just before a rewrap moved the TOTP seed steps up', async () => {
    const { secret, token } = await enrolled('race-stepup');
    const { totp, pause } = racedServices('totp_secret');
    const result = await totp.stepUp(await contextOf(token), codeAt(secret, h.clock.now()));
    assert.ok(pause.fired());
    assert.equal(result.mfaAt, new Date(h.clock.now()).toISOString());
  });

  test('a confirmation whose user row was loaded just before a rewrap moved the pending seed confirms it, and the seed stays under the current KEK', async () => {
    const { username, token } = await enrolled('race-confirm');
    const newSecret = (await call(h, 'POST', '/v1/auth/totp/enroll', { token })).body.secret as string;
    nextStep(h);
    const { totp, pause } = racedServices('totp_pending_secret');
    assert.equal((await totp.confirm(await contextOf(token), codeAt(newSecret, h.clock.now()))).totpEnabled, true);
    assert.ok(pause.fired());
    assert.equal(await leftUnderOldKek(), 0, 'the promoted seed is the moved one');
    nextStep(h);
    const session = await signIn(h.services.logins, username, codeAt(newSecret, h.clock.now()));
    assert.ok(session.token);
  });

  test('a confirmation whose pending seed a rewrap moved after it was opened, before it was promoted, confirms it', async () => {
    const { username, token } = await enrolled('race-promote');
    const newSecret = (await call(h, 'POST', '/v1/auth/totp/enroll', { token })).body.secret as string;
    nextStep(h);
    const real = h.services.keyring;
    let rewrapped = false;
    const { totp } = servicesOver(h.storage.db, {
      sealerFor: (tenantId) => real.sealerFor(tenantId),
      invalidate: (tenantId) => real.invalidate(tenantId),
      async openValue(binding, ciphertext, wrappedDek) {
        const plain = await real.openValue(binding, ciphertext, wrappedDek);
        if (!rewrapped) {
          rewrapped = true;
          await rotateAndRewrap();
        }
        return plain;
      },
    });
    assert.equal((await totp.confirm(await contextOf(token), codeAt(newSecret, h.clock.now()))).totpEnabled, true);
    assert.ok(rewrapped);
    assert.equal(await leftUnderOldKek(), 0);
    nextStep(h);
    assert.ok((await signIn(h.services.logins, username, codeAt(newSecret, h.clock.now()))).token);
  });

  test('a confirmation whose pending seed a restarted enrolment replaced after it was opened is refused: the retry promotes only the same seed', async () => {
    const { username, token } = await enrolled('race-restart');
    const first = (await call(h, 'POST', '/v1/auth/totp/enroll', { token })).body.secret as string;
    nextStep(h);
    const real = h.services.keyring;
    let second = '';
    const { totp } = servicesOver(h.storage.db, {
      sealerFor: (tenantId) => real.sealerFor(tenantId),
      invalidate: (tenantId) => real.invalidate(tenantId),
      async openValue(binding, ciphertext, wrappedDek) {
        const plain = await real.openValue(binding, ciphertext, wrappedDek);
        if (!second) second = (await call(h, 'POST', '/v1/auth/totp/enroll', { token })).body.secret as string;
        return plain;
      },
    });
    await assert.rejects(totp.confirm(await contextOf(token), codeAt(first, h.clock.now())), (err: { code?: string }) => err.code === 'TOTP_INVALID');
    assert.ok(second, 'the enrolment restarted meanwhile');
    nextStep(h);
    assert.equal((await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(second, h.clock.now()) } })).status, 200);
    nextStep(h);
    assert.ok((await signIn(h.services.logins, username, codeAt(second, h.clock.now()))).token);
  });

  test('a seed really left under a retired KEK is still an error, not a refused code', async () => {
    const { id, username, secret } = await enrolled('race-corrupt');
    const row = () => h.storage.db.selectFrom('users').select('totp_secret').where('id', '=', id).executeTakeFirstOrThrow();
    const old = await row();
    await rotateAndRewrap();
    const moved = await row();
    const put = (r: typeof old) => h.storage.db.updateTable('users').set({ totp_secret: r.totp_secret }).where('id', '=', id).execute();
    await put(old);
    try {
      await assert.rejects(signIn(servicesOver().logins, username, codeAt(secret, h.clock.now())), (err: { code?: string }) => err.code === 'KEY_VERSION_RETIRED');
    } finally {
      await put(moved);
    }
    assert.ok((await signIn(servicesOver().logins, username, codeAt(secret, h.clock.now()))).token);
  });
});
