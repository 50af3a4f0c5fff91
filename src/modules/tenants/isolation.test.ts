import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import type { TenantContext } from '../shared/context.ts';
import { rejects } from '../../../test/helpers/rejects.ts';

describeEachDialect('tenant isolation and tampered storage', (dialect) => {
  let h: Harness;
  let a: TenantContext;
  let b: TenantContext;
  before(async () => {
    h = await createHarness(dialect);
    a = h.ctx;
    b = h.contextFor((await h.services.tenants.create('acme')).id);
    await h.services.secrets.create(a, { name: 'SHARED_NAME', owner: 'team-a' });
    await h.services.values.write(a, 'SHARED_NAME', 'production', { value: 'value-of-a' });
    await h.services.secrets.create(a, { name: 'ONLY_IN_A', owner: 'team-a' });
    await h.services.values.write(a, 'ONLY_IN_A', 'production', { value: 'secret-of-a' });
    await h.services.secrets.create(b, { name: 'SHARED_NAME', owner: 'team-b' });
    await h.services.values.write(b, 'SHARED_NAME', 'production', { value: 'value-of-b' });
  });
  after(() => h.close());

  /** Rows changed behind Keyhold's back are read afresh once the sealed-row cache entry (1 s) has lapsed. */
  const past = () => h.clock.advance(1_001);

  test('each tenant has its own KEK and default environments', async () => {
    const envs = await h.services.tenants.listEnvironments(b.tenantId);
    assert.deepEqual(envs.map((e) => e.name).sort(), ['development', 'production', 'staging']);
    const keks = await h.storage.db.selectFrom('tenant_keks').select(['tenant_id', 'wrapped_key']).execute();
    assert.equal(new Set(keks.map((k) => k.tenant_id)).size, 2);
  });

  test('tenant B cannot see, read, write, describe or delete tenant A secrets: they do not exist for it', async () => {
    await rejects(h.services.values.read(b, 'ONLY_IN_A', 'production'), 'SECRET_NOT_FOUND');
    await rejects(h.services.secrets.describe(b, 'ONLY_IN_A'), 'SECRET_NOT_FOUND');
    await rejects(h.services.values.write(b, 'ONLY_IN_A', 'production', { value: 'x' }), 'SECRET_NOT_FOUND');
    await rejects(h.services.secrets.remove(b, 'ONLY_IN_A'), 'SECRET_NOT_FOUND');
    await rejects(h.services.values.history(b, 'ONLY_IN_A', 'production'), 'SECRET_NOT_FOUND');
    const names = (await h.services.secrets.list(b)).items.map((s) => s.name);
    assert.deepEqual(names, ['SHARED_NAME']);
  });

  test('the same name in two tenants holds two independent values', async () => {
    assert.equal((await h.services.values.read(a, 'SHARED_NAME', 'production')).value, 'value-of-a');
    assert.equal((await h.services.values.read(b, 'SHARED_NAME', 'production')).value, 'value-of-b');
  });

  test("tenant B's environment ids never resolve tenant A's values", async () => {
    const envA = await h.services.tenants.environment(a.tenantId, 'production');
    const row = await h.services.values.read(a, 'SHARED_NAME', 'production');
    assert.ok(row);
    // A forged context that points B at A's environment id still finds nothing: every join carries the tenant.
    const rows = await h.storage.db.selectFrom('secret_states').selectAll().where('environment_id', '=', envA.id).execute();
    assert.ok(rows.every((r) => r.tenant_id === a.tenantId));
  });

  async function versionRow(ctx: TenantContext, name: string, env: string) {
    return h.storage.db.selectFrom('secret_versions').innerJoin('secrets', 'secrets.id', 'secret_versions.secret_id')
      .innerJoin('environments', 'environments.id', 'secret_versions.environment_id')
      .select(['secret_versions.id', 'secret_versions.ciphertext', 'secret_versions.wrapped_dek'])
      .where('secrets.tenant_id', '=', ctx.tenantId).where('secrets.name', '=', name).where('environments.name', '=', env)
      .orderBy('secret_versions.version', 'desc').executeTakeFirstOrThrow();
  }

  test('a ciphertext copied into another tenant\'s row fails to decrypt instead of leaking', async () => {
    const src = await versionRow(a, 'SHARED_NAME', 'production');
    const dst = await versionRow(b, 'SHARED_NAME', 'production');
    await h.storage.db.updateTable('secret_versions').set({ ciphertext: src.ciphertext, wrapped_dek: src.wrapped_dek }).where('id', '=', dst.id).execute();
    past();
    await rejects(h.services.values.read(b, 'SHARED_NAME', 'production'), 'INTEGRITY_FAILURE');
    await h.storage.db.updateTable('secret_versions').set({ ciphertext: dst.ciphertext, wrapped_dek: dst.wrapped_dek }).where('id', '=', dst.id).execute();
    past();
    assert.equal((await h.services.values.read(b, 'SHARED_NAME', 'production')).value, 'value-of-b');
  });

  test('a ciphertext moved to another secret or environment of the same tenant fails to decrypt', async () => {
    await h.services.values.write(a, 'ONLY_IN_A', 'staging', { value: 'staging-of-a' });
    const prod = await versionRow(a, 'ONLY_IN_A', 'production');
    const staging = await versionRow(a, 'ONLY_IN_A', 'staging');
    const other = await versionRow(a, 'SHARED_NAME', 'production');
    await h.storage.db.updateTable('secret_versions').set({ ciphertext: prod.ciphertext, wrapped_dek: prod.wrapped_dek }).where('id', '=', staging.id).execute();
    past();
    await rejects(h.services.values.read(a, 'ONLY_IN_A', 'staging'), 'INTEGRITY_FAILURE');
    await h.storage.db.updateTable('secret_versions').set({ ciphertext: prod.ciphertext, wrapped_dek: prod.wrapped_dek }).where('id', '=', other.id).execute();
    past();
    await rejects(h.services.values.read(a, 'SHARED_NAME', 'production'), 'INTEGRITY_FAILURE');
    await h.storage.db.updateTable('secret_versions').set({ ciphertext: other.ciphertext, wrapped_dek: other.wrapped_dek }).where('id', '=', other.id).execute();
  });

  test('a flipped bit in a stored ciphertext or wrapped DEK fails closed', async () => {
    const row = await versionRow(a, 'SHARED_NAME', 'production');
    for (const column of ['ciphertext', 'wrapped_dek'] as const) {
      const tampered = Buffer.from(row[column]!);
      tampered[tampered.length - 3]! ^= 0x04;
      await h.storage.db.updateTable('secret_versions').set({ [column]: tampered }).where('id', '=', row.id).execute();
      past();
      await rejects(h.services.values.read(a, 'SHARED_NAME', 'production'), 'INTEGRITY_FAILURE');
      await h.storage.db.updateTable('secret_versions').set({ [column]: row[column] }).where('id', '=', row.id).execute();
      past();
    }
    assert.equal((await h.services.values.read(a, 'SHARED_NAME', 'production')).value, 'value-of-a');
  });
  test('a stored blob cut short, with an unknown algorithm byte or a key id no KEK ever had, is INTEGRITY_FAILURE, not a retired key', async () => {
    const row = await versionRow(a, 'SHARED_NAME', 'production');
    const withByte = (blob: Uint8Array, at: number, value: number) => Buffer.from(blob).fill(value, at, at + 1);
    const relabelled = Buffer.from(row.wrapped_dek!);
    relabelled.writeUInt32BE(99, 1); // the header's KEK version, authenticated: no KEK 99 exists
    const cases: Array<[string, { ciphertext?: Uint8Array; wrapped_dek?: Uint8Array }]> = [
      ['a ciphertext cut to its tag', { ciphertext: row.ciphertext!.subarray(row.ciphertext!.byteLength - 16) }],
      ['a ciphertext with an unknown algorithm byte', { ciphertext: withByte(row.ciphertext!, 0, 0x7f) }],
      ['a wrapped key cut inside its header', { wrapped_dek: row.wrapped_dek!.subarray(0, 3) }],
      ['a wrapped key cut to its header', { wrapped_dek: row.wrapped_dek!.subarray(0, 5) }],
      ['a wrapped key with an unknown algorithm byte', { wrapped_dek: withByte(row.wrapped_dek!, 0, 0x7f) }],
      ['a wrapped key naming a KEK version that never existed', { wrapped_dek: relabelled }],
    ];
    for (const [what, patch] of cases) {
      await h.storage.db.updateTable('secret_versions').set(patch).where('id', '=', row.id).execute();
      past();
      for (const opts of [{}, { version: 1 }]) {
        const got = await h.services.values.read(a, 'SHARED_NAME', 'production', opts).then(() => 'opened', (e: { code?: string }) => e.code);
        assert.equal(got, 'INTEGRITY_FAILURE', `${what} (${Object.keys(opts).length ? 'numbered' : 'labelled'} read)`);
      }
      await h.storage.db.updateTable('secret_versions').set({ ciphertext: row.ciphertext, wrapped_dek: row.wrapped_dek }).where('id', '=', row.id).execute();
      past();
    }
    assert.equal((await h.services.values.read(a, 'SHARED_NAME', 'production')).value, 'value-of-a');
  });
});
