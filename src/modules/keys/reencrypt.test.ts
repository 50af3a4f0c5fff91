import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { eventsOf } from '../../../test/helpers/connectors.ts';
import { machineContext } from '../../../test/helpers/identities.ts';
import { pauseAfterRead } from '../../../test/helpers/pause-after-read.ts';
import { createKeyService } from './key-service.ts';
import { aeadOpen, toKeyObject } from '../../crypto/aead.ts';
import { kekVersionOf, unwrapDek, valueAad } from '../../crypto/envelope.ts';
import { unwrapKek } from '../../crypto/root/root-key.ts';
import { decodeSealedTotp, totpBinding } from '../identity/users/totp.ts';
import { call, codeAt, enrolTotp, login, newUser, nextStep, sessionFor, ticketFor } from '../../../test/helpers/users.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';


describeEachDialect('re-encrypt after a suspected key compromise', (dialect) => {
  let h: Harness;
  /** Every value written, by environment and version. */
  const written = new Map<string, Map<number, string>>();
  const write = async (env: string, value: string) => {
    const { version } = await h.services.values.write(h.ctx, 'RESEALED', env, { value });
    if (!written.has(env)) written.set(env, new Map());
    written.get(env)!.set(version, value);
  };
  const snapshot = async () => new Map((await h.storage.db.selectFrom('secret_versions')
    .select(['id', 'version', 'ciphertext', 'wrapped_dek', 'kek_version']).where('tenant_id', '=', h.ctx.tenantId).execute())
    .map((r) => [r.id, r]));
  const readsBack = async () => {
    for (const [env, versions] of written) {
      for (const [version, value] of versions) assert.equal((await h.services.values.read(h.ctx, 'RESEALED', env, { version })).value, value, `${env} v${version}`);
    }
  };
  const lastSeq = async () => (await h.storage.db.selectFrom('audit_events').select('seq').orderBy('seq', 'desc').limit(1).executeTakeFirstOrThrow()).seq;

  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'RESEALED', owner: 'ops' });
    for (let i = 0; i < 4; i++) await write('production', `prod-value-${i}`);
    await write('staging', 'staging-value');
    await h.services.secrets.destroy(h.ctx, 'RESEALED', { environment: 'production', versions: [1] });
    written.get('production')!.delete(1);
  });
  after(() => h.close());

  test('every stored value gets a fresh data key under a new KEK, reads back unchanged, and older KEKs are retired', async () => {
    const before = await snapshot();
    const result = await h.services.keys.reencrypt(h.ctx, { batchSize: 2 });
    const after = await snapshot();
    assert.equal(result.resealed, 4, 'three live production versions and one in staging');
    assert.deepEqual([result.currentVersion, result.minDecryptionVersion], [2, 2]);
    for (const [id, row] of after) {
      const old = before.get(id)!;
      if (old.wrapped_dek === null) {
        assert.deepEqual([row.ciphertext, row.wrapped_dek], [null, null], 'a destroyed version stays destroyed');
        continue;
      }
      assert.equal(row.kek_version, 2);
      assert.equal(Buffer.from(row.ciphertext!).equals(Buffer.from(old.ciphertext!)), false, `v${row.version}: a new ciphertext`);
      assert.equal(Buffer.from(row.wrapped_dek!).equals(Buffer.from(old.wrapped_dek!)), false, `v${row.version}: a new data key`);
    }
    const keks = await h.storage.db.selectFrom('tenant_keks').selectAll().where('tenant_id', '=', h.ctx.tenantId).orderBy('version').execute();
    assert.deepEqual(keks.map((k) => [k.version, k.wrapped_key === null, k.retired_at !== null]), [[1, true, true], [2, false, false]]);
    await readsBack();

    // A copy of a row taken before (ciphertext and wrapped data key) opens nothing any more.
    const [id, stolen] = [...before].find(([, r]) => r.wrapped_dek !== null && r.version === 4)!;
    const current = after.get(id)!;
    await h.storage.db.updateTable('secret_versions').set({ ciphertext: stolen.ciphertext, wrapped_dek: stolen.wrapped_dek, kek_version: stolen.kek_version }).where('id', '=', id).execute();
    try {
      await assert.rejects(h.services.values.read(h.ctx, 'RESEALED', 'production', { version: 4 }), { code: 'KEY_VERSION_RETIRED' });
    } finally {
      await h.storage.db.updateTable('secret_versions').set({ ciphertext: current.ciphertext, wrapped_dek: current.wrapped_dek, kek_version: current.kek_version }).where('id', '=', id).execute();
    }
  });

  test('it records its start, the rotation, each committed batch with its count and its end; versions and counts only', async () => {
    const from = await lastSeq();
    const result = await h.services.keys.reencrypt(h.ctx, { batchSize: 3 });
    const events = (await h.storage.db.selectFrom('audit_events').select(['seq', 'action']).where('seq', '>', from).where('action', 'like', 'key.%').orderBy('seq').execute()).map((e) => e.action);
    assert.deepEqual(events, ['key.reencrypt-start', 'key.rotate', 'key.reencrypt-batch', 'key.reencrypt-batch', 'key.reencrypt']);
    const batches = (await eventsOf(h, 'key.reencrypt-batch')).filter((e) => e.seq > from);
    assert.equal(batches.reduce((n, b) => n + Number(b.context.resealed), 0), result.resealed);
    const [end] = (await eventsOf(h, 'key.reencrypt')).filter((e) => e.seq > from);
    assert.deepEqual([end!.outcome, end!.context.resealed, end!.context.batches, end!.context.minDecryptionVersion], ['allowed', '4', '2', '3']);
    for (const e of [...batches, end!]) {
      for (const [key, value] of Object.entries(e.context)) {
        if (!['requestId', 'sourceIp', 'userAgent', 'credentialId'].includes(key)) assert.match(value, /^\d+$/, `${key} is a count or a version`);
      }
    }
  });

  test('a tampered value stops it part way with INTEGRITY_FAILURE: committed batches stay, older KEKs stay usable, and a run after the repair finishes', async () => {
    const from = await lastSeq();
    const rows = [...(await snapshot()).values()].filter((r) => r.wrapped_dek !== null).sort((a, b) => a.id.localeCompare(b.id));
    const victim = rows.at(-1)!; // the last in the walk's order: earlier batches commit first
    const broken = Buffer.from(victim.ciphertext!);
    broken[broken.length - 1]! ^= 0x01;
    await h.storage.db.updateTable('secret_versions').set({ ciphertext: broken }).where('id', '=', victim.id).execute();
    try {
      assert.equal(await codeOf(h.services.keys.reencrypt(h.ctx, { batchSize: 1 })), 'INTEGRITY_FAILURE');
    } finally {
      await h.storage.db.updateTable('secret_versions').set({ ciphertext: victim.ciphertext }).where('id', '=', victim.id).execute();
    }
    const [end] = (await eventsOf(h, 'key.reencrypt')).filter((e) => e.seq > from);
    assert.deepEqual([end!.outcome, end!.reason, end!.context.resealed, end!.context.batches, end!.context.toVersion], ['failed', 'INTEGRITY_FAILURE', '3', '3', '4']);
    const status = await h.services.keys.status(h.ctx);
    assert.deepEqual([status.currentVersion, status.minDecryptionVersion], [4, 3], 'rotated, but nothing retired');
    await readsBack();
    const done = await h.services.keys.reencrypt(h.ctx);
    assert.deepEqual([done.resealed, done.currentVersion, done.minDecryptionVersion], [4, 5, 5]);
    await readsBack();
  });

  /** Asserts every row stored in `before` (with a value) now has a new ciphertext and a new data key. */
  const allResealed = async (before: Awaited<ReturnType<typeof snapshot>>) => {
    const after = await snapshot();
    for (const [id, old] of before) {
      if (old.wrapped_dek === null) continue;
      assert.equal(Buffer.from(after.get(id)!.wrapped_dek!).equals(Buffer.from(old.wrapped_dek)), false, `v${old.version} has a new data key`);
      assert.equal(Buffer.from(after.get(id)!.ciphertext!).equals(Buffer.from(old.ciphertext!)), false, `v${old.version} has a new ciphertext`);
    }
  };

  test('a rewrap that lands after its rotation moves old data keys under the new KEK: the walk still reseals them (and the row it had read)', async () => {
    const before = await snapshot();
    let rewrapped = -1;
    const paused = pauseAfterRead('secret_versions', async () => {
      rewrapped = (await h.services.keys.rewrap(h.ctx)).rewrapped;
    });
    const keys = createKeyService({ db: h.storage.db.withPlugin(paused), keyring: h.services.keyring, authz: h.services.authz, clock: h.clock, rows: h.services.rows, audit: h.services.audit });
    const result = await keys.reencrypt(h.ctx, { batchSize: 1 });
    assert.ok(paused.fired());
    assert.equal(rewrapped, 4, 'the rewrap moved every old data key, unchanged, under the new KEK');
    assert.equal(result.resealed, 4);
    await allResealed(before);
    await readsBack();
  });

  test('writes and readers racing it: no read fails, every value reads back, and every value stored before has a new data key', async () => {
    const before = await snapshot();
    let reading = true;
    const reads: string[] = [];
    const reader = (async () => {
      while (reading) reads.push(await codeOf(h.services.values.read(h.ctx, 'RESEALED', 'staging')));
    })();
    const [reencrypted] = await Promise.all([
      codeOf(h.services.keys.reencrypt(h.ctx, { batchSize: 1 })),
      (async () => {
        for (let i = 0; i < 6; i++) await write('development', `dev-during-${i}`);
      })(),
    ]);
    reading = false;
    await reader;
    assert.equal(reencrypted, 'ok');
    assert.ok(reads.length > 0);
    assert.deepEqual([...new Set(reads)], ['ok'], 'no read failed while values were resealed');
    await allResealed(before);
    const status = await h.services.keys.status(h.ctx);
    assert.equal(status.minDecryptionVersion, status.currentVersion, 'every older KEK retired');
    await readsBack();
  });

  test("another tenant's values and keys are left exactly as they were", async () => {
    const other = await h.services.tenants.create('reencrypt-other');
    const otherCtx = h.contextFor(other.id);
    await h.services.secrets.create(otherCtx, { name: 'RESEALED', owner: 'ops' });
    await h.services.values.write(otherCtx, 'RESEALED', 'production', { value: 'other-tenant-value' });
    const rowsOf = () => h.storage.db.selectFrom('secret_versions').select(['id', 'ciphertext', 'wrapped_dek', 'kek_version']).where('tenant_id', '=', other.id).execute();
    const keksOf = () => h.storage.db.selectFrom('tenant_keks').select(['version', 'wrapped_key', 'retired_at']).where('tenant_id', '=', other.id).orderBy('version').execute();
    const [rowsBefore, keksBefore] = [await rowsOf(), await keksOf()];
    await h.services.keys.reencrypt(h.ctx);
    assert.deepEqual(await rowsOf(), rowsBefore);
    assert.deepEqual(await keksOf(), keksBefore);
    assert.equal((await h.services.values.read(otherCtx, 'RESEALED', 'production')).value, 'other-tenant-value');
  });

  test('only admin may run it: a builder is refused and no key version is created', async () => {
    const ctx = (await machineContext(h, 'reencrypt-builder', { role: 'builder' })).ctx();
    const before = await h.services.keys.status(h.ctx);
    assert.equal(await codeOf(h.services.keys.reencrypt(ctx)), 'FORBIDDEN');
    assert.equal((await h.services.keys.status(h.ctx)).currentVersion, before.currentVersion);
  });
});

