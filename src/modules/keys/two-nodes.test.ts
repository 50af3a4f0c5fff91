import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { identitySettings } from '../../config/config.ts';
import { createHttpApp, createServices } from '../../main/compose.ts';
import { kekVersionOf } from '../../crypto/envelope.ts';
import { createLogger } from '../../platform/logger.ts';
import { decodeSealedTotp } from '../identity/users/totp.ts';
import type { Storage } from '../../storage/database.ts';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, ROLLBACK_WINDOW_MS, TEST_LIMITS, type Harness } from '../../../test/helpers/harness.ts';
import { newUser, sessionFor, ticketFor } from '../../../test/helpers/users.ts';

/**
 * Two servers on one database, each with its own caches: a KEK rotation and rewrap on one must
 * never leave the other wrapping data keys under the retired version (they would be unreadable
 * once the old KEK is deleted, and lost for good once the other node forgets it).
 */
describeEachDialect('KEK rotation with two nodes on one database', (dialect) => {
  let a: Harness;
  let bStorage: Storage;
  let b: ReturnType<typeof createServices>;

  before(async () => {
    a = await createHarness(dialect);
    bStorage = await a.database.open();
    b = createServices({
      config: { dataDir: a.database.dataDir, limits: TEST_LIMITS, rollbackWindowMs: ROLLBACK_WINDOW_MS, identity: identitySettings() },
      storage: bStorage, clock: a.clock,
    });
    for (const share of a.shares.slice(0, 2)) await b.system.unseal(share);
    await a.services.secrets.create(a.ctx, { name: 'SHARED', owner: 'ops' });
  });
  after(async () => {
    b.seal.seal();
    await bStorage.close();
    await a.close();
  });

  const kekVersions = async () => (await a.storage.db.selectFrom('secret_versions').select(['version', 'kek_version'])
    .where('tenant_id', '=', a.ctx.tenantId).orderBy('version').execute()).map((r) => [r.version, Number(r.kek_version)]);

  test('a write on the other node after rotate and rewrap is sealed under the new KEK, and every node reads every version', async () => {
    await b.values.write(a.ctx, 'SHARED', 'production', { value: 'written-by-b-before' }); // B caches KEK version 1
    await a.services.keys.rotate(a.ctx);
    await a.services.keys.rewrap(a.ctx);
    await b.values.write(a.ctx, 'SHARED', 'production', { value: 'written-by-b-after' });
    assert.deepEqual(await kekVersions(), [[1, 2], [2, 2]], 'no data key left under the retired version');
    assert.equal((await a.services.values.read(a.ctx, 'SHARED', 'production', { version: 2 })).value, 'written-by-b-after');
    // A node that starts afresh (no cache at all) reads both: nothing depends on what B remembered.
    b.seal.seal();
    for (const share of a.shares.slice(1, 3)) await b.system.unseal(share);
    assert.equal((await b.values.read(a.ctx, 'SHARED', 'production', { version: 1 })).value, 'written-by-b-before');
    assert.equal((await b.values.read(a.ctx, 'SHARED', 'production', { version: 2 })).value, 'written-by-b-after');
  });

  test("after a rotation alone (no rewrap yet), the other node's next write and TOTP enrolment use the new KEK", async () => {
    await b.values.write(a.ctx, 'SHARED', 'production', { value: 'b-caches-version-2' });
    const { id, username } = await newUser(a, 'two-nodes');
    const token = await sessionFor(a, username); // sessions live in the database: node B honours it
    const ticket = await ticketFor(a, id);
    await a.services.keys.rotate(a.ctx);
    await b.values.write(a.ctx, 'SHARED', 'production', { value: 'after-second-rotation' });
    assert.deepEqual((await kekVersions()).at(-1), [4, 3]);
    const bApp = await createHttpApp(b, { logger: createLogger({ level: 'silent' }), bodyLimit: TEST_LIMITS.maxBodyBytes });
    try {
      const enrol = await bApp.inject({ method: 'POST', url: '/v1/auth/totp/enroll', headers: { authorization: `Bearer ${token}` }, payload: { ticket } });
      assert.equal(enrol.statusCode, 200, enrol.body);
    } finally {
      await bApp.close();
    }
    const row = await a.storage.db.selectFrom('users').select('totp_pending_secret').where('username', '=', username).executeTakeFirstOrThrow();
    assert.equal(kekVersionOf(decodeSealedTotp(row.totp_pending_secret!)!.wrappedDek), 3);
  });

  test('a rotation that fails on one node leaves no key behind there: what either node seals under that version, both open', async () => {
    const ctx = a.contextFor((await a.services.tenants.create('rotating')).id);
    await a.services.secrets.create(ctx, { name: 'LATER', owner: 'ops' });
    // A's rotation makes its new KEK, then the audit log refuses the event: the transaction rolls back.
    await sql`alter table audit_events rename to audit_events_gone`.execute(a.storage.db);
    try {
      await assert.rejects(a.services.keys.rotate(ctx), { code: 'AUDIT_UNAVAILABLE' });
    } finally {
      await sql`alter table audit_events_gone rename to audit_events`.execute(a.storage.db);
    }
    // B rotates to the very version number A's rotation had taken, with a KEK of its own.
    assert.equal((await b.keys.rotate(ctx)).currentVersion, 2);
    await a.services.values.write(ctx, 'LATER', 'production', { value: 'sealed-by-a' });
    assert.equal((await b.values.read(ctx, 'LATER', 'production')).value, 'sealed-by-a', 'A sealed under the KEK in the database, not one only it had');
    await b.values.write(ctx, 'LATER', 'production', { value: 'sealed-by-b' });
    assert.equal((await a.services.values.read(ctx, 'LATER', 'production')).value, 'sealed-by-b');
  });
});
