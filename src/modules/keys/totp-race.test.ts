import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Kysely } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { afterReads } from '../../../test/helpers/pause-after-read.ts';
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

/**
 * A user with a confirmed factor and a re-enrolment awaiting confirmation, and a key service whose
 * second read of users lets that confirmation land (`interleaved`); `confirmed()` is its HTTP status.
 */
async function confirmationMidway(h: Harness, name: string) {
  const { username } = await newUser(h, name);
  const oldSecret = await enrolTotp(h, await sessionFor(h, username));
  const token = await sessionFor(h, username, { totp: codeAt(oldSecret, h.clock.now()) });
  const newSecret = (await call(h, 'POST', '/v1/auth/totp/enroll', { token })).body.secret as string;
  let confirmed = 0;
  const keys = createKeyService({
    db: interleaved(h.storage.db, async () => {
      nextStep(h);
      confirmed = (await call(h, 'POST', '/v1/auth/totp/confirm', { token, body: { code: codeAt(newSecret, h.clock.now()) } })).status;
    }),
    keyring: h.services.keyring, authz: h.services.authz, clock: h.clock, rows: h.services.rows, audit: h.services.audit,
  });
  return { username, newSecret, keys, confirmed: () => confirmed };
}

/** The user signs in with the factor `secret` at the next time step. */
async function assertSignsIn(h: Harness, username: string, secret: string): Promise<void> {
  nextStep(h);
  const signIn = await login(h, { username, totp: codeAt(secret, h.clock.now()) });
  assert.equal(signIn.status, 200, JSON.stringify(signIn.body));
}

describeEachDialect('a KEK rewrap racing a TOTP confirmation', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a re-enrolment confirmed between the rewrap passes is still moved before the old KEK is retired: the user can sign in', async () => {
    const { username, newSecret, keys, confirmed } = await confirmationMidway(h, 'racer');
    await h.services.keys.rotate(h.ctx);
    await keys.rewrap(h.ctx);
    assert.equal(confirmed(), 200, 'the confirmation landed mid-rewrap');

    assert.equal(await rewrapTotpSecrets(h.storage.db, h.ctx.tenantId, await h.services.keyring.rewrapperFor(h.ctx.tenantId)), 0, 'nothing left under an old KEK');
    await assertSignsIn(h, username, newSecret);
  });
});

describeEachDialect('a re-encrypt racing a TOTP confirmation', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a re-enrolment confirmed between the passes over pending and confirmed seeds still ends under a fresh data key', async () => {
    const { username, newSecret, keys, confirmed } = await confirmationMidway(h, 'reseal-racer');
    const seed = (column: 'totp_secret' | 'totp_pending_secret') => h.storage.db.selectFrom('users').select(column)
      .where('username', '=', username).executeTakeFirstOrThrow().then((r) => (r as Record<typeof column, Uint8Array | null>)[column]);
    const pendingBefore = decodeSealedTotp((await seed('totp_pending_secret'))!)!;
    await keys.reencrypt(h.ctx);
    assert.equal(confirmed(), 200, 'the confirmation landed mid-re-encrypt');

    const now = decodeSealedTotp((await seed('totp_secret'))!)!;
    assert.equal(now.ciphertext.equals(pendingBefore.ciphertext), false, 'the confirmed seed was resealed, not only moved');
    assert.equal(now.wrappedDek.equals(pendingBefore.wrappedDek), false);
    await assertSignsIn(h, username, newSecret);
  });
});

describeEachDialect('the last TOTP pass of a retire racing another key operation', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a seed another key operation rewrites between that pass reading it and moving it is read again and moved before its KEK is retired',
    { skip: dialect !== 'postgres' && 'SQLite runs one transaction at a time: nothing lands inside the retire' }, async () => {
      const { username } = await newUser(h, 'retire-racer');
      const secret = await enrolTotp(h, await sessionFor(h, username));
      const seed = async () => (await h.storage.db.selectFrom('users').select('totp_secret').where('username', '=', username).executeTakeFirstOrThrow()).totp_secret!;
      const setSeed = async (blob: Uint8Array) => void await h.storage.db.updateTable('users').set({ totp_secret: blob }).where('username', '=', username).execute();
      const underV1 = await seed();
      await h.services.keys.rotate(h.ctx);
      // The same seed under version 2, as a re-encrypt (or rewrap) to version 2 racing the one below writes it.
      await rewrapTotpSecrets(h.storage.db, h.ctx.tenantId, await h.services.keyring.rewrapperFor(h.ctx.tenantId));
      const underV2 = await seed();
      await h.services.keys.rotate(h.ctx);

      const keys = createKeyService({
        db: h.storage.db.withPlugin(afterReads('users', {
          // After the first passes: an old blob the last pass (in the retiring transaction) will read...
          2: () => setSeed(underV1),
          // ...and, between its read and its guarded update, another operation's write under version 2.
          3: () => setSeed(underV2),
        })),
        keyring: h.services.keyring, authz: h.services.authz, clock: h.clock, rows: h.services.rows, audit: h.services.audit,
      });
      const done = await keys.rewrap(h.ctx);
      assert.equal(done.minDecryptionVersion, 3);
      assert.equal(await rewrapTotpSecrets(h.storage.db, h.ctx.tenantId, await h.services.keyring.rewrapperFor(h.ctx.tenantId)), 0, 'nothing left under a retired KEK');
      await assertSignsIn(h, username, secret);
    });
});
