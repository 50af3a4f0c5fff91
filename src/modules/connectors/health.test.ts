import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { PG_URL } from '../../../test/helpers/databases.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { eventsOf, seed } from '../../../test/helpers/connectors.ts';
import { startFakePaymentApi, type FakePaymentApi } from '../../../test/fixtures/fake-payment-api.ts';
import { passwordPostgresUnavailable, startPasswordPostgres, type PasswordPostgres } from '../../../test/fixtures/password-postgres.ts';
import { signatureHeader } from './types/webhook-signer/signature.ts';

const hex = () => randomBytes(12).toString('hex');

describeEachDialect('connector health checks: HTTP 2xx, signed webhook ping, PostgreSQL select 1 against a real server', (dialect) => {
  let h: Harness;
  let api: FakePaymentApi;
  let hooks: FakePaymentApi;
  const token = `sk_live_${hex()}`;
  const hookSecret = `whsec_${hex()}`;
  const role = `kh_conn_${hex()}`;
  const rolePassword = `pw_${hex()}`;
  let admin: pg.Client;

  before(async () => {
    h = await createHarness(dialect);
    api = await startFakePaymentApi({ token });
    hooks = await startFakePaymentApi({
      token: 'unused',
      authorize: (req, body) => {
        const header = String(req.headers['keyhold-signature'] ?? '');
        const t = Number(/^t=(\d+),/.exec(header)?.[1]);
        return header === signatureHeader(body, [hookSecret], t);
      },
    });
    admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
    await admin.query(`create role ${role} login password '${rolePassword}'`);
    await seed(h, h.ctx, 'PAY_TOKEN', { production: token, staging: `sk_test_${hex()}` });
    await seed(h, h.ctx, 'HOOK_SECRET', { production: hookSecret });
    await seed(h, h.ctx, 'DB_USER', { production: role });
    await seed(h, h.ctx, 'DB_PASSWORD', { production: rolePassword });
    await seed(h, h.ctx, 'UNSET_IN_STAGING', { production: `x_${hex()}` });
    await h.services.connectors.create(h.ctx, 'production', { name: 'payments', type: 'http', owner: 'o', settings: { baseUrl: api.url, healthPath: '/health', auth: { kind: 'bearer' } }, slots: { token: 'PAY_TOKEN' } });
    await h.services.connectors.create(h.ctx, 'staging', { name: 'payments', type: 'http', owner: 'o', settings: { baseUrl: api.url, healthPath: '/health', auth: { kind: 'bearer' } }, slots: { token: 'PAY_TOKEN' } });
    await h.services.connectors.create(h.ctx, 'staging', { name: 'unset', type: 'http', owner: 'o', settings: { baseUrl: api.url, healthPath: '/health', auth: { kind: 'bearer' } }, slots: { token: 'UNSET_IN_STAGING' } });
    await h.services.connectors.create(h.ctx, 'production', { name: 'slow', type: 'http', owner: 'o', settings: { baseUrl: api.url, healthPath: '/v1/slow', timeoutMs: 200, auth: { kind: 'bearer' } }, slots: { token: 'PAY_TOKEN' } });
    await h.services.connectors.create(h.ctx, 'production', { name: 'hooks', type: 'webhook-signer', owner: 'o', settings: { url: `${hooks.url}/health` }, slots: { signingSecret: 'HOOK_SECRET' } });
    await h.services.connectors.create(h.ctx, 'production', { name: 'db', type: 'postgres', owner: 'o', settings: { host: '127.0.0.1', port: 5432, database: 'test' }, slots: { user: 'DB_USER', password: 'DB_PASSWORD' } });
  });
  after(async () => {
    await admin.query(`drop role if exists ${role}`);
    await admin.end();
    await api.close();
    await hooks.close();
    await h.close();
  });

  test('an HTTP connector passes with the current token and fails (audited, no value) with a wrong override', async () => {
    const ok = await h.services.connectors.test(h.ctx, 'production', 'payments');
    assert.deepEqual({ ok: ok.ok, status: ok.status, reason: ok.reason }, { ok: true, status: 200, reason: 'ok' });
    const wrong = `sk_wrong_${hex()}`;
    const bad = await h.services.connectors.test(h.ctx, 'production', 'payments', { overrides: { token: wrong } });
    assert.deepEqual({ ok: bad.ok, status: bad.status, reason: bad.reason }, { ok: false, status: 401, reason: 'http_status' });
    assert.equal(api.requests.at(-1)!.headers.authorization, `Bearer ${wrong}`, 'the override is what was sent');
    const events = (await eventsOf(h, 'connector.test')).slice(-2);
    assert.deepEqual(events.map((e) => [e.outcome, e.reason]), [['allowed', null], ['failed', 'http_status']]);
    assert.equal(events[1]!.context.overrides, 'token');
    const all = JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute());
    assert.ok(!all.includes(wrong) && !JSON.stringify(bad).includes(wrong), 'the override value is nowhere');
  });

  test('a staging connector checks the staging value; a slot with no value here fails as slot_unresolved', async () => {
    const staging = await h.services.connectors.test(h.ctx, 'staging', 'payments');
    assert.equal(staging.status, 401, 'the API knows only the production token');
    const unset = await h.services.connectors.test(h.ctx, 'staging', 'unset');
    assert.deepEqual({ ok: unset.ok, reason: unset.reason }, { ok: false, reason: 'slot_unresolved' });
  });

  test('a health path that does not answer within the connector timeout fails as timeout', async () => {
    const slow = await h.services.connectors.test(h.ctx, 'production', 'slow');
    assert.deepEqual({ ok: slow.ok, reason: slow.reason }, { ok: false, reason: 'timeout' });
  });

  test('a webhook signer sends a ping the receiver verifies with the secret, and fails with another', async () => {
    assert.equal((await h.services.connectors.test(h.ctx, 'production', 'hooks')).ok, true);
    const bad = await h.services.connectors.test(h.ctx, 'production', 'hooks', { overrides: { signingSecret: `whsec_${hex()}` } });
    assert.deepEqual({ ok: bad.ok, status: bad.status }, { ok: false, status: 401 });
  });

  test('PostgreSQL: a role this test created connects and runs select 1; an unknown role fails with no value in the detail', async () => {
    const ok = await h.services.connectors.test(h.ctx, 'production', 'db');
    assert.deepEqual({ ok: ok.ok, reason: ok.reason }, { ok: true, reason: 'ok' });
    const ghost = `kh_ghost_${hex()}`;
    const bad = await h.services.connectors.test(h.ctx, 'production', 'db', { overrides: { user: ghost } });
    assert.deepEqual({ ok: bad.ok, reason: bad.reason }, { ok: false, reason: 'auth_failed' });
    assert.ok(!bad.detail.includes(ghost) && !bad.detail.includes(rolePassword));
  });

  test('a health check needs use on the slot secrets: a viewer is FORBIDDEN and nothing is contacted', async () => {
    const viewer = await userContext(h, h.ctx.tenantId, 'viewer-hc');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: viewer.id, role: 'viewer' });
    const seen = api.requests.length;
    await assert.rejects(h.services.connectors.test(viewer.ctx(), 'production', 'payments'), { code: 'FORBIDDEN' });
    await assert.rejects(h.services.connectors.test(viewer.ctx(), 'production', 'payments', { overrides: { token: 'guess' } }), { code: 'FORBIDDEN' });
    assert.equal(api.requests.length, seen);
  });

  test('over HTTP: POST .../test answers the health result', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/v1/connectors/production/payments/test', headers: { authorization: `Bearer ${h.rootToken}` }, payload: {} });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal((res.json() as { ok: boolean }).ok, true);
  });
});

