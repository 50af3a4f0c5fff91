import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Kysely } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { call, codeAt, enrolTotp, login, newUser, nextStep, sessionFor } from '../../../test/helpers/users.ts';
import type { Database } from '../../storage/schema.ts';
import { rewrapTotpSecrets } from '../identity/users/totp-rewrap.ts';
import { decodeSealedTotp } from '../identity/users/totp.ts';
import { createKeyService } from './key-service.ts';

/**
 * A database whose second `selectFrom('users')` (the rewrap's pass over pending TOTP secrets, the
 * re-encrypt's over confirmed ones)
 * first lets `interleave` run: the moment a TOTP confirmation can land between the two passes.
 */
function interleaved(db: Kysely<Database>, interleave: () => Promise<void>): Kysely<Database> {
  let usersSelects = 0;
  const delayExecute = <T extends object>(builder: T, run: boolean): T => new Proxy(builder, {
    get(target, prop) {
      const value = Reflect.get(target, prop) as unknown;
      if (typeof value !== 'function') return value;
      if (prop === 'execute' && run) return async () => { await interleave(); return (value as () => Promise<unknown>).call(target); };
      return (...args: unknown[]) => {
        const next = (value as (...a: unknown[]) => unknown).apply(target, args);
        return next && typeof next === 'object' ? delayExecute(next as object, run) : next;
      };
    },
  });
  return new Proxy(db, {
    get(target, prop) {
      const value = Reflect.get(target, prop) as unknown;
      if (prop === 'selectFrom') {
        return (table: string) => {
          const builder = target.selectFrom(table as 'users');
          return table === 'users' ? delayExecute(builder, ++usersSelects === 2) : builder;
        };
      }
      return typeof value === 'function' ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describeEachDialect('a KEK rewrap racing a TOTP confirmation', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a re-enrolment confirmed between the rewrap passes is still moved before the old KEK is retired: the user can sign in', async () => {
    const { username } = await newUser(h, 'racer');
    const oldSecret = await enrolTotp(h, await sessionFor(h, username));
    const token = await sessionFor(h, username, { totp: codeAt(oldSecret, h.clock.now()) });
    const newSecret = (await call(h, 'POST', '/v1/auth/totp/enroll', { token })).body.secret as string;
    await h.services.keys.rotate(h.ctx);

    let confirmed = 0;
    const keys = createKeyService({
      db: interleaved(h.storage.db, async () => {
        nextStep(h);
        confirmed = (await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(newSecret, h.clock.now()) } })).status;
      }),
      keyring: h.services.keyring, authz: h.services.authz, clock: h.clock, rows: h.services.rows, audit: h.services.audit,
    });
    await keys.rewrap(h.ctx);
    assert.equal(confirmed, 200, 'the confirmation landed mid-rewrap');

    assert.equal(await rewrapTotpSecrets(h.storage.db, h.ctx.tenantId, await h.services.keyring.rewrapperFor(h.ctx.tenantId)), 0, 'nothing left under an old KEK');
    nextStep(h);
    const signIn = await login(h, { username, totp: codeAt(newSecret, h.clock.now()) });
    assert.equal(signIn.status, 200, JSON.stringify(signIn.body));
  });
});

describeEachDialect('a re-encrypt racing a TOTP confirmation', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a re-enrolment confirmed between the passes over pending and confirmed seeds still ends under a fresh data key', async () => {
    const { username } = await newUser(h, 'reseal-racer');
    const oldSecret = await enrolTotp(h, await sessionFor(h, username));
    const token = await sessionFor(h, username, { totp: codeAt(oldSecret, h.clock.now()) });
    const newSecret = (await call(h, 'POST', '/v1/auth/totp/enroll', { token })).body.secret as string;
    const seed = (column: 'totp_secret' | 'totp_pending_secret') => h.storage.db.selectFrom('users').select(column)
      .where('username', '=', username).executeTakeFirstOrThrow().then((r) => (r as Record<typeof column, Uint8Array | null>)[column]);
    const pendingBefore = decodeSealedTotp((await seed('totp_pending_secret'))!)!;

    let confirmed = 0;
    const keys = createKeyService({
      db: interleaved(h.storage.db, async () => {
        nextStep(h);
        confirmed = (await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(newSecret, h.clock.now()) } })).status;
      }),
      keyring: h.services.keyring, authz: h.services.authz, clock: h.clock, rows: h.services.rows, audit: h.services.audit,
    });
    await keys.reencrypt(h.ctx);
    assert.equal(confirmed, 200, 'the confirmation landed mid-re-encrypt');

    const now = decodeSealedTotp((await seed('totp_secret'))!)!;
    assert.equal(now.ciphertext.equals(pendingBefore.ciphertext), false, 'the confirmed seed was resealed, not only moved');
    assert.equal(now.wrappedDek.equals(pendingBefore.wrappedDek), false);
    nextStep(h);
    const signIn = await login(h, { username, totp: codeAt(newSecret, h.clock.now()) });
    assert.equal(signIn.status, 200, JSON.stringify(signIn.body));
  });
});