/**
 * TOTP seeds are sealed under the tenant KEK like values: a data key taken with the old KEK (or
 * unwrapped from a stolen row) must open no seed the tenant holds after the re-encrypt either.
 */
describeEachDialect('re-encrypt and TOTP seeds', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('confirmed and pending seeds get fresh data keys: the old ones open neither, and both factors still work', async () => {
    const confirmedUser = await newUser(h, 'reseal-confirmed');
    const confirmedSecret = await enrolTotp(h, await sessionFor(h, confirmedUser.username));
    const pendingUser = await newUser(h, 'reseal-pending');
    const pendingToken = await sessionFor(h, pendingUser.username);
    const enrol = await call(h, 'POST', '/v1/auth/totp/enroll', { token: pendingToken, body: { ticket: await ticketFor(h, pendingUser.id) } });
    assert.equal(enrol.status, 200, JSON.stringify(enrol.body));
    const pendingSecret = enrol.body.secret as string;

    const seeds = async () => {
      const rows = await h.storage.db.selectFrom('users').select(['id', 'totp_secret', 'totp_pending_secret'])
        .where('id', 'in', [confirmedUser.id, pendingUser.id]).execute();
      const byId = new Map(rows.map((r) => [r.id, r]));
      return [
        { userId: confirmedUser.id, parts: decodeSealedTotp(byId.get(confirmedUser.id)!.totp_secret!)! },
        { userId: pendingUser.id, parts: decodeSealedTotp(byId.get(pendingUser.id)!.totp_pending_secret!)! },
      ];
    };
    const before = await seeds();
    const { current } = await h.services.keys.status(h.ctx).then((s) => ({ current: s.currentVersion }));
    const stolenKekRow = await h.storage.db.selectFrom('tenant_keks').select('wrapped_key')
      .where('tenant_id', '=', h.ctx.tenantId).where('version', '=', current).executeTakeFirstOrThrow();
    const stolenKek = toKeyObject(unwrapKek(h.services.seal.rootKey(), h.ctx.tenantId, current, stolenKekRow.wrapped_key!));

    const result = await h.services.keys.reencrypt(h.ctx);
    const after = await seeds();
    for (const [i, old] of before.entries()) {
      const now = after[i]!;
      const binding = totpBinding(h.ctx.tenantId, old.userId);
      assert.equal(kekVersionOf(now.parts.wrappedDek), result.currentVersion);
      const stolenDek = toKeyObject(unwrapDek(stolenKek, binding, old.parts.wrappedDek));
      assert.ok(aeadOpen(stolenDek, old.parts.ciphertext, valueAad(binding)).byteLength > 0, 'the stolen data key opened the seed before');
      assert.throws(() => aeadOpen(stolenDek, now.parts.ciphertext, valueAad(binding)), { code: 'INTEGRITY_FAILURE' }, 'the stolen data key opens no seed held now');
    }
    const [end] = (await eventsOf(h, 'key.reencrypt')).slice(-1);
    assert.equal(end!.context.totpResealed, '2');

    nextStep(h);
    const signIn = await login(h, { username: confirmedUser.username, totp: codeAt(confirmedSecret, h.clock.now()) });
    assert.equal(signIn.status, 200, JSON.stringify(signIn.body));
    const confirm = await call(h, 'POST', '/v1/auth/totp/confirm', { token: pendingToken, body: { code: codeAt(pendingSecret, h.clock.now()) } });
    assert.equal(confirm.status, 200, JSON.stringify(confirm.body));
  });
});
