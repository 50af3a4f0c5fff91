import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';

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
});
