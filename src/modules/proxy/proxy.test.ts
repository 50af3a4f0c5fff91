import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { startFakePaymentApi, type FakePaymentApi } from '../../../test/fixtures/fake-payment-api.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { hmacCanonical } from '../connectors/types/http/index.ts';
import type { TenantContext } from '../shared/context.ts';

const code = (p: Promise<unknown>) => p.then(() => 'ok', (e: { code?: string }) => e.code ?? String(e));
const KEY = 'sk_test_proxy_canary_51Hx9k2e';

describeEachDialect('the credential proxy: use without reveal, only to the allowed destination', (dialect) => {
  let h: Harness;
  let ctx: TenantContext;
  let api: FakePaymentApi;
  let elsewhere: FakePaymentApi;
  let builder: TenantContext;

  before(async () => {
    h = await createHarness(dialect);
    ctx = h.ctx;
    api = await startFakePaymentApi({ keys: [KEY] });
    elsewhere = await startFakePaymentApi({ keys: [KEY] });
    for (const [name, value] of [['PAY_KEY', KEY], ['PAY_USER', 'merchant-7781'], ['SIGNING_KEY', 'whsec_signing_canary_0042']] as const) {
      await h.services.secrets.create(ctx, { name, owner: 'payments-team' });
      await h.services.values.write(ctx, name, 'production', { value });
    }
    await h.services.connectors.create(ctx, { name: 'payments', environment: 'production', type: 'http', settings: { baseUrl: `${api.address}/v1`, auth: { kind: 'bearer' }, healthPath: '/health' }, slots: { token: 'PAY_KEY' }, owner: 'payments-team' });
    const bea = await userContext(h, ctx.tenantId, 'bea');
    await h.services.grants.create(ctx, { principalType: 'user', principalId: bea.id, role: 'builder', environments: ['production'] });
    builder = bea.ctx();
  });
  after(async () => {
    await api.close();
    await elsewhere.close();
    await h.close();
  });

  test('a builder (use, not reveal) sends a request through the connector: the credential is injected, the caller never sees it', async () => {
    const res = await h.services.proxy.call(builder, { environment: 'production', connector: 'payments', request: { method: 'POST', path: '/charges', body: { amount: 1200 } } });
    assert.equal(res.status, 201);
    assert.deepEqual((res.body as { amount: number }).amount, 1200);
    const seen = api.requests.at(-1)!;
    assert.equal(seen.url, '/v1/charges');
    assert.equal(seen.headers.authorization, `Bearer ${KEY}`);
    assert.equal(await code(h.services.values.read(builder, 'PAY_KEY', 'production')), 'FORBIDDEN', 'the builder still cannot reveal it');
  });

  test('a destination that echoes the credential gets it masked in the body and headers it returns', async () => {
    api.override((req) => ({ status: 200, headers: { 'x-echo': String(req.headers.authorization) }, body: JSON.stringify({ echoed: req.headers.authorization, b64: Buffer.from(KEY).toString('base64') }) }));
    try {
      const res = await h.services.proxy.call(builder, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/echo' } });
      const text = JSON.stringify(res);
      assert.ok(!text.includes(KEY) && !text.includes(Buffer.from(KEY).toString('base64')), text);
      assert.match(res.headers['x-echo']!, /REDACTED/);
    } finally {
      api.override(null);
    }
  });

  test('every trick to send the credential elsewhere is refused, audited, and the other server sees nothing', async () => {
    const port = elsewhere.port;
    const tricks = [
      `//127.0.0.1:${port}/steal`, `/\\127.0.0.1:${port}/steal`, `/@127.0.0.1:${port}/x`, '/../../admin', '/%2e%2e/admin', '/a/%2F%2Fevil',
      '/x?y=1', '/x#frag', '/x\r\nHost: evil', '/ x', '/./x', 'http://127.0.0.1/x', `localhost:${port}/x`, '[::ffff:127.0.0.1]/x', '/x\u0000',
    ];
    const before = elsewhere.requests.length;
    for (const path of tricks) {
      assert.equal(await code(h.services.proxy.call(builder, { environment: 'production', connector: 'payments', request: { method: 'GET', path } })), 'DESTINATION_NOT_ALLOWED', JSON.stringify(path));
    }
    assert.equal(elsewhere.requests.length, before, 'nothing reached another port');
    assert.ok(api.requests.every((r) => r.url.startsWith('/v1/')), 'nothing left the path prefix');
    const refused = await h.storage.db.selectFrom('audit_events').select('reason').where('action', '=', 'proxy.refused').execute();
    assert.ok(refused.length >= tricks.length);
  });

  test('a caller may not set or override the injected auth, Host, or hop-by-hop headers, nor smuggle CR/LF', async () => {
    for (const headers of [{ Authorization: 'Bearer mine' }, { Host: `127.0.0.1:${elsewhere.port}` }, { 'Transfer-Encoding': 'chunked' }, { 'X-Ok': 'a\r\nInjected: 1' }, { 'Proxy-Authorization': 'x' }]) {
      assert.equal(await code(h.services.proxy.call(builder, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/health', headers } })), 'PROXY_REQUEST_INVALID', JSON.stringify(headers));
    }
  });

  test('redirects are not followed: a 3xx to another port comes back as is and the other server sees nothing', async () => {
    api.override(() => ({ status: 302, headers: { location: `${elsewhere.address}/steal` }, body: '' }));
    try {
      const before = elsewhere.requests.length;
      const res = await h.services.proxy.call(builder, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/health' } });
      assert.equal(res.status, 302);
      assert.equal(elsewhere.requests.length, before);
    } finally {
      api.override(null);
    }
  });

  test('a builder cannot point a secret anywhere: creating or changing a connector needs write on its secrets', async () => {
    const evil = { name: 'exfil', environment: 'production', type: 'http', settings: { baseUrl: elsewhere.address, auth: { kind: 'bearer' } }, slots: { token: 'PAY_KEY' }, owner: 'bea' };
    assert.equal(await code(h.services.connectors.create(builder, evil)), 'FORBIDDEN');
    const current = await h.services.connectors.get(ctx, 'production', 'payments');
    assert.equal(await code(h.services.connectors.update(builder, 'production', 'payments', { settings: { baseUrl: elsewhere.address, auth: { kind: 'bearer' } }, slots: current.slots, revision: current.revision })), 'FORBIDDEN');
  });

  test('another environment never resolves this one: a staging call finds no production connector', async () => {
    assert.equal(await code(h.services.proxy.call(ctx, { environment: 'staging', connector: 'payments', request: { method: 'GET', path: '/health' } })), 'CONNECTOR_NOT_FOUND');
    await h.services.connectors.create(ctx, { name: 'payments', environment: 'staging', type: 'http', settings: { baseUrl: `${api.address}/v1`, auth: { kind: 'bearer' } }, slots: { token: 'PAY_KEY' }, owner: 'payments-team' });
    assert.equal(await code(h.services.proxy.call(ctx, { environment: 'staging', connector: 'payments', request: { method: 'GET', path: '/health' } })), 'VALUE_NOT_SET', 'PAY_KEY has no staging value: nothing falls back to production');
  });

  test('another tenant does not see the connector at all', async () => {
    const other = await h.services.tenants.create('proxy-other');
    assert.equal(await code(h.services.proxy.call(h.contextFor(other.id), { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/health' } })), 'CONNECTOR_NOT_FOUND');
  });

  test('secret references in headers are resolved server side and each resolution is a use event with the run', async () => {
    const run = { runId: 'run-1234', automation: 'charge', step: 'first' };
    await h.services.proxy.call(builder, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/health', headers: { 'X-Merchant': '{{ secrets.PAY_USER }}' } }, run });
    assert.equal(api.requests.at(-1)!.headers['x-merchant'], 'merchant-7781');
    const uses = (await h.storage.db.selectFrom('audit_events').select(['resource_name', 'context']).where('action', '=', 'secret.use').execute())
      .filter((e) => (JSON.parse(e.context) as { runId?: string }).runId === 'run-1234');
    assert.deepEqual(uses.map((u) => u.resource_name).sort(), ['PAY_KEY', 'PAY_USER']);
    assert.ok(uses.every((u) => (JSON.parse(u.context) as { connector?: string }).connector === 'payments'));
    assert.equal(await code(h.services.proxy.call(builder, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/health', headers: { 'X-Other': '{{ steps.a.output }}' } } })), 'PROXY_REQUEST_INVALID');
  });

  test('every auth kind reaches the destination as configured', async () => {
    const kinds = [
      { auth: { kind: 'basic' }, slots: { username: 'PAY_USER', password: 'PAY_KEY' }, check: (r: (typeof api.requests)[0]) => r.headers.authorization === `Basic ${Buffer.from(`merchant-7781:${KEY}`).toString('base64')}` },
      { auth: { kind: 'header', header: 'X-Api-Key' }, slots: { value: 'PAY_KEY' }, check: (r: (typeof api.requests)[0]) => r.headers['x-api-key'] === KEY },
      { auth: { kind: 'query', param: 'api_key' }, slots: { value: 'PAY_KEY' }, check: (r: (typeof api.requests)[0]) => new URL(r.url, 'http://x').searchParams.get('api_key') === KEY },
      {
        auth: { kind: 'hmac' }, slots: { signingKey: 'SIGNING_KEY' },
        check: (r: (typeof api.requests)[0]) => r.headers['x-signature'] === createHmac('sha256', 'whsec_signing_canary_0042').update(hmacCanonical(String(r.headers['x-timestamp']), r.method, new URL(r.url, 'http://x'), r.body)).digest('hex'),
      },
    ];
    api.override(() => ({ status: 200, body: '{}' }));
    try {
      for (const [i, k] of kinds.entries()) {
        await h.services.connectors.create(ctx, { name: `kind${i}`, environment: 'production', type: 'http', settings: { baseUrl: api.address, auth: k.auth }, slots: k.slots, owner: 'payments-team' });
        await h.services.proxy.call(ctx, { environment: 'production', connector: `kind${i}`, request: { method: 'POST', path: '/signed', body: { n: i } } });
        assert.ok(k.check(api.requests.at(-1)!), JSON.stringify(k.auth));
      }
    } finally {
      api.override(null);
    }
  });

  test('a huge answer is cut at the limit and flagged, and a dead destination is a 502, not a 500', async () => {
    api.override(() => ({ status: 200, headers: { 'content-type': 'text/plain' }, body: Buffer.alloc(3 * 1024 * 1024, 0x61) }));
    try {
      const res = await h.services.proxy.call(ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/big' } });
      assert.equal(res.truncated, true);
      assert.equal((res.body as string).length, 1_048_576);
    } finally {
      api.override(null);
    }
    const dead = await startFakePaymentApi();
    await dead.close();
    await h.services.connectors.create(ctx, { name: 'dead', environment: 'production', type: 'http', settings: { baseUrl: dead.address, auth: { kind: 'bearer' } }, slots: { token: 'PAY_KEY' }, owner: 'payments-team' });
    assert.equal(await code(h.services.proxy.call(ctx, { environment: 'production', connector: 'dead', request: { method: 'GET', path: '/x' } })), 'UPSTREAM_FAILED');
  });
});