const unavailable = passwordPostgresUnavailable();
describe('PostgreSQL health check against a server that enforces passwords', { skip: unavailable ?? false }, () => {
  let h: Harness;
  let server: PasswordPostgres;
  const password = `pw_${hex()}`;

  before(async () => {
    server = await startPasswordPostgres();
    h = await createHarness('sqlite');
    const admin = new pg.Client({ host: server.host, port: server.port, database: server.database, user: server.adminUser, password: server.adminPassword });
    await admin.connect();
    await admin.query(`create role kh_app login password '${password}'`);
    await admin.end();
    await seed(h, h.ctx, 'APP_USER', { production: 'kh_app' });
    await seed(h, h.ctx, 'APP_PASSWORD', { production: password });
    await h.services.connectors.create(h.ctx, 'production', { name: 'db', type: 'postgres', owner: 'o', settings: { host: server.host, port: server.port, database: server.database }, slots: { user: 'APP_USER', password: 'APP_PASSWORD' } });
  });
  after(async () => {
    await h?.close();
    await server?.stop();
  });

  test('passes with the right password and fails (auth_failed, no value in the detail) with a wrong override', async () => {
    assert.equal((await h.services.connectors.test(h.ctx, 'production', 'db')).ok, true);
    const wrong = `pw_wrong_${hex()}`;
    const bad = await h.services.connectors.test(h.ctx, 'production', 'db', { overrides: { password: wrong } });
    assert.deepEqual({ ok: bad.ok, reason: bad.reason }, { ok: false, reason: 'auth_failed' });
    assert.ok(!JSON.stringify(bad).includes(wrong) && !JSON.stringify(bad).includes(password));
  });
});
