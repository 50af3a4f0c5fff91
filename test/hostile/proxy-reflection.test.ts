import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createHarness, type Harness } from '../helpers/harness.ts';
import { proxyFor, seed } from '../helpers/connectors.ts';
import { startFakePaymentApi, type FakePaymentApi } from '../fixtures/fake-payment-api.ts';

/**
 * A builder who may `use` a token (never reveal it) calls an API that echoes the credential back,
 * and shapes the call so the echo slips past masking: cut by the response size limit mid-value, or
 * written with JSON escapes the proxy then decodes. The answer must never carry any of the value.
 */
describeEachDialect('proxy answers never reflect the injected credential, however the echo is shaped', (dialect) => {
  let h: Harness;
  let api: FakePaymentApi;
  let token: string;
  // Base64-style, as many API keys are: '+' and '/' are what JSON encoders like to escape.
  const basicUser = `u${randomBytes(2).toString('hex').slice(1)}`; // 4 characters: the password sits at byte 5, unaligned
  const basicPass = `p${randomBytes(2).toString('hex')}`;
  const value = `tok+${randomBytes(12).toString('base64url')}/${randomBytes(12).toString('hex')}+k`;

  before(async () => {
    h = await createHarness(dialect);
    api = await startFakePaymentApi({ token: value });
    await seed(h, h.ctx, 'PAY_TOKEN', { production: value });
    // HTTP Basic with short parts: each under the redactor's floor, so masked only as whole tokens, never inside base64.
    await seed(h, h.ctx, 'BASIC_USER', { production: basicUser });
    await seed(h, h.ctx, 'BASIC_PASS', { production: basicPass });
    await h.services.connectors.create(h.ctx, 'production', { name: 'basic', type: 'http', owner: 'payments-team', settings: { baseUrl: api.url, auth: { kind: 'basic' } }, slots: { username: 'BASIC_USER', password: 'BASIC_PASS' } });
    await h.services.connectors.create(h.ctx, 'production', { name: 'payments', type: 'http', owner: 'payments-team', settings: { baseUrl: api.url, auth: { kind: 'bearer' } }, slots: { token: 'PAY_TOKEN' } });
    const root = { authorization: `Bearer ${h.rootToken}` };
    const machine = (await h.app.inject({ method: 'POST', url: '/v1/machines', headers: root, payload: { name: 'echo-runner', kind: 'client_secret' } })).json() as { id: string; clientId: string; clientSecret: string };
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machine.id, role: 'builder', environments: ['production'] });
    const exchanged = await h.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { grant_type: 'client_credentials', client_id: machine.clientId, client_secret: machine.clientSecret } });
    token = (exchanged.json() as { access_token: string }).access_token;
  });
  after(async () => {
    await api.close();
    await h.close();
  });

  test('an echo JSON-encoded with \\u escapes (.NET writes + as \\u002B) is masked, not decoded into the answer', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/v1/proxy/production/payments', headers: { authorization: `Bearer ${token}` }, payload: { method: 'GET', path: '/v1/echo-auth', query: { style: 'dotnet' } } });
    assert.equal(res.statusCode, 200, res.body);
    assert.ok(api.requests.at(-1)!.headers.authorization === `Bearer ${value}`, 'the API got the credential');
    assert.ok(!res.body.includes(value), 'the value is not in the answer');
    assert.ok(!JSON.stringify((res.json() as { body: unknown }).body).includes(value.slice(4, 20)));
    assert.equal((res.json() as { body: { authorization: string } }).body.authorization, 'Bearer [REDACTED]');
  });

  test('a \\u-escaped echo is masked where the JSON is not parsed: cut by the size limit, or not labelled JSON', async () => {
    // The JSON parse decodes escapes only for a whole JSON answer; a caller decides both of the others (padding a
    // request an echo returns past the limit; picking an endpoint or format that answers NDJSON or text).
    const echoed = JSON.stringify({ authorization: `Bearer ${value}` }).replace(/[+]/g, '\\u002B');
    const leaks = (text: string) => {
      const decoded = text.replace(/\\u([0-9A-Fa-f]{4})/g, (_, hex: string) => String.fromCharCode(parseInt(hex, 16)));
      return [...Array(value.length - 7).keys()].map((i) => value.slice(i, i + 8)).filter((part) => decoded.includes(part));
    };
    for (const [label, type, maxResponseBytes] of [
      ['cut after the value', undefined, echoed.length - 2],
      ['NDJSON', 'application/x-ndjson', undefined],
      ['text', 'text/plain', undefined],
    ] as const) {
      const proxy = proxyFor(h, () => [value], maxResponseBytes ? { maxResponseBytes } : {});
      const res = await proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/v1/echo-auth', query: { style: 'dotnet', ...(type ? { type } : {}) } } });
      const text = typeof res.body === 'string' ? res.body : JSON.stringify(res.body);
      assert.ok(text.includes('Bearer '), `${label}: the echo came back (${text})`);
      assert.deepEqual(leaks(text), [], `${label}: parts of the value came back: ${text}`);
    }
  });

  test('an echo in a character encoding the caller asked for (UTF-16) is read as that encoding and masked; one the proxy cannot read is refused', async () => {
    // A server that honours `Accept: application/json;charset=UTF-16` (Spring does) answers in it: read as UTF-8, the
    // value would come back whole, a NUL between each of its characters, and no mask would find it.
    const leaks = (answer: unknown) => {
      const text = (typeof answer === 'string' ? answer : JSON.stringify(answer)).replaceAll('\\u0000', '').replaceAll('\0', '');
      return [...Array(value.length - 7).keys()].map((i) => value.slice(i, i + 8)).filter((part) => text.includes(part));
    };
    for (const charset of ['utf-16le', 'utf-16be', 'utf-16']) {
      const res = await h.app.inject({ method: 'POST', url: '/v1/proxy/production/payments', headers: { authorization: `Bearer ${token}` }, payload: { method: 'GET', path: '/v1/echo-auth', query: { charset } } });
      assert.equal(res.statusCode, 200, res.body);
      assert.deepEqual(leaks((res.json() as { body: unknown }).body), [], `${charset}: parts of the value came back: ${res.body}`);
      assert.equal((res.json() as { body: { authorization: string } }).body.authorization, 'Bearer [REDACTED]', charset);
    }
    const refused = await h.app.inject({ method: 'POST', url: '/v1/proxy/production/payments', headers: { authorization: `Bearer ${token}` }, payload: { method: 'GET', path: '/v1/echo-auth', query: { charset: 'utf-32le' } } });
    assert.equal(refused.statusCode, 502, refused.body);
    assert.equal((refused.json() as { error: { code: string } }).error.code, 'UPSTREAM_UNREADABLE');
    assert.deepEqual(leaks(refused.body), []);
  });

  test('an echo whose label does not say its encoding is refused: UTF-8 labelled UTF-16 (read back it is the bytes), UTF-16 with no label', async () => {
    // A caller who can pick the label (an endpoint that sets the Content-Type it is asked for) would otherwise get the
    // UTF-8 echo read as UTF-16: text no mask matches, which turned back into its bytes is the value.
    const leaks = (answer: unknown) => {
      const text = typeof answer === 'string' ? answer : JSON.stringify(answer);
      const readings = [text, Buffer.from(text, 'utf16le').toString('utf8'), Buffer.from(text, 'utf16le').swap16().toString('utf8'), text.replaceAll('\0', '')];
      return [...Array(value.length - 7).keys()].map((i) => value.slice(i, i + 8)).filter((part) => readings.some((r) => r.includes(part)));
    };
    for (const [charset, label] of [['utf-8', 'utf-16le'], ['utf-8', 'utf-16be'], ['utf-16le', ''], ['utf-16le', 'utf-8'], ['utf-32le', '']]) {
      const res = await h.app.inject({ method: 'POST', url: '/v1/proxy/production/payments', headers: { authorization: `Bearer ${token}` }, payload: { method: 'GET', path: '/v1/echo-auth', query: { charset: charset!, label: label! } } });
      const answer = res.statusCode === 200 ? (res.json() as { body: unknown }).body : res.body;
      assert.deepEqual(leaks(answer), [], `${charset} labelled "${label}": parts of the value came back: ${res.body}`);
      assert.equal(res.statusCode, 502, `${charset} labelled "${label}": ${res.body}`);
      assert.equal((res.json() as { error: { code: string } }).error.code, 'UPSTREAM_UNREADABLE');
    }
  });

  test('HTTP Basic echoed as its bare base64 credentials (no "Basic ") is masked, even when each part is short', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/v1/proxy/production/basic', headers: { authorization: `Bearer ${token}` }, payload: { method: 'GET', path: '/v1/echo-auth', query: { style: 'parsed' } } });
    assert.equal(res.statusCode, 200, res.body);
    const sent = Buffer.from(`${basicUser}:${basicPass}`).toString('base64');
    assert.equal(api.requests.at(-1)!.headers.authorization, `Basic ${sent}`, 'the API got the credentials');
    const body = (res.json() as { body: { scheme: string; credentials: string } }).body;
    assert.equal(body.scheme, 'Basic');
    assert.ok(!res.body.includes(sent.slice(0, 8)), `the credentials came back: ${body.credentials}`);
  });

  test('a credential straddling the response size cut is masked whole, not returned minus its tail', async () => {
    // {"authorization":"Bearer <value>",... : the caller picks the limit's position inside the value (here by limit,
    // against a 1 MiB limit by padding what the API echoes first).
    const at = '{"authorization":"Bearer '.length;
    for (const kept of [6, Math.floor(value.length / 2), value.length - 1]) {
      const proxy = proxyFor(h, () => [value], { maxResponseBytes: at + kept });
      const res = await proxy.call(h.ctx, { environment: 'production', connector: 'payments', request: { method: 'GET', path: '/v1/echo-auth' } });
      assert.equal(res.truncated, true);
      const text = String(res.body);
      assert.ok(Buffer.byteLength(text) <= at + kept, 'still cut at the limit');
      assert.ok(!text.includes(value.slice(0, 6)), `${kept} characters of the value came back: ${text}`);
    }
  });
});
