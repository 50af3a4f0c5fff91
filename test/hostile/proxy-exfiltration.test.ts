import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createHarness, type Harness } from '../helpers/harness.ts';
import { userContext } from '../helpers/identities.ts';
import { eventsOf, seed } from '../helpers/connectors.ts';
import { startFakePaymentApi, type FakePaymentApi } from '../fixtures/fake-payment-api.ts';

/**
 * A builder who may `use` the payment token tries to send it somewhere other than the payment API:
 * another port on the same host (a listener that records everything), other spellings of loopback,
 * path tricks, header injection and auth overrides. Every attempt is refused with a stable code,
 * audited as `proxy.refused`, resolves no value, and neither server sees a request.
 */
describeEachDialect('proxy exfiltration attempts are refused, audited, and reach nobody', (dialect) => {
  let h: Harness;
  let api: FakePaymentApi;
  let evil: FakePaymentApi;
  let token: string;
  const value = `sk_live_${randomBytes(16).toString('hex')}`;

  before(async () => {
    h = await createHarness(dialect);
    api = await startFakePaymentApi({ token: value });
    evil = await startFakePaymentApi({ token: 'x' });
    await seed(h, h.ctx, 'PAY_TOKEN', { production: value });
    await seed(h, h.ctx, 'SIGNING_KEY', { production: `hmac_${randomBytes(16).toString('hex')}` });
    const settings = (auth: Record<string, unknown>) => ({ baseUrl: `${api.url}/v1`, healthPath: '/health', auth });
    await h.services.connectors.create(h.ctx, 'production', { name: 'payments', type: 'http', owner: 'payments-team', settings: settings({ kind: 'bearer' }), slots: { token: 'PAY_TOKEN' } });
    await h.services.connectors.create(h.ctx, 'production', { name: 'keyed', type: 'http', owner: 'payments-team', settings: settings({ kind: 'header', header: 'X-Api-Key' }), slots: { value: 'PAY_TOKEN' } });
    await h.services.connectors.create(h.ctx, 'production', { name: 'byquery', type: 'http', owner: 'payments-team', settings: settings({ kind: 'query', param: 'api_key' }), slots: { value: 'PAY_TOKEN' } });
    await h.services.connectors.create(h.ctx, 'production', { name: 'signed', type: 'http', owner: 'payments-team', settings: settings({ kind: 'hmac' }), slots: { signingKey: 'SIGNING_KEY' } });
    // The attacker: an automation runner's machine token holding `builder` (use, no reveal), over HTTP.
    const root = { authorization: `Bearer ${h.rootToken}` };
    const machine = (await h.app.inject({ method: 'POST', url: '/v1/machines', headers: root, payload: { name: 'mallory-runner', kind: 'client_secret' } })).json() as { id: string; clientId: string; clientSecret: string };
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machine.id, role: 'builder', environments: ['production'] });
    const exchanged = await h.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { grant_type: 'client_credentials', client_id: machine.clientId, client_secret: machine.clientSecret } });
    token = (exchanged.json() as { access_token: string }).access_token;
    assert.ok(token, exchanged.body);
  });
  after(async () => {
    await api.close();
    await evil.close();
    await h.close();
  });

  const E = () => evil.port;
  const A = () => api.port;
  const cases: Array<{ name: string; connector?: string; body: () => Record<string, unknown>; code: string; refusal: string }> = [
    { name: 'an absolute URL to another port', body: () => ({ method: 'GET', path: `http://127.0.0.1:${E()}/steal` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'absolute_url' },
    { name: 'a protocol-relative URL', body: () => ({ method: 'GET', path: `//127.0.0.1:${E()}/steal` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'protocol_relative' },
    { name: '@ userinfo to move the host', body: () => ({ method: 'GET', path: `@127.0.0.1:${E()}/steal` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'userinfo' },
    { name: '@ inside an absolute path', body: () => ({ method: 'GET', path: `/x@127.0.0.1:${E()}/` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'userinfo' },
    { name: 'localhost instead of 127.0.0.1', body: () => ({ method: 'GET', path: `http://localhost:${A()}/v1/health` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'absolute_url' },
    { name: 'the short alias 127.1', body: () => ({ method: 'GET', path: `http://127.1:${E()}/` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'absolute_url' },
    { name: 'hex 0x7f000001', body: () => ({ method: 'GET', path: `http://0x7f000001:${E()}/` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'absolute_url' },
    { name: 'decimal 2130706433', body: () => ({ method: 'GET', path: `http://2130706433:${E()}/` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'absolute_url' },
    { name: 'IPv4-mapped IPv6 [::ffff:127.0.0.1]', body: () => ({ method: 'GET', path: `http://[::ffff:127.0.0.1]:${E()}/` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'absolute_url' },
    { name: 'IPv6 loopback literal', body: () => ({ method: 'GET', path: `//[::1]:${E()}/` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'protocol_relative' },
    { name: 'dot segments out of the prefix', body: () => ({ method: 'GET', path: '/../admin' }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'dot_segment' },
    { name: 'encoded dot segments', body: () => ({ method: 'GET', path: '/%2e%2e/admin' }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'encoded_separator' },
    // Tomcat and Spring drop a ;parameter before normalising, so /v1/..;/admin is /admin to them.
    { name: 'a dot segment with a path parameter (/..;/)', body: () => ({ method: 'GET', path: '/..;/admin' }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'dot_segment' },
    { name: 'a dot segment with a named path parameter (/..;x=1/)', body: () => ({ method: 'GET', path: '/health/..;jsessionid=1/..;/admin' }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'dot_segment' },
    { name: 'double-encoded dot segments', body: () => ({ method: 'GET', path: '/%252e%252e/admin' }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'encoded_separator' },
    { name: 'an encoded slash', body: () => ({ method: 'GET', path: `/%2f%2f127.0.0.1:${E()}` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'encoded_separator' },
    { name: 'backslashes', body: () => ({ method: 'GET', path: `/\\\\127.0.0.1:${E()}\\steal` }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'backslash' },
    { name: 'CR/LF in the path', body: () => ({ method: 'GET', path: '/health\r\nHost: evil' }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'control_character' },
    { name: 'an unknown named destination', body: () => ({ method: 'GET', path: '/health', destination: 'elsewhere' }), code: 'DESTINATION_NOT_ALLOWED', refusal: 'unknown_destination' },
    { name: 'CR/LF in a header value', body: () => ({ method: 'GET', path: '/health', headers: { 'X-Note': `a\r\nX-Forward: http://127.0.0.1:${E()}` } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'bad_header_value' },
    { name: 'NUL in a header value', body: () => ({ method: 'GET', path: '/health', headers: { 'X-Note': 'a\u0000b' } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'bad_header_value' },
    { name: 'a header name with CR/LF', body: () => ({ method: 'GET', path: '/health', headers: { 'X-A\r\nHost': 'evil' } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'bad_header_name' },
    { name: 'overriding Authorization', body: () => ({ method: 'GET', path: '/health', headers: { Authorization: 'Bearer mine' } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'auth_override' },
    { name: 'overriding the custom auth header', connector: 'keyed', body: () => ({ method: 'GET', path: '/health', headers: { 'x-api-key': 'mine' } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'auth_override' },
    { name: 'overriding the auth query parameter', connector: 'byquery', body: () => ({ method: 'GET', path: '/health', query: { api_key: 'mine' } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'auth_override' },
    { name: 'overriding the HMAC signature header', connector: 'signed', body: () => ({ method: 'GET', path: '/health', headers: { 'X-Signature': 'f00' } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'auth_override' },
    { name: 'overriding the HMAC timestamp header', connector: 'signed', body: () => ({ method: 'GET', path: '/health', headers: { 'x-signature-timestamp': '1' } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'auth_override' },
    { name: 'setting Host', body: () => ({ method: 'GET', path: '/health', headers: { Host: `127.0.0.1:${E()}` } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'hop_by_hop_header' },
    { name: 'setting Transfer-Encoding', body: () => ({ method: 'POST', path: '/charges', headers: { 'Transfer-Encoding': 'chunked' }, body: 'x' }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'hop_by_hop_header' },
    { name: 'setting Connection', body: () => ({ method: 'GET', path: '/health', headers: { Connection: 'close, Authorization' } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'hop_by_hop_header' },
    // An answer in pieces, or in a coding the proxy does not decode, would carry an echoed credential past the masking.
    { name: 'asking for a Range of the answer', body: () => ({ method: 'GET', path: '/health', headers: { Range: 'bytes=0-3' } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'unmaskable_answer' },
    { name: 'asking for an If-Range answer', body: () => ({ method: 'GET', path: '/health', headers: { 'if-range': '"etag"' } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'unmaskable_answer' },
    { name: 'choosing the content coding of the answer', body: () => ({ method: 'GET', path: '/health', headers: { 'Accept-Encoding': 'compress' } }), code: 'PROXY_HEADER_NOT_ALLOWED', refusal: 'unmaskable_answer' },
    { name: 'a template of a secret the connector does not allow', body: () => ({ method: 'POST', path: '/charges', body: { memo: '{{ secrets.SIGNING_KEY }}' } }), code: 'TEMPLATE_NOT_ALLOWED', refusal: 'template_not_allowed' },
  ];

  for (const c of cases) {
    test(`refused: ${c.name}`, async () => {
      const before = { api: api.requests.length, evil: evil.requests.length, uses: (await eventsOf(h, 'secret.use')).length, refused: (await eventsOf(h, 'proxy.refused')).length };
      const res = await h.app.inject({ method: 'POST', url: `/v1/proxy/production/${c.connector ?? 'payments'}`, headers: { authorization: `Bearer ${token}` }, payload: c.body() });
      assert.equal(res.statusCode, 403, res.body);
      assert.equal((res.json() as { error: { code: string } }).error.code, c.code);
      assert.ok(!res.body.includes(value), 'no value in the refusal');
      const refused = (await eventsOf(h, 'proxy.refused')).slice(before.refused);
      assert.equal(refused.length, 1, 'one proxy.refused event');
      assert.equal(refused[0]!.outcome, 'denied');
      assert.equal(refused[0]!.reason, c.code);
      assert.equal(refused[0]!.context.refusal, c.refusal);
      assert.equal((await eventsOf(h, 'secret.use')).length, before.uses, 'no value was resolved');
      assert.equal(api.requests.length, before.api, 'the payment API saw nothing');
      assert.equal(evil.requests.length, before.evil, 'the other port saw nothing');
    });
  }

  test('a builder cannot re-point the connector: changing where a credential goes needs write on its secret', async () => {
    const mallory = await userContext(h, h.ctx.tenantId, 'mallory-2');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: mallory.id, role: 'builder' });
    const before = await h.services.connectors.get(h.ctx, 'production', 'payments');
    const attempt = h.services.connectors.update(mallory.ctx(), 'production', 'payments', { settings: { ...before.settings, baseUrl: evil.url } });
    await assert.rejects(attempt, { code: 'FORBIDDEN' });
    const create = h.services.connectors.create(mallory.ctx(), 'production', { name: 'mine', type: 'http', owner: 'mallory', settings: { baseUrl: evil.url, auth: { kind: 'bearer' } }, slots: { token: 'PAY_TOKEN' } });
    await assert.rejects(create, { code: 'FORBIDDEN' });
    assert.equal((await h.services.connectors.get(h.ctx, 'production', 'payments')).revision, before.revision);
    assert.equal(evil.requests.length, 0);
  });

  test('a caller who may not use the connector\'s secret learns nothing from a malformed request: not its destination, not a refusal event', async () => {
    const outsider = await userContext(h, h.ctx.tenantId, 'outsider-2');
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: outsider.id, role: 'builder', namePatterns: ['OTHER_*'] });
    const refused = (await eventsOf(h, 'proxy.refused')).length;
    const err = await h.services.proxy.call(outsider.ctx(), { environment: 'production', connector: 'payments', request: { method: 'GET', path: 'x' } }).catch((e: Error & { code?: string }) => e);
    assert.equal((err as { code?: string }).code, 'FORBIDDEN');
    assert.ok(!(err as Error).message.includes(String(api.port)), 'the destination is not in the message');
    assert.equal((await eventsOf(h, 'proxy.refused')).length, refused, 'the refusal is the authorizer\'s, not a proxy.refused');
  });

  test('the same request, well formed, goes through: the refusals are not blanket', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/v1/proxy/production/payments', headers: { authorization: `Bearer ${token}` }, payload: { method: 'GET', path: '/health' } });
    assert.equal(res.statusCode, 200, res.body);
    assert.equal((res.json() as { status: number }).status, 200);
    assert.equal(evil.requests.length, 0);
  });
});
