import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { closedPort, eventsOf, proxyFor, seed, TENANT_MASK } from '../../../test/helpers/connectors.ts';
import { startFakePaymentApi, type FakePaymentApi } from '../../../test/fixtures/fake-payment-api.ts';
import { signRequest } from '../connectors/types/http/signing.ts';
import { signatureHeader } from '../connectors/types/webhook-signer/signature.ts';
import type { ProxyService } from './proxy-service.ts';
import { guardedFetch } from '../connectors/address-guard.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const v = (label: string) => `${label}-${randomBytes(12).toString('hex')}`;

describeEachDialect('credential proxy: injects the credential, forwards to the allowlisted destination, masks the answer', (dialect) => {
  let h: Harness;
  let api: FakePaymentApi;
  let evil: FakePaymentApi;
  let proxy: ProxyService;
  const values = { prod: v('sk_live'), staging: v('sk_test'), user: v('user'), pass: v('pass'), apiKey: v('key'), hmac: v('hmac'), hook: v('whsec'), extra: v('extra'), unrelated: v('unrelated') };
  const run = { runId: 'run-1', automation: 'charge-customer', step: 'charge' };

  before(async () => {
    h = await createHarness(dialect);
    evil = await startFakePaymentApi({ token: 'none' });
    api = await startFakePaymentApi({ token: values.prod, redirectTo: evil.url });
    proxy = proxyFor(h, () => Object.values(values));
    await seed(h, h.ctx, 'PAY_TOKEN', { production: values.prod, staging: values.staging });
    await seed(h, h.ctx, 'BASIC_USER', { production: values.user });
    await seed(h, h.ctx, 'BASIC_PASS', { production: values.pass });
    await seed(h, h.ctx, 'API_KEY', { production: values.apiKey });
    await seed(h, h.ctx, 'HMAC_KEY', { production: values.hmac });
    await seed(h, h.ctx, 'HOOK_SECRET', { production: values.hook });
    await seed(h, h.ctx, 'EXTRA', { production: values.extra });
    await seed(h, h.ctx, 'UNRELATED', { production: values.unrelated });
    await seed(h, h.ctx, 'PROD_ONLY', { production: v('prod-only') });
    const http = (name: string, auth: Record<string, unknown>, slots: Record<string, string>, env = 'production', extra: Record<string, unknown> = {}) =>
      h.services.connectors.create(h.ctx, env, { name, type: 'http', owner: 'payments-team', settings: { baseUrl: api.url, healthPath: '/health', auth, ...extra }, slots });
    await http('payments', { kind: 'bearer' }, { token: 'PAY_TOKEN' }, 'production', { templateSecrets: ['EXTRA'] });
    await http('payments', { kind: 'bearer' }, { token: 'PAY_TOKEN' }, 'staging');
    await http('prod-only', { kind: 'bearer' }, { token: 'PROD_ONLY' }, 'staging');
    await http('basic', { kind: 'basic' }, { username: 'BASIC_USER', password: 'BASIC_PASS' });
    await http('keyed', { kind: 'header', header: 'X-Api-Key' }, { value: 'API_KEY' });
    await http('query', { kind: 'query', param: 'api_key' }, { value: 'API_KEY' });
    await http('signed', { kind: 'hmac', signatureHeader: 'X-Sig', timestampHeader: 'X-Sig-Time' }, { signingKey: 'HMAC_KEY' });
    await h.services.connectors.create(h.ctx, 'production', { name: 'hooks', type: 'webhook-signer', owner: 'ops', settings: { url: `${api.url}/hooks/orders` }, slots: { signingSecret: 'HOOK_SECRET' } });
    await h.services.connectors.create(h.ctx, 'production', { name: 'db', type: 'postgres', owner: 'ops', settings: { host: '127.0.0.1', database: 'test' }, slots: { user: 'BASIC_USER', password: 'BASIC_PASS' } });
  });
  after(async () => {
    await api.close();
    await evil.close();
    await h.close();
  });

  test('a bearer connector reaches the API with the production token; each injection is a secret.use event with the run', async () => {
    const before = (await eventsOf(h, 'secret.use')).length;
    const res = await proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'POST', path: '/v1/charges', body: { amount: 4200 } }, run });
    assert.equal(res.status, 201);
    assert.deepEqual((res.body as { amount: number }).amount, 4200);
    assert.equal(api.requests.at(-1)!.headers.authorization, `Bearer ${values.prod}`);
    assert.equal(api.requests.at(-1)!.headers['content-type'], 'application/json');
    const uses = (await eventsOf(h, 'secret.use')).slice(before);
    assert.equal(uses.length, 1);
    assert.equal(uses[0]!.resource_name, 'PAY_TOKEN');
    assert.equal(uses[0]!.environment, 'production');
    assert.deepEqual({ connector: uses[0]!.context.connector, slot: uses[0]!.context.slot, runId: uses[0]!.context.runId, automation: uses[0]!.context.automation, step: uses[0]!.context.step },
      { connector: 'payments', slot: 'token', ...run });
  });

  test('basic, custom header, query parameter and HMAC signing each arrive as the API expects', async () => {
    await proxy.call(h.ctx, { environment: 'production', connector: 'basic', request: { method: 'GET', path: '/v1/echo-auth' } });
    assert.equal(api.requests.at(-1)!.headers.authorization, `Basic ${Buffer.from(`${values.user}:${values.pass}`).toString('base64')}`);

    await proxy.call(h.ctx, { environment: 'production', connector: 'keyed', request: { method: 'GET', path: '/v1/echo-auth' } });
    assert.equal(api.requests.at(-1)!.headers['x-api-key'], values.apiKey);

    await proxy.call(h.ctx, { environment: 'production', connector: 'query', request: { method: 'GET', path: '/v1/echo-auth', query: { limit: '3' } } });
    const sent = new URL(api.requests.at(-1)!.url, api.url);
    assert.equal(sent.searchParams.get('api_key'), values.apiKey);
    assert.equal(sent.searchParams.get('limit'), '3');

    const body = { amount: 1, currency: 'eur' };
    await proxy.call(h.ctx, { environment: 'production', connector: 'signed', request: { method: 'POST', path: '/v1/charges', query: { idem: 'a1' }, body } });
    const signed = api.requests.at(-1)!;
    const t = Number(signed.headers['x-sig-time']);
    assert.equal(t, Math.floor(h.clock.now() / 1000));
    assert.equal(signed.headers['x-sig'], signRequest(values.hmac, 'POST', '/v1/charges?idem=a1', t, Buffer.from(signed.body)));
    assert.equal(signed.body, JSON.stringify(body));
  });

  test('a webhook-signer connector signs the payload Stripe-style: t=<unix>,v1=HMAC(secret, "<t>.<body>")', async () => {
    await proxy.call(h.ctx, { environment: 'production', connector: 'hooks', request: { method: 'POST', path: '', body: { order: 7 } } });
    const got = api.requests.at(-1)!;
    assert.equal(new URL(got.url, api.url).pathname, '/hooks/orders');
    const t = Math.floor(h.clock.now() / 1000);
    assert.equal(got.headers['keyhold-signature'], signatureHeader(got.body, [values.hook], t));
    assert.match(String(got.headers['keyhold-signature']), /^t=\d+,v1=[0-9a-f]{64}$/);
  });

  test('credentials the API echoes back are masked: the call\'s own values by the proxy, other tenant values by the tenant redactor', async () => {
    const res = await proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/v1/echo-auth', query: { note: values.unrelated } } });
    const text = JSON.stringify(res);
    assert.equal((res.body as { authorization: string }).authorization, 'Bearer [REDACTED]');
    assert.equal((res.body as { query: { note: string } }).query.note, TENANT_MASK);
    for (const value of Object.values(values)) assert.ok(!text.includes(value), 'no value in the proxied answer');
    const basic = await proxy.call(h.ctx, { environment: 'production', connector: 'basic', request: { method: 'GET', path: '/v1/echo-auth' } });
    assert.equal((basic.body as { authorization: string }).authorization, '[REDACTED]', 'the whole Basic header is a value on the wire');
  });

  test('an echo in a content coding is decoded and masked (gzip); one in a coding the proxy cannot decode is not passed back at all', async () => {
    const gz = await proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/v1/echo-auth', query: { coding: 'gzip' } } });
    assert.equal((gz.body as { authorization: string }).authorization, 'Bearer [REDACTED]', 'decoded, then masked');
    assert.equal(gz.headers['content-encoding'], undefined, 'the body the caller gets is not encoded');
    // Reversed bytes hold the credential in a form no mask looks for: the whole answer is refused instead.
    const refused = await proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/v1/echo-auth', query: { coding: 'x-reverse' } } })
      .then(() => assert.fail('an undecodable answer was passed back'), (e: { code?: string; message: string }) => e);
    assert.equal(refused.code, 'UPSTREAM_UNREADABLE');
    assert.ok(!refused.message.includes(values.prod) && !refused.message.includes([...values.prod].reverse().join('')), 'the refusal holds no form of the value');
    // One unknown coding after gzip: the client decodes none of them, and the gzip inside would pass unmasked.
    assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/v1/echo-auth', query: { coding: 'gzip, x-reverse' } } })), 'UPSTREAM_UNREADABLE');
    // An empty entry (a stray comma) is a coding the client does not know either: it leaves the gzip undecoded.
    for (const coding of ['gzip,', ', gzip', 'gzip,,gzip']) {
      assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/v1/echo-auth', query: { coding } } })), 'UPSTREAM_UNREADABLE', coding);
    }
  });

  test('templates resolve server side, in the connector environment, only for secrets the connector allows', async () => {
    await proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'POST', path: '/v1/charges', headers: { 'X-Extra': '{{ secrets.EXTRA }}' }, body: { amount: 1, memo: 'ref {{secrets.EXTRA}}' } } });
    const got = api.requests.at(-1)!;
    assert.equal(got.headers['x-extra'], values.extra);
    assert.equal(JSON.parse(got.body).memo, `ref ${values.extra}`);
    const seen = api.requests.length;
    assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'POST', path: '/v1/charges', body: { x: '{{ secrets.UNRELATED }}' } } })), 'TEMPLATE_NOT_ALLOWED');
    assert.equal(api.requests.length, seen, 'nothing was sent');
    assert.equal((await eventsOf(h, 'proxy.refused')).at(-1)!.context.refusal, 'template_not_allowed');
  });

  test('templates repeated until the request outgrows the body limit are refused before they are filled, in headers and the query too', async () => {
    const small = proxyFor(h, () => Object.values(values), { maxRequestBytes: 4096 });
    const many = '{{ secrets.EXTRA }}'.repeat(200); // 3,800 characters as sent, ~6,800 bytes once filled
    const seen = api.requests.length;
    for (const request of [{ headers: { 'X-Memo': many } }, { query: { memo: many } }, { body: { memo: many } }]) {
      assert.equal(await codeOf(small.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'POST', path: '/v1/charges', ...request } })), 'BODY_TOO_LARGE', JSON.stringify(Object.keys(request)));
    }
    assert.equal(api.requests.length, seen, 'nothing was sent');
  });

  test('a refused call to a destination the connector does not have records its HMAC, never the caller\'s text; a known one by name', async () => {
    await h.services.connectors.create(h.ctx, 'production', {
      name: 'uploads', type: 'http', owner: 'ops', slots: { token: 'PAY_TOKEN' },
      settings: { baseUrl: api.url, healthPath: '/health', auth: { kind: 'bearer' }, destinations: { files: `${api.url}/files` } },
    });
    const pasted = `sk_live_${randomBytes(12).toString('hex')}`;
    assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'production', connector: 'uploads', request: { method: 'GET', path: '/x', destination: pasted } })), 'DESTINATION_NOT_ALLOWED');
    const unknown = (await eventsOf(h, 'proxy.refused')).at(-1)!;
    assert.deepEqual([unknown.context.refusal, unknown.context.destination], ['unknown_destination', h.services.identifiers.hash(pasted)]);
    assert.ok(!JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute()).includes(pasted.slice(0, 16)), 'the text is in no event');
    assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'production', connector: 'uploads', request: { method: 'GET', path: '/../admin', destination: 'files' } })), 'DESTINATION_NOT_ALLOWED');
    assert.equal((await eventsOf(h, 'proxy.refused')).at(-1)!.context.destination, 'files', 'a destination the connector has is named');
  });

  test('a refused path holding a tenant value is recorded masked: the refusal event never carries the value', async () => {
    // A caller pasting a credential into a path (here one the proxy refuses for its dot segment) must not write it into the audit trail.
    assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: `/v1/../${values.unrelated}` } })), 'DESTINATION_NOT_ALLOWED');
    const refused = (await eventsOf(h, 'proxy.refused')).at(-1)!;
    assert.equal(refused.context.refusal, 'dot_segment');
    assert.equal(refused.context.path, `/v1/../${TENANT_MASK}`);
    assert.ok(!JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute()).includes(values.unrelated), 'the value is in no event');
  });

  test('refusals keep their stable reasons: a destination named like an object property, a control character in the query, a header given twice', async () => {
    const sent = api.requests.length;
    const refusal = async (request: Parameters<ProxyService['call']>[1]['request']) => {
      assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'production', connector: 'payments', request })), request.destination ? 'DESTINATION_NOT_ALLOWED' : 'PROXY_HEADER_NOT_ALLOWED');
      return (await eventsOf(h, 'proxy.refused')).at(-1)!.context.refusal;
    };
    for (const destination of ['__proto__', 'constructor', 'toString', 'hasOwnProperty']) {
      assert.equal(await refusal({ method: 'GET', path: '/x', destination }), 'unknown_destination', destination);
    }
    const queries: Array<Record<string, string>> = [{ note: 'a\r\nX-Injected: 1' }, { 'n\u0000': 'v' }, { '': 'v' }, { ['k'.repeat(257)]: 'v' }];
    for (const query of queries) {
      assert.equal(await refusal({ method: 'GET', path: '/x', query }), 'bad_query', JSON.stringify(query).slice(0, 40));
    }
    assert.equal(await refusal({ method: 'GET', path: '/x', headers: { 'X-Trace': 'one', 'x-trace': 'two' } }), 'duplicate_header');
    assert.equal(api.requests.length, sent, 'nothing was sent');
  });

  test('a staging connector resolves the staging value, never the production one', async () => {
    const res = await proxy.call(h.ctx, { environment: 'staging', connector: 'payments', request: { method: 'POST', path: '/v1/charges', body: { amount: 1 } } });
    assert.equal(res.status, 401, 'the API only knows the production token');
    assert.equal(api.requests.at(-1)!.headers.authorization, `Bearer ${values.staging}`);
    assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'staging', connector: 'prod-only', request: { method: 'GET', path: '/health' } })), 'VALUE_NOT_SET');
    assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'staging', connector: 'basic', request: { method: 'GET', path: '/health' } })), 'CONNECTOR_NOT_FOUND', 'a production connector is not reachable from staging');
  });

  test('a redirect comes back as is, not followed, with a Location outside the destination masked', async () => {
    const seen = evil.requests.length;
    const res = await proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/v1/redirect' } });
    assert.equal(res.status, 302);
    assert.equal(res.headers.location, '[REDACTED]');
    assert.equal(evil.requests.length, seen, 'the other port saw nothing');
  });

  test('a stored value HTTP cannot carry in a header (a line break, a control character) is UNSENDABLE_HEADER naming the header, never the value; nothing is sent, and a health check says so too', async () => {
    const broken = `${v('tok')}\r\nX-Injected: 1`;
    await seed(h, h.ctx, 'BROKEN_TOKEN', { production: broken });
    await h.services.connectors.create(h.ctx, 'production', { name: 'broken', type: 'http', owner: 'o', settings: { baseUrl: api.url, healthPath: '/health', auth: { kind: 'header', header: 'X-Api-Key' } }, slots: { value: 'BROKEN_TOKEN' } });
    const sent = api.requests.length;
    const err = await proxy.call(h.ctx, { environment: 'production', connector: 'broken', request: { method: 'GET', path: '/v1/charges' } }).then(() => null, (e: { code: string; status: number; message: string }) => e);
    assert.deepEqual([err?.code, err?.status], ['UNSENDABLE_HEADER', 422]);
    assert.match(err!.message, /"x-api-key"/);
    assert.ok(!err!.message.includes(broken.slice(0, 10)), 'the message holds no part of the value');
    const health = await h.services.connectors.test(h.ctx, 'production', 'broken');
    assert.deepEqual([health.ok, health.reason], [false, 'unsendable_header']);
    assert.equal(api.requests.length, sent, 'nothing left Keyhold');
  });

  test('a Basic username holding ":" (which Basic cannot carry: the API would split it into another user and password) is UNSENDABLE_HEADER too, and nothing is sent', async () => {
    await seed(h, h.ctx, 'COLON_USER', { production: `${v('acct')}:sub` });
    await h.services.connectors.create(h.ctx, 'production', { name: 'colon', type: 'http', owner: 'o', settings: { baseUrl: api.url, healthPath: '/health', auth: { kind: 'basic' } }, slots: { username: 'COLON_USER', password: 'BASIC_PASS' } });
    const sent = api.requests.length;
    assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'production', connector: 'colon', request: { method: 'GET', path: '/v1/charges' } })), 'UNSENDABLE_HEADER');
    const health = await h.services.connectors.test(h.ctx, 'production', 'colon');
    assert.deepEqual([health.ok, health.reason], [false, 'unsendable_header']);
    assert.equal(api.requests.length, sent, 'nothing left Keyhold');
  });

  test('a response over the size limit is cut and flagged; a slow or closed upstream gives UPSTREAM_TIMEOUT or UPSTREAM_UNREACHABLE', async () => {
    // Timeouts well above a loaded machine's stalls (a prompt answer must not time out), well below the slow upstream's 3 s.
    const small = proxyFor(h, () => [], { maxResponseBytes: 1000, headersTimeoutMs: 1000, totalTimeoutMs: 2000 });
    const big = await small.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/v1/big', query: { bytes: '50000' } } });
    assert.equal(big.truncated, true);
    assert.equal((big.body as string).length, 1000);
    assert.equal((await small.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/v1/big', query: { bytes: '10' } } })).truncated, false);
    assert.equal(await codeOf(small.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/v1/slow', query: { ms: '3000' } } })), 'UPSTREAM_TIMEOUT');
    await h.services.connectors.create(h.ctx, 'production', { name: 'closed', type: 'http', owner: 'ops', settings: { baseUrl: `http://127.0.0.1:${await closedPort()}`, auth: { kind: 'bearer' } }, slots: { token: 'PAY_TOKEN' } });
    const err = await small.call(h.ctx, { environment: 'production', connector: 'closed', request: { method: 'GET', path: '/x' } }).catch((e: Error) => e);
    assert.equal((err as { code?: string }).code, 'UPSTREAM_UNREACHABLE', String((err as Error).message));
  });

  test('a destination whose name resolves to the cloud metadata address gets DESTINATION_FORBIDDEN, and no request leaves', async () => {
    const sent: string[] = [];
    const recording = (async (input: URL | string) => {
      sent.push(String(input));
      return new Response('{}', { status: 200 });
    }) as typeof fetch;
    // The name passes the definition check (https, not a metadata name); only resolving it shows where it goes.
    const guarded = proxyFor(h, () => [], {}, guardedFetch(recording, async (host) => [{ address: host === 'billing.rebind.test' ? '169.254.169.254' : '203.0.113.9' }]));
    await h.services.connectors.create(h.ctx, 'production', { name: 'rebound', type: 'http', owner: 'ops', settings: { baseUrl: 'https://billing.rebind.test/v1', auth: { kind: 'bearer' } }, slots: { token: 'PAY_TOKEN' } });
    assert.equal(await codeOf(guarded.call(h.ctx, { environment: 'production', connector: 'rebound', request: { method: 'GET', path: '/latest/meta-data/iam' } })), 'DESTINATION_FORBIDDEN');
    assert.deepEqual(sent, []);
  });

  test('a person with use (builder) can call through the proxy without reveal; a viewer cannot, and nothing is sent', async () => {
    const builder = await userContext(h, h.ctx.tenantId, 'builder-bo', { mfaAgoMs: null });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: builder.id, role: 'builder', environments: ['production'] });
    const res = await proxy.call(builder.ctx(), { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/health' } });
    assert.equal(res.status, 200);
    assert.equal((await eventsOf(h, 'secret.use')).at(-1)!.actor_id, builder.id);
    assert.equal(await codeOf(h.services.values.read(builder.ctx(), 'PAY_TOKEN', 'production')), 'FORBIDDEN', 'the same person cannot reveal it');
    const viewer = await userContext(h, h.ctx.tenantId, 'viewer-vi');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: viewer.id, role: 'viewer' });
    const seen = api.requests.length;
    assert.equal(await codeOf(proxy.call(viewer.ctx(), { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/health' } })), 'FORBIDDEN');
    assert.equal(api.requests.length, seen);
  });

  test('use on one of a connector\'s slot secrets is not enough: a malformed request is FORBIDDEN before the destination is named', async () => {
    const half = await userContext(h, h.ctx.tenantId, 'half-user', { mfaAgoMs: null });
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: half.id, role: 'builder', environments: ['production'], namePatterns: ['BASIC_USER'] });
    const refusals = (await eventsOf(h, 'proxy.refused')).length;
    assert.equal(await codeOf(proxy.call(half.ctx(), { environment: 'production', connector: 'basic', request: { method: 'GET', path: '/../admin', destination: 'nowhere' } })), 'FORBIDDEN');
    assert.equal((await eventsOf(h, 'proxy.refused')).length, refusals, 'no refusal event names the connector\'s destinations to them');
  });

  test('another tenant cannot reach a connector by name (404), and a PostgreSQL connector carries no HTTP', async () => {
    const other = await h.services.tenants.create(`proxy-other-${dialect}`);
    assert.equal(await codeOf(proxy.call(h.contextFor(other.id), { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/health' } })), 'CONNECTOR_NOT_FOUND');
    assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'production', connector: 'db', request: { method: 'GET', path: '/' } })), 'CONNECTOR_TYPE_MISMATCH');
    assert.equal(await codeOf(proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/', body: 'x' } })), 'VALIDATION_FAILED');
  });

  test('over HTTP: the proxy answers the contract shape; bad input is a 4xx and nothing is sent', async () => {
    const auth = { authorization: `Bearer ${h.rootToken}` };
    const ok = await h.app.inject({ method: 'POST', url: '/v1/proxy/production/payments', headers: auth, payload: { method: 'POST', path: '/v1/charges', body: { amount: 5 }, run } });
    assert.equal(ok.statusCode, 200, ok.body);
    const body = ok.json() as { status: number; body: { amount: number }; truncated: boolean; headers: Record<string, string> };
    assert.equal(body.status, 201);
    assert.equal(body.body.amount, 5);
    assert.equal(body.truncated, false);
    assert.equal(ok.headers['cache-control'], 'no-store');
    const seen = api.requests.length;
    for (const [payload, expected] of [
      [{ method: 'GET', path: '/health', extra: 1 }, 'UNKNOWN_FIELD'],
      [{ method: 'TRACE', path: '/health' }, 'VALIDATION_FAILED'],
      [{ method: 'GET' }, 'VALIDATION_FAILED'],
      [{ method: 'GET', path: '/health', headers: { a: 1 } }, 'VALIDATION_FAILED'],
      [{ method: 'GET', path: '/health', run: { runId: 'r' } }, 'VALIDATION_FAILED'],
    ] as const) {
      const res = await h.app.inject({ method: 'POST', url: '/v1/proxy/production/payments', headers: auth, payload });
      assert.equal(res.statusCode, 400, JSON.stringify(payload));
      assert.equal((res.json() as { error: { code: string } }).error.code, expected, JSON.stringify(payload));
    }
    const missing = await h.app.inject({ method: 'POST', url: '/v1/proxy/production/nope', headers: auth, payload: { method: 'GET', path: '/health' } });
    assert.equal(missing.statusCode, 404);
    assert.equal(api.requests.length, seen);
  });
});
