import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { eventsOf } from '../../../test/helpers/connectors.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';
import { within } from '../../../test/helpers/deadline.ts';

describeEachDialect('KEK rotation and rewrap', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'ROTATED', owner: 'ops' });
    for (let i = 0; i < 5; i++) await h.services.values.write(h.ctx, 'ROTATED', 'production', { value: `value-${i}` });
  });
  after(() => h.close());

  const snapshot = () => h.storage.db.selectFrom('secret_versions').select(['id', 'version', 'ciphertext', 'wrapped_dek', 'kek_version'])
    .where('tenant_id', '=', h.ctx.tenantId).orderBy('id').execute();

  test('rotation makes a new KEK version current for new writes; old values still decrypt', async () => {
    const status = await h.services.keys.rotate(h.ctx);
    assert.deepEqual([status.currentVersion, status.minDecryptionVersion], [2, 1]);
    const w = await h.services.values.write(h.ctx, 'ROTATED', 'staging', { value: 'after-rotate' });
    const rows = await snapshot();
    assert.equal(rows.find((r) => r.version === w.version && r.kek_version === 2) !== undefined, true);
    assert.equal((await h.services.values.read(h.ctx, 'ROTATED', 'production', { version: 1 })).value, 'value-0');
  });

  test('rewrap moves every DEK to the current KEK without touching any value ciphertext, then retires old KEKs', async () => {
    const before = await snapshot();
    const result = await h.services.keys.rewrap(h.ctx);
    const after = await snapshot();
    assert.equal(result.rewrapped, 5);
    assert.equal(result.minDecryptionVersion, 2);
    let changedWraps = 0;
    for (const row of after) {
      const old = before.find((b) => b.id === row.id)!;
      assert.ok(Buffer.from(old.ciphertext!).equals(Buffer.from(row.ciphertext!)), `ciphertext of version ${row.version} unchanged`);
      assert.equal(row.kek_version, 2);
      if (!Buffer.from(old.wrapped_dek!).equals(Buffer.from(row.wrapped_dek!))) changedWraps++;
    }
    assert.equal(changedWraps, 5, 'exactly the five DEKs under KEK 1 were rewrapped');
    const keks = await h.storage.db.selectFrom('tenant_keks').selectAll().where('tenant_id', '=', h.ctx.tenantId).orderBy('version').execute();
    assert.deepEqual(keks.map((k) => [k.version, k.wrapped_key === null, k.retired_at !== null]), [[1, true, true], [2, false, false]]);
    for (let i = 0; i < 5; i++) {
      assert.equal((await h.services.values.read(h.ctx, 'ROTATED', 'production', { version: i + 1 })).value, `value-${i}`);
    }
  });

  test('a value still wrapped under a retired KEK version is refused, not silently opened', async () => {
    const production = await h.services.tenants.environment(h.ctx.tenantId, 'production');
    const v1 = await h.storage.db.selectFrom('secret_versions').select(['id', 'wrapped_dek']).where('tenant_id', '=', h.ctx.tenantId)
      .where('environment_id', '=', production.id).where('version', '=', 1).executeTakeFirstOrThrow();
    const relabelled = Buffer.from(v1.wrapped_dek!);
    relabelled.writeUInt32BE(1, 1);
    await h.storage.db.updateTable('secret_versions').set({ wrapped_dek: relabelled }).where('id', '=', v1.id).execute();
    await assert.rejects(h.services.values.read(h.ctx, 'ROTATED', 'production', { version: 1 }), { code: 'KEY_VERSION_RETIRED' });
    await h.storage.db.updateTable('secret_versions').set({ wrapped_dek: v1.wrapped_dek }).where('id', '=', v1.id).execute();
  });

  test('rewrap survives a seal and unseal cycle (keys reload from storage)', async () => {
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    await h.services.system.unseal(h.shares[1]!);
    await h.services.system.unseal(h.shares[2]!);
    assert.equal((await h.services.values.read(h.ctx, 'ROTATED', 'production')).value, 'value-4');
  });

  const seqAfter = async (action: string, seq: number) => (await eventsOf(h, action)).filter((e) => e.seq > seq);
  const lastSeq = async () => (await h.storage.db.selectFrom('audit_events').select('seq').orderBy('seq', 'desc').limit(1).executeTakeFirstOrThrow()).seq;

  test('a rewrap that fails part way records a failed event with its reason and how far it got; committed batches keep theirs', async () => {
    await h.services.keys.rotate(h.ctx);
    const from = await lastSeq();
    const victim = (await snapshot()).find((r) => r.version === 3)!;
    const broken = Buffer.from(victim.wrapped_dek!);
    broken[broken.length - 1]! ^= 0x01;
    await h.storage.db.updateTable('secret_versions').set({ wrapped_dek: broken }).where('id', '=', victim.id).execute();
    try {
      await assert.rejects(h.services.keys.rewrap(h.ctx, { batchSize: 1 }), { code: 'INTEGRITY_FAILURE' });
    } finally {
      await h.storage.db.updateTable('secret_versions').set({ wrapped_dek: victim.wrapped_dek }).where('id', '=', victim.id).execute();
    }
    const starts = await seqAfter('key.rewrap-start', from);
    const batches = await seqAfter('key.rewrap-batch', from);
    const ends = await seqAfter('key.rewrap', from);
    assert.equal(starts.length, 1);
    assert.deepEqual(ends.map((e) => [e.outcome, e.reason, e.context.batches, e.context.rewrapped]),
      [['failed', 'INTEGRITY_FAILURE', String(batches.length), String(batches.reduce((n, b) => n + Number(b.context.rewrapped), 0))]]);
  });

  test('a rewrap records its start, each committed batch with its count, and its finish; versions and counts only', async () => {
    const from = await lastSeq();
    const result = await h.services.keys.rewrap(h.ctx, { batchSize: 2 });
    const starts = await seqAfter('key.rewrap-start', from);
    const batches = await seqAfter('key.rewrap-batch', from);
    const ends = await seqAfter('key.rewrap', from);
    assert.deepEqual(starts.map((e) => [e.outcome, e.context.toVersion]), [['allowed', '3']]);
    assert.ok(batches.length >= 2, 'several batches of two');
    assert.equal(batches.reduce((n, b) => n + Number(b.context.rewrapped), 0), result.rewrapped);
    assert.deepEqual(ends.map((e) => [e.outcome, e.context.rewrapped, e.context.batches, e.context.minDecryptionVersion]),
      [['allowed', String(result.rewrapped), String(batches.length), '3']]);
    assert.ok(starts[0]!.seq < batches[0]!.seq && batches.at(-1)!.seq < ends[0]!.seq, 'in order');
    for (const e of [...starts, ...batches, ...ends]) {
      for (const [key, value] of Object.entries(e.context)) {
        if (!['requestId', 'sourceIp', 'userAgent', 'credentialId'].includes(key)) assert.match(value, /^\d+$/, `${key} is a count or a version`);
      }
    }
  });

  test('a data key whose row names an older KEK version than the key itself ends the rewrap with INTEGRITY_FAILURE instead of looping', async () => {
    await h.services.keys.rotate(h.ctx);
    const w = await h.services.values.write(h.ctx, 'ROTATED', 'development', { value: 'row-disagrees' });
    const row = (await snapshot()).find((r) => r.version === w.version && r.kek_version === 4)!;
    // The header says 4 (current), the column 3: every pass selects the row, and nothing moves it.
    await h.storage.db.updateTable('secret_versions').set({ kek_version: 3 }).where('id', '=', row.id).execute();
    try {
      const outcome = await within(
        h.services.keys.rewrap(h.ctx, { batchSize: 10 }).then(() => 'finished', (err: { code?: string }) => err.code),
        10_000, 'still looping after 10 s',
      );
      assert.equal(outcome, 'INTEGRITY_FAILURE');
    } finally {
      await h.storage.db.updateTable('secret_versions').set({ kek_version: 4 }).where('id', '=', row.id).execute();
    }
    assert.equal((await h.services.keys.rewrap(h.ctx)).minDecryptionVersion, 4);
  });

  test('a wrapped data key cut too short to name its KEK version stops a rewrap and a re-encrypt with INTEGRITY_FAILURE, not KEY_VERSION_RETIRED', async () => {
    await h.services.keys.rotate(h.ctx);
    const victim = (await snapshot()).find((r) => r.version === 2)!;
    await h.storage.db.updateTable('secret_versions').set({ wrapped_dek: Buffer.from(victim.wrapped_dek!).subarray(0, 3) }).where('id', '=', victim.id).execute();
    try {
      await assert.rejects(h.services.keys.rewrap(h.ctx, { batchSize: 1 }), { code: 'INTEGRITY_FAILURE' }, 'rewrap');
      await assert.rejects(h.services.keys.reencrypt(h.ctx, { batchSize: 1 }), { code: 'INTEGRITY_FAILURE' }, 're-encrypt');
    } finally {
      await h.storage.db.updateTable('secret_versions').set({ wrapped_dek: victim.wrapped_dek }).where('id', '=', victim.id).execute();
    }
  });

  test('a secret admin, short of tenant admin, may not see, rotate, rewrap or re-encrypt the tenant\'s keys: FORBIDDEN, and the keys stay as they were', async () => {
    const admin = await userContext(h, h.ctx.tenantId, 'sally-secret-admin-keys');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: admin.id, role: 'secret-admin' });
    const keks = () => h.storage.db.selectFrom('tenant_keks').select(['version', 'retired_at']).where('tenant_id', '=', h.ctx.tenantId).orderBy('version').execute();
    const before = await keks();
    const ops = { status: () => h.services.keys.status(admin.ctx()), rotate: () => h.services.keys.rotate(admin.ctx()), rewrap: () => h.services.keys.rewrap(admin.ctx()), reencrypt: () => h.services.keys.reencrypt(admin.ctx()) };
    for (const [name, op] of Object.entries(ops)) assert.equal(await codeOf(op()), 'FORBIDDEN', name);
    assert.deepEqual(await keks(), before);
  });
});
