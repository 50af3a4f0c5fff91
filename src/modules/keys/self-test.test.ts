import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { eventsOf } from '../../../test/helpers/connectors.ts';
import { createKeyring, type KekStore } from '../../crypto/keyring.ts';
import { createKekRepository } from './kek-repository.ts';
import { createKeySelfTest } from './self-test.ts';

describeEachDialect('the periodic KEK self-test (SPEC §2)', (dialect) => {
  let h: Harness;
  let other: string;
  before(async () => {
    h = await createHarness(dialect);
    other = (await h.services.tenants.create('self-test-other')).id;
    await h.services.keys.rotate(h.ctx); // the default tenant: versions 1 and 2 both usable
    await h.services.secrets.create(h.ctx, { name: 'SELF_TESTED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'SELF_TESTED', 'production', { value: 'still-readable' });
  });
  after(() => h.close());

  const selfTestEvents = () => eventsOf(h, 'system.self-test');
  const kekRow = (tenantId: string, version: number) => h.storage.db.selectFrom('tenant_keks').select('wrapped_key')
    .where('tenant_id', '=', tenantId).where('version', '=', version).executeTakeFirstOrThrow();
  const setKek = (tenantId: string, version: number, wrapped: Uint8Array | null) => h.storage.db.updateTable('tenant_keks')
    .set({ wrapped_key: wrapped }).where('tenant_id', '=', tenantId).where('version', '=', version).execute();

  test('healthy keys: every usable version of every tenant passes, and the run is one audit event with counts', async () => {
    const seen = (await selfTestEvents()).length;
    const report = await h.services.selfTest.run();
    assert.equal(report.ok, true);
    assert.deepEqual(report.failures, []);
    assert.equal(report.tenants, 2);
    assert.equal(report.keys, 3, 'two versions of the default tenant, one of the other');
    assert.deepEqual(h.services.selfTest.last(), report);
    const events = (await selfTestEvents()).slice(seen);
    assert.deepEqual(events.map((e) => [e.outcome, e.tenant_id, e.actor_type, e.context.tenants, e.context.keys, e.context.failed]), [['allowed', null, 'system', '2', '3', '0']]);
  });

  test('a stored KEK that no longer unwraps fails the test, naming tenant and version, though the key in memory still serves reads', async () => {
    const { wrapped_key: good } = await kekRow(h.ctx.tenantId, 2);
    const broken = Buffer.from(good!);
    broken[broken.length - 1]! ^= 0x01;
    await setKek(h.ctx.tenantId, 2, broken);
    try {
      assert.equal((await h.services.values.read(h.ctx, 'SELF_TESTED', 'production')).value, 'still-readable', 'the cached KEK hides it from reads');
      const report = await h.services.selfTest.run();
      assert.equal(report.ok, false);
      assert.deepEqual(report.failures, [{ tenantId: h.ctx.tenantId, version: 2, reason: 'INTEGRITY_FAILURE' }]);
      const [event] = (await selfTestEvents()).slice(-1);
      assert.deepEqual([event!.outcome, event!.reason, event!.context.failed, event!.context.failures], ['failed', 'INTEGRITY_FAILURE', '1', `${h.ctx.tenantId}:2:INTEGRITY_FAILURE`]);
    } finally {
      await setKek(h.ctx.tenantId, 2, good);
    }
    assert.equal((await h.services.selfTest.run()).ok, true, 'repaired, it passes again');
  });

  test("another version's (or tenant's) wrapped KEK moved into a row fails: the wrap is bound to both", async () => {
    const { wrapped_key: good } = await kekRow(h.ctx.tenantId, 1);
    const { wrapped_key: otherTenants } = await kekRow(other, 1);
    const { wrapped_key: version2 } = await kekRow(h.ctx.tenantId, 2);
    try {
      await setKek(h.ctx.tenantId, 1, version2);
      assert.deepEqual((await h.services.selfTest.run()).failures, [{ tenantId: h.ctx.tenantId, version: 1, reason: 'INTEGRITY_FAILURE' }]);
      await setKek(h.ctx.tenantId, 1, otherTenants);
      assert.deepEqual((await h.services.selfTest.run()).failures, [{ tenantId: h.ctx.tenantId, version: 1, reason: 'INTEGRITY_FAILURE' }]);
    } finally {
      await setKek(h.ctx.tenantId, 1, good);
    }
  });

  test('a usable version whose material is gone fails with KEY_VERSION_RETIRED', async () => {
    const { wrapped_key: good } = await kekRow(other, 1);
    await setKek(other, 1, null);
    try {
      assert.deepEqual((await h.services.selfTest.run()).failures, [{ tenantId: other, version: 1, reason: 'KEY_VERSION_RETIRED' }]);
    } finally {
      await setKek(other, 1, good);
    }
  });

  test('two runs at once are one run; while sealed it refuses (SEALED) and leaves the last report and the trail as they were', async () => {
    const seen = (await selfTestEvents()).length;
    const [a, b] = await Promise.all([h.services.selfTest.run(), h.services.selfTest.run()]);
    assert.equal(a, b);
    assert.equal((await selfTestEvents()).length, seen + 1);
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    try {
      await assert.rejects(h.services.selfTest.run(), { code: 'SEALED' });
      assert.equal(h.services.selfTest.last(), a);
    } finally {
      await h.services.system.unseal(h.shares[0]!);
      await h.services.system.unseal(h.shares[1]!);
    }
    assert.equal((await selfTestEvents()).length, seen + 1, 'nothing recorded for the refused run');
  });

  test('over HTTP it is root only: a tenant admin is refused, root runs it and reads the last report', async () => {
    const admin = await h.services.machines.create(h.ctx, { name: 'self-test-admin', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: admin.id, role: 'tenant-admin' });
    const { token } = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: admin.id, name: 'self-test-admin', ttlMs: 60_000 });
    for (const method of ['GET', 'POST'] as const) {
      const res = await h.app.inject({ method, url: '/v1/sys/self-test', headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.statusCode, 403, `${method}: ${res.body}`);
    }
    const root = { authorization: `Bearer ${h.rootToken}` };
    const ran = await h.app.inject({ method: 'POST', url: '/v1/sys/self-test', headers: root });
    assert.equal(ran.statusCode, 200, ran.body);
    assert.equal(ran.json().ok, true);
    const last = await h.app.inject({ method: 'GET', url: '/v1/sys/self-test', headers: root });
    assert.deepEqual(last.json(), { last: ran.json() });
  });
  /** A self-test over its own keyring (nothing cached), whose store runs `onState` once a tenant's key state was read. */
  function isolatedRun(onState: (tenantId: string) => Promise<void>) {
    const repo = createKekRepository(h.storage.db);
    const kekLoads: string[] = [];
    const store: KekStore = {
      async loadState(tenantId) {
        const state = await repo.loadState(tenantId);
        await onState(tenantId);
        return state;
      },
      async loadWrappedKek(tenantId, version) {
        kekLoads.push(`${tenantId}:${version}`);
        return repo.loadWrappedKek(tenantId, version);
      },
    };
    const keyring = createKeyring({ store, root: h.services.seal });
    return { keyring, kekLoads, selfTest: createKeySelfTest({ db: h.storage.db, keyring, audit: h.services.audit, clock: h.clock }) };
  }

  test('a version a rewrap retires while the run reads it is not reported: no false alarm for a key no value needs any more', async () => {
    const ctx = h.contextFor((await h.services.tenants.create('self-test-retiring')).id);
    await h.services.keys.rotate(ctx); // versions 1 and 2 usable
    let rewrapped = false;
    const { selfTest } = isolatedRun(async (tenantId) => {
      if (tenantId !== ctx.tenantId || rewrapped) return;
      rewrapped = true;
      await h.services.keys.rewrap(ctx); // version 1 retired (material deleted) after the run read 1..2 as usable
    });
    const seen = (await selfTestEvents()).length;
    const report = await selfTest.run();
    assert.ok(rewrapped);
    assert.deepEqual(report.failures, []);
    assert.equal(report.ok, true);
    assert.deepEqual((await selfTestEvents()).slice(seen).map((e) => e.outcome), ['allowed']);
    // A version whose material is gone while the minimum stayed put is still a failure.
    const { wrapped_key: good } = await kekRow(ctx.tenantId, 2);
    await setKek(ctx.tenantId, 2, null);
    try {
      assert.deepEqual((await isolatedRun(async () => {}).selfTest.run()).failures, [{ tenantId: ctx.tenantId, version: 2, reason: 'KEY_VERSION_RETIRED' }]);
    } finally {
      await setKek(ctx.tenantId, 2, good);
    }
  });

  test('a run reads each stored KEK once and leaves no key in memory that the node did not hold before', async () => {
    const { keyring, kekLoads, selfTest } = isolatedRun(async () => {});
    const report = await selfTest.run();
    assert.equal(report.ok, true);
    assert.equal(kekLoads.length, report.keys, 'one load per version tested');
    assert.equal(new Set(kekLoads).size, kekLoads.length);
    // Every tenant's KEKs held for the life of the unseal on every node would follow from caching them here.
    kekLoads.length = 0;
    await keyring.sealerFor(h.ctx.tenantId);
    assert.deepEqual(kekLoads, [`${h.ctx.tenantId}:2`], 'the key was not cached by the run: the first use loads it');
  });
});
