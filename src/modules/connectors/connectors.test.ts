import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { PG_URL } from '../../../test/helpers/databases.ts';
import { startFakePaymentApi, type FakePaymentApi } from '../../../test/fixtures/fake-payment-api.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import type { TenantContext } from '../shared/context.ts';

const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? String(e));
const message = (p: Promise<unknown>) => p.then(() => '', (e: Error) => e.message);

describeEachDialect('connectors: settings, slots, health checks, inventory', (dialect) => {
  let h: Harness;
  let ctx: TenantContext;
  let api: FakePaymentApi;
  let admin: pg.Client;
  const role = `kh_health_${randomBytes(4).toString('hex')}`;
  const rolePassword = `pw-${randomBytes(12).toString('hex')}`;
  const pgUrl = new URL(PG_URL);

  before(async () => {
    h = await createHarness(dialect);
    ctx = h.ctx;
    api = await startFakePaymentApi({ keys: ['sk_test_health_ok_123456'] });
    admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`create role ${role} login password '${rolePassword}'`);
    for (const [name, value, owner] of [['API_KEY', 'sk_test_health_ok_123456', 'payments-team'], ['DB_USER', role, 'data-team'], ['DB_PASSWORD', rolePassword, 'data-team'], ['HOOK_SECRET', 'whsec_hook_canary_77', 'user:ann']] as const) {
      await h.services.secrets.create(ctx, { name, owner });
      await h.services.values.write(ctx, name, 'staging', { value });
    }
  });
  after(async () => {
    await admin.query(`drop role if exists ${role}`);
    await admin.end();
    await api.close();
    await h.close();
  });

  test('an http connector is saved with its slots and its health check calls the health path with the credential', async () => {
    const c = await h.services.connectors.create(ctx, { name: 'payments', environment: 'staging', type: 'http', settings: { baseUrl: api.address, healthPath: '/health', auth: { kind: 'bearer' } }, slots: { token: 'API_KEY' }, owner: 'payments-team' });
    assert.equal(c.revision, 1);
    assert.equal(c.personal, false);
    const health = await h.services.connectors.test(ctx, 'staging', 'payments');
    assert.equal(health.ok, true, health.detail);
    assert.equal(api.requests.at(-1)!.headers.authorization, 'Bearer sk_test_health_ok_123456');
    const failing = await h.services.connectors.test(ctx, 'staging', 'payments', { overrides: { token: 'sk_test_wrong_key_000000' } });
    assert.equal(failing.ok, false);
    assert.equal(failing.status, 401);
  });

  test('a PostgreSQL connector checks the real server: passes with the right password, fails (without echoing it) with a wrong one', async () => {
    await h.services.connectors.create(ctx, {
      name: 'warehouse', environment: 'staging', type: 'postgres', settings: { host: pgUrl.hostname, port: Number(pgUrl.port || 5432), database: pgUrl.pathname.slice(1) || 'test' },
      slots: { user: 'DB_USER', password: 'DB_PASSWORD' }, owner: 'data-team',
    });
    const ok = await h.services.connectors.test(ctx, 'staging', 'warehouse');
    assert.equal(ok.ok, true, ok.detail);
    // Trust auth on the test server accepts any password, so a wrong one is proven through a role that does not exist.
    const bad = await h.services.connectors.test(ctx, 'staging', 'warehouse', { overrides: { user: `${role}_missing`, password: 'not-the-password-999' } });
    assert.equal(bad.ok, false);
    assert.ok(!bad.detail.includes('not-the-password-999'));
  });

  test('a webhook-signer connector signs its ping; a personal credential marks the connector personal', async () => {
    const c = await h.services.connectors.create(ctx, { name: 'hooks', environment: 'staging', type: 'webhook-signer', settings: { url: `${api.address}/hooks` }, slots: { signingSecret: 'HOOK_SECRET' }, owner: 'ann' });
    assert.equal(c.personal, true);
    api.override(() => ({ status: 204, body: '' }));
    try {
      assert.equal((await h.services.connectors.test(ctx, 'staging', 'hooks')).ok, true);
      assert.match(String(api.requests.at(-1)!.headers['keyhold-signature']), /^t=\d+,v1=[0-9a-f]{64}$/);
    } finally {
      api.override(null);
    }
  });

  test('bad settings and slots are refused naming the field, and nothing is written', async () => {
    const base = { name: 'bad', environment: 'staging', type: 'http', owner: 'x' };
    const cases: Array<[Record<string, unknown>, Record<string, string>, RegExp]> = [
      [{ baseUrl: 'ftp://127.0.0.1/x', auth: { kind: 'bearer' } }, { token: 'API_KEY' }, /http or https/],
      [{ baseUrl: 'http://user:pw@127.0.0.1/x', auth: { kind: 'bearer' } }, { token: 'API_KEY' }, /user:password@/],
      [{ baseUrl: api.address, auth: { kind: 'magic' } }, {}, /auth\.kind/],
      [{ baseUrl: api.address, auth: { kind: 'bearer' } }, {}, /slots\.token is required/],
      [{ baseUrl: api.address, auth: { kind: 'bearer' } }, { token: 'API_KEY', extra: 'API_KEY' }, /slots\.extra is not a slot/],
      [{ baseUrl: api.address, auth: { kind: 'bearer' }, color: 'red' }, { token: 'API_KEY' }, /unknown setting "color"/],
      [{ baseUrl: api.address, auth: { kind: 'header', header: 'Bad Header' } }, { value: 'API_KEY' }, /auth\.header/],
    ];
    for (const [settings, slots, expected] of cases) {
      assert.match(await message(h.services.connectors.create(ctx, { ...base, settings, slots })), expected);
    }
    assert.equal(await code(h.services.connectors.create(ctx, { ...base, settings: { baseUrl: api.address, auth: { kind: 'bearer' } }, slots: { token: 'NO_SUCH' } })), 'INVALID_REFERENCE');
    assert.equal(await code(h.services.connectors.get(ctx, 'staging', 'bad')), 'CONNECTOR_NOT_FOUND');
  });

  test('two editors with the same revision: exactly one wins', async () => {
    const c = await h.services.connectors.get(ctx, 'staging', 'payments');
    const edit = (n: number) => code(h.services.connectors.update(ctx, 'staging', 'payments', { settings: { ...c.settings, timeoutMs: 1000 + n }, slots: c.slots, revision: c.revision }));
    assert.deepEqual((await Promise.all([edit(1), edit(2)])).sort(), ['CAS_MISMATCH', 'ok']);
  });

  test('the blast radius of a secret lists its connectors per environment; another tenant sees none of it', async () => {
    assert.deepEqual(await h.services.connectors.dependentsOf(ctx, 'DB_PASSWORD'), [{ environment: 'staging', connector: 'warehouse', slot: 'password' }]);
    const other = await h.services.tenants.create('conn-other');
    assert.equal(await code(h.services.connectors.get(h.contextFor(other.id), 'staging', 'payments')), 'CONNECTOR_NOT_FOUND');
    assert.deepEqual(await h.services.connectors.list(h.contextFor(other.id)), []);
  });

  test('changes and health checks are audit events', async () => {
    const actions = new Set((await h.storage.db.selectFrom('audit_events').select('action').where('resource_type', '=', 'connector').execute()).map((r) => r.action));
    for (const a of ['connector.create', 'connector.update', 'connector.test']) assert.ok(actions.has(a), a);
  });
});
