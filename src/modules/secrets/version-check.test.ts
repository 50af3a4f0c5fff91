import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';

describeEachDialect('batch version check', (dialect) => {
  let h: Harness;
  let machineToken: string;
  let otherTenantToken: string;

  async function check(body: unknown, token = machineToken) {
    const res = await h.app.inject({ method: 'POST', url: '/v1/secrets/versions', headers: { authorization: `Bearer ${token}` }, payload: body as object });
    return { status: res.statusCode, body: res.json() as any, headers: res.headers };
  }

  async function machineWith(tenantId: string, name: string, grants: Array<{ role: string; environments?: string[]; namePatterns?: string[] }>) {
    const ctx = h.contextFor(tenantId);
    const machine = await h.services.machines.create(ctx, { name, kind: 'client_secret' });
    for (const g of grants) await h.services.grants.create(ctx, { principalType: 'machine', principalId: machine.id, ...g });
    return (await h.services.tokens.issue({ tenantId, kind: 'machine', principalId: machine.id, name, ttlMs: 3_600_000 })).token;
  }

  before(async () => {
    h = await createHarness(dialect);
    for (const name of ['VC_API_KEY', 'VC_DB_PASSWORD', 'VC_UNSET', 'VC_DELETED', 'VC_HIDDEN', '__proto__']) {
      await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    }
    await h.services.values.write(h.ctx, 'VC_API_KEY', 'production', { value: 'vc-api-key-value-1' });
    await h.services.values.write(h.ctx, 'VC_API_KEY', 'production', { value: 'vc-api-key-value-2' });
    await h.services.values.write(h.ctx, 'VC_API_KEY', 'staging', { value: 'vc-api-key-staging' });
    await h.services.values.write(h.ctx, 'VC_DB_PASSWORD', 'production', { value: 'vc-db-password-1' });
    await h.services.values.write(h.ctx, 'VC_DELETED', 'production', { value: 'vc-deleted-value' });
    await h.services.secrets.remove(h.ctx, 'VC_DELETED');
    await h.services.values.write(h.ctx, 'VC_HIDDEN', 'production', { value: 'vc-hidden-value' });
    await h.services.values.write(h.ctx, '__proto__', 'production', { value: 'vc-proto-value' });
    machineToken = await machineWith(h.ctx.tenantId, 'vc-runner', [{ role: 'builder', environments: ['production', 'staging'], namePatterns: ['VC_API_*', 'VC_DB_*', 'VC_UNSET', 'VC_DELETED', '__proto__'] }]);
    const other = await h.services.tenants.create('vc-other');
    await h.services.secrets.create(h.contextFor(other.id), { name: 'VC_API_KEY', owner: 'ops' });
    await h.services.values.write(h.contextFor(other.id), 'VC_API_KEY', 'production', { value: 'vc-other-tenant' });
    otherTenantToken = await machineWith(other.id, 'vc-other-runner', [{ role: 'builder' }]);
  });
  after(() => h.close());

  test('a machine gets the current version numbers of the secrets it may use, and no value', async () => {
    const res = await check({ environment: 'production', names: ['VC_API_KEY', 'VC_DB_PASSWORD', '__proto__'] });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    // A secret may be named __proto__: it must come back as a plain key, not a prototype.
    assert.deepEqual(res.body, JSON.parse('{"versions":{"VC_API_KEY":2,"VC_DB_PASSWORD":1,"__proto__":1}}'));
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.doesNotMatch(JSON.stringify(res.body), /vc-/);
    const staging = await check({ environment: 'staging', names: ['VC_API_KEY', 'VC_DB_PASSWORD'] });
    assert.deepEqual(staging.body, { versions: { VC_API_KEY: 1, VC_DB_PASSWORD: null } });
  });

  test('unknown, unset, deleted and forbidden names all answer null, indistinguishably', async () => {
    const res = await check({ environment: 'production', names: ['VC_NEVER_EXISTED', 'VC_UNSET', 'VC_DELETED', 'VC_HIDDEN'] });
    assert.deepEqual(res.body, { versions: { VC_NEVER_EXISTED: null, VC_UNSET: null, VC_DELETED: null, VC_HIDDEN: null } });
  });

  test('another tenant\'s secret of the same name is never answered', async () => {
    const mine = await check({ environment: 'production', names: ['VC_API_KEY'] }, otherTenantToken);
    assert.deepEqual(mine.body, { versions: { VC_API_KEY: 1 } }, 'the other tenant sees its own version 1, not ours (2)');
    const header = await h.app.inject({
      method: 'POST', url: '/v1/secrets/versions', payload: { environment: 'production', names: ['VC_API_KEY'] },
      headers: { authorization: `Bearer ${otherTenantToken}`, 'x-keyhold-tenant': 'default' },
    });
    assert.equal(header.statusCode, 404);
    assert.equal(header.json().error.code, 'TENANT_NOT_FOUND');
  });

  test('a person needs reveal with a fresh second factor, as a read would', async () => {
    const person = await userContext(h, h.ctx.tenantId, 'vc-person', { mfaAgoMs: null });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: person.id, role: 'revealer' });
    const stale = await h.services.versionChecks.currentVersions(person.ctx(), 'production', ['VC_API_KEY']);
    assert.deepEqual({ ...stale }, { VC_API_KEY: null });
    const builder = await userContext(h, h.ctx.tenantId, 'vc-builder');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: builder.id, role: 'builder' });
    assert.deepEqual({ ...(await h.services.versionChecks.currentVersions(builder.ctx(), 'production', ['VC_API_KEY'])) }, { VC_API_KEY: null },
      'use is not reveal: a person with builder cannot learn versions through this endpoint');
  });

  test('bad input is a clear 4xx and nothing is answered', async () => {
    const cases: Array<[unknown, string]> = [
      [{ environment: 'production', names: [] }, 'VALIDATION_FAILED'],
      [{ environment: 'production', names: Array.from({ length: 101 }, (_, i) => `N${i}`) }, 'VALIDATION_FAILED'],
      [{ environment: 'production', names: ['VC_API_KEY'], extra: 1 }, 'UNKNOWN_FIELD'],
      [{ environment: 'production', names: ['../sys'] }, 'INVALID_NAME'],
      [{ environment: 'production', names: ['x'.repeat(129)] }, 'INVALID_NAME'],
      [{ environment: 'nowhere', names: ['VC_API_KEY'] }, 'ENVIRONMENT_NOT_FOUND'],
      [{ names: ['VC_API_KEY'] }, 'VALIDATION_FAILED'],
    ];
    for (const [body, code] of cases) {
      const res = await check(body);
      assert.ok(res.status >= 400 && res.status < 500, `${JSON.stringify(body).slice(0, 80)} → ${res.status}`);
      assert.equal(res.body.error.code, code, JSON.stringify(res.body));
    }
    assert.equal((await check({ environment: 'production', names: ['VC_API_KEY'] }, 'kh_not-a-token')).status, 401);
  });

  test('a check writes no audit event (metadata only, polled every few seconds)', async () => {
    const count = async () => Number((await h.storage.db.selectFrom('audit_events').select((eb) => eb.fn.countAll().as('n')).executeTakeFirstOrThrow()).n);
    const before = await count();
    for (let i = 0; i < 3; i++) await check({ environment: 'production', names: ['VC_API_KEY', 'VC_HIDDEN'] });
    assert.equal(await count(), before);
  });

  test('duplicate names are answered once, and a new version shows at once', async () => {
    const first = await check({ environment: 'production', names: ['VC_DB_PASSWORD', 'VC_DB_PASSWORD'] });
    assert.deepEqual(first.body, { versions: { VC_DB_PASSWORD: 1 } });
    await h.services.values.write(h.ctx, 'VC_DB_PASSWORD', 'production', { value: 'vc-db-password-2' });
    assert.deepEqual((await check({ environment: 'production', names: ['VC_DB_PASSWORD'] })).body, { versions: { VC_DB_PASSWORD: 2 } });
  });
});
