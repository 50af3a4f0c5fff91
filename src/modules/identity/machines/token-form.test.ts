import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { errorCodes } from '../../../errors/index.ts';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, TEST_LIMITS, type Harness } from '../../../../test/helpers/harness.ts';
import { startOidcProvider, type OidcProvider } from '../../../../test/fixtures/oidc-provider.ts';
import { JWT_BEARER_GRANT } from './types.ts';

interface Reply { status: number; body: any; headers: Record<string, unknown>; raw: string }

const FORM = 'application/x-www-form-urlencoded';
const AUDIENCE = 'https://keyhold.example';
const REFUSED = { status: 401, error: 'invalid_client', code: 'INVALID_CREDENTIALS', message: 'invalid client credentials' };
const REFUSED_ASSERTION = { ...REFUSED, error: 'invalid_grant' };
const form = (fields: Record<string, string>) => new URLSearchParams(fields).toString();
/** client_secret_basic as RFC 6749 §2.3.1 builds it: each part form-urlencoded, then base64. */
const basic = (id: string, secret: string) => `Basic ${Buffer.from(`${form({ x: id }).slice(2)}:${form({ x: secret }).slice(2)}`).toString('base64')}`;

describeEachDialect('the token endpoint for standard OAuth 2.0 clients (form bodies, client_secret_basic)', (dialect) => {
  let h: Harness;
  let idp: OidcProvider;
  let ipCounter = 0;
  /** A fresh source address per request, so the per-address limit only bites where a test means it to. */
  const nextIp = () => `10.1.${Math.floor(++ipCounter / 250)}.${(ipCounter % 250) + 1}`;
  /** Every secret and Basic header this suite sent, to look for in the log and the audit trail at the end. */
  const sent = new Set<string>();

  async function post(payload: string | Buffer | undefined, headers: Record<string, string> = {}, ip = nextIp(), url = '/v1/auth/token'): Promise<Reply> {
    if (headers.authorization) sent.add(headers.authorization);
    const res = await h.app.inject({ method: 'POST', url, headers, remoteAddress: ip, ...(payload !== undefined ? { payload } : {}) });
    return { status: res.statusCode, body: res.body === '' ? null : res.json(), headers: res.headers, raw: res.body };
  }
  const postForm = (fields: Record<string, string>, headers: Record<string, string> = {}, ip?: string) =>
    post(form(fields), { 'content-type': FORM, ...headers }, ip);
  const refusal = (r: Reply) => ({ status: r.status, error: r.body?.error, code: r.body?.code, message: r.body?.error_description });

  async function createMachine(name: string): Promise<{ id: string; clientId: string; clientSecret: string }> {
    const res = await h.app.inject({ method: 'POST', url: '/v1/machines', headers: { authorization: `Bearer ${h.rootToken}` }, payload: { name, kind: 'client_secret' } });
    assert.equal(res.statusCode, 201, res.body);
    const m = res.json();
    sent.add(m.clientSecret);
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: m.id, role: 'viewer' });
    return m;
  }

  async function assertIssued(res: Reply): Promise<void> {
    assert.equal(res.status, 200, res.raw);
    assert.deepEqual([res.body.token_type, res.body.expires_in, res.headers['cache-control']], ['Bearer', 900, 'no-store']);
    const listed = await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: { authorization: `Bearer ${res.body.access_token}` } });
    assert.equal(listed.statusCode, 200, 'the token authenticates');
  }

  const issuedTo = async (machineId: string) =>
    (await h.storage.db.selectFrom('tokens').select('id').where('principal_id', '=', machineId).execute()).length;
  const tokenEvents = () => h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', 'auth.token').orderBy('seq').execute();

  before(async () => {
    h = await createHarness(dialect);
    idp = await startOidcProvider();
  });
  after(async () => {
    await idp.close();
    await h.close();
  });

  test('a form-encoded client_credentials request gets a token that authenticates', async () => {
    const m = await createMachine('form-client');
    const fields = { grant_type: 'client_credentials', client_id: m.clientId, client_secret: m.clientSecret };
    await assertIssued(await postForm(fields));
    await assertIssued(await postForm(fields, { 'content-type': `${FORM}; charset=UTF-8` }));
    await assertIssued(await postForm(fields, { 'content-type': `${FORM};charset="utf-8"` }));
  });

  test('client_secret_basic: the credentials in an Authorization Basic header get a token, with a form or a JSON body', async () => {
    const m = await createMachine('basic-client');
    await assertIssued(await postForm({ grant_type: 'client_credentials' }, { authorization: basic(m.clientId, m.clientSecret) }));
    await assertIssued(await postForm({ grant_type: 'client_credentials', client_id: m.clientId }, { authorization: basic(m.clientId, m.clientSecret) }));
    await assertIssued(await post(JSON.stringify({ grant_type: 'client_credentials' }), { 'content-type': 'application/json', authorization: basic(m.clientId, m.clientSecret) }));
  });

  test('a form-encoded jwt-bearer request with an assertion gets a token', async () => {
    const created = await h.app.inject({
      method: 'POST', url: '/v1/machines', headers: { authorization: `Bearer ${h.rootToken}` },
      payload: { name: 'form-oidc', kind: 'oidc', oidc: { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, subject: 'repo:acme/app' } },
    });
    assert.equal(created.statusCode, 201, created.body);
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: created.json().id, role: 'viewer' });
    const assertion = await idp.sign({ aud: AUDIENCE, sub: 'repo:acme/app' }, h.clock.now());
    await assertIssued(await postForm({ grant_type: JWT_BEARER_GRANT, client_id: created.json().clientId, assertion }));
    const forged = await idp.sign({ aud: 'https://other.example', sub: 'repo:acme/app' }, h.clock.now());
    assert.deepEqual(refusal(await postForm({ grant_type: JWT_BEARER_GRANT, client_id: created.json().clientId, assertion: forged })), REFUSED_ASSERTION);
  });

  test('unknown client and wrong secret get the one same 401 by form and by Basic, and Basic callers get a Basic challenge', async () => {
    const m = await createMachine('one-answer');
    const wrong = 'khcs_' + 'A'.repeat(43);
    const unknown = 'khc_' + 'B'.repeat(22);
    const replies = [
      await postForm({ grant_type: 'client_credentials', client_id: m.clientId, client_secret: wrong }),
      await postForm({ grant_type: 'client_credentials', client_id: unknown, client_secret: m.clientSecret }),
      await postForm({ grant_type: 'client_credentials' }, { authorization: basic(m.clientId, wrong) }),
      await postForm({ grant_type: 'client_credentials' }, { authorization: basic(unknown, m.clientSecret) }),
      await postForm({ grant_type: 'client_credentials' }, { authorization: basic(m.clientSecret, m.clientSecret) }),
    ];
    for (const [i, r] of replies.entries()) assert.deepEqual(refusal(r), REFUSED, `case ${i}`);
    assert.deepEqual(replies.map((r) => r.headers['www-authenticate'] !== undefined), [false, false, true, true, true]);
    assert.match(String(replies[2]!.headers['www-authenticate']), /^Basic realm="keyhold"/);
    assert.equal(await issuedTo(m.id), 0);
  });

  test('refused form and Basic exchanges are audited like JSON ones: an unknown client id only as its keyed hash', async () => {
    const unknown = 'khc_audit-probe-unknown';
    const before = (await tokenEvents()).length;
    await post(JSON.stringify({ grant_type: 'client_credentials', client_id: unknown, client_secret: 'x' }), { 'content-type': 'application/json' });
    await postForm({ grant_type: 'client_credentials', client_id: unknown, client_secret: 'x' });
    await postForm({ grant_type: 'client_credentials' }, { authorization: basic(unknown, 'x') });
    const events = (await tokenEvents()).slice(before);
    assert.deepEqual(events.map((e) => [e.outcome, e.reason, e.actor_type]), Array(3).fill(['denied', 'INVALID_CREDENTIALS', 'anonymous']));
    assert.match(events[0]!.actor_id, /^hmac-sha256:[0-9a-f]{32}$/);
    assert.equal(new Set(events.map((e) => e.actor_id)).size, 1, 'the same client id hashes the same, however it was sent');
    assert.ok(events.every((e) => !JSON.stringify(e).includes(unknown)));
  });

  test('token events carry the request id, source address and user agent like every other event; an issue names its token', async () => {
    const m = await createMachine('event-context');
    const agent = { 'user-agent': 'deploy-bot/1.0' };
    const before = (await tokenEvents()).length;
    const ok = await postForm({ grant_type: 'client_credentials', client_id: m.clientId, client_secret: m.clientSecret }, agent, '10.2.0.1');
    await assertIssued(ok);
    const bad = await postForm({ grant_type: 'client_credentials', client_id: m.clientId, client_secret: 'wrong' }, agent, '10.2.0.2');
    assert.equal(bad.status, 401);
    const events = (await tokenEvents()).slice(before).map((e) => ({ ...e, context: JSON.parse(e.context) as Record<string, string> }));
    assert.deepEqual(events.map((e) => e.outcome), ['allowed', 'denied']);
    for (const [e, reply, ip] of [[events[0]!, ok, '10.2.0.1'], [events[1]!, bad, '10.2.0.2']] as const) {
      assert.deepEqual([e.context.sourceIp, e.context.userAgent, e.context.grantType], [ip, 'deploy-bot/1.0', 'client_credentials']);
      assert.equal(e.context.requestId, reply.headers['x-request-id'], 'the id of the request that did it');
    }
    const issued = await h.storage.db.selectFrom('tokens').select('id').where('principal_id', '=', m.id).executeTakeFirstOrThrow();
    assert.deepEqual([events[0]!.context.tokenId, events[0]!.context.credentialId], [issued.id, issued.id]);
    assert.equal(events[1]!.context.credentialId, undefined);
  });

  test('bad requests are a 4xx with a stable code, never a 500, and issue nothing', async () => {
    const m = await createMachine('hostile');
    const s = m.clientSecret;
    const ok = { grant_type: 'client_credentials', client_id: m.clientId, client_secret: s };
    const auth = basic(m.clientId, s);
    const formCt = { 'content-type': FORM };
    type Case = [what: string, payload: string | Buffer | undefined, headers: Record<string, string>, status: number, code: string, oauth?: string];
    const cases: Case[] = [
      ['a repeated grant_type', `${form(ok)}&grant_type=client_credentials`, formCt, 400, 'DUPLICATE_PARAMETER'],
      ['a repeated client_secret, same value', `${form(ok)}&client_secret=${s}`, formCt, 400, 'DUPLICATE_PARAMETER'],
      ['a repeated client_id spelled with a percent-escape', `${form(ok)}&client%5Fid=${m.clientId}`, formCt, 400, 'DUPLICATE_PARAMETER'],
      ['a repeated client_id in a JSON body, spelled with an escape', `{"grant_type":"client_credentials","client_id":"khc_other","client\\u005fid":"${m.clientId}","client_secret":"${s}"}`, { 'content-type': 'application/json' }, 400, 'DUPLICATE_FIELD'],
      ['an unknown parameter (scope)', `${form(ok)}&scope=all`, formCt, 400, 'UNKNOWN_FIELD'],
      ['a __proto__ parameter', `${form(ok)}&__proto__=x`, formCt, 400, 'UNKNOWN_FIELD'],
      ['a client_secret over 256 characters', form({ ...ok, client_secret: s + 'x'.repeat(256) }), formCt, 400, 'VALIDATION_FAILED'],
      ['an unknown grant_type', form({ ...ok, grant_type: 'password' }), formCt, 400, 'VALIDATION_FAILED', 'unsupported_grant_type'],
      ['client_credentials without a secret', form({ grant_type: 'client_credentials', client_id: m.clientId }), formCt, 400, 'VALIDATION_FAILED'],
      ['jwt-bearer without an assertion', form({ grant_type: JWT_BEARER_GRANT, client_id: m.clientId }), formCt, 400, 'VALIDATION_FAILED'],
      ['an empty form body', '', formCt, 400, 'VALIDATION_FAILED'],
      ['a broken percent-escape', `${form(ok)}%zz`, formCt, 400, 'MALFORMED_FORM'],
      ['a percent-escape that is not UTF-8', `${form(ok)}%e9`, formCt, 400, 'MALFORMED_FORM'],
      ['raw bytes that are not UTF-8', Buffer.concat([Buffer.from(form(ok)), Buffer.from([0xff, 0xfe])]), formCt, 400, 'MALFORMED_FORM'],
      ['a form body over the body limit', `${form(ok)}&pad=${'x'.repeat(TEST_LIMITS.maxBodyBytes)}`, formCt, 413, 'BODY_TOO_LARGE'],
      ['Basic and a client_secret in the form', form(ok), { ...formCt, authorization: auth }, 400, 'MULTIPLE_CLIENT_AUTH'],
      ['Basic and a client_secret in JSON', JSON.stringify(ok), { 'content-type': 'application/json', authorization: auth }, 400, 'MULTIPLE_CLIENT_AUTH'],
      ['Basic and another client_id in the form', form({ grant_type: 'client_credentials', client_id: 'khc_other' }), { ...formCt, authorization: auth }, 400, 'MULTIPLE_CLIENT_AUTH'],
      ['Basic with a jwt-bearer grant', form({ grant_type: JWT_BEARER_GRANT, assertion: 'a.b.c' }), { ...formCt, authorization: auth }, 400, 'VALIDATION_FAILED'],
      ['a Basic header that is not base64', form({ grant_type: 'client_credentials' }), { ...formCt, authorization: `Basic ${m.clientId}:${s}` }, 400, 'MALFORMED_BASIC_AUTH'],
      ['a Basic header without a colon', form({ grant_type: 'client_credentials' }), { ...formCt, authorization: `Basic ${Buffer.from(m.clientId + s).toString('base64')}` }, 400, 'MALFORMED_BASIC_AUTH'],
      ['a Basic header with a broken percent-escape', form({ grant_type: 'client_credentials' }), { ...formCt, authorization: `Basic ${Buffer.from(`${m.clientId}:${s}%z`).toString('base64')}` }, 400, 'MALFORMED_BASIC_AUTH'],
      ['an empty Basic header', form({ grant_type: 'client_credentials' }), { ...formCt, authorization: 'Basic' }, 400, 'MALFORMED_BASIC_AUTH'],
      ['a form body in another charset', form(ok), { 'content-type': `${FORM}; charset=iso-8859-1` }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['text/plain', form(ok), { 'content-type': 'text/plain' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['multipart/form-data', `--b\r\ncontent-disposition: form-data; name="client_secret"\r\n\r\n${s}\r\n--b--`, { 'content-type': 'multipart/form-data; boundary=b' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['application/xml', `<r>${s}</r>`, { 'content-type': 'application/xml' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['a body without a content type', Buffer.from(form(ok)), { 'content-length': String(form(ok).length) }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['JSON with a repeated field, as a form with one is (neither wins)', `{"grant_type":"client_credentials","client_id":"${m.clientId}","client_secret":"${s}","client_secret":{}}`, { 'content-type': 'application/json' }, 400, 'DUPLICATE_FIELD'],
    ];
    for (const [what, payload, headers, status, code, oauth = 'invalid_request'] of cases) {
      const res = await post(payload, headers);
      assert.deepEqual([res.status, res.body?.code, res.body?.error], [status, code, oauth], `${what}: ${res.raw.slice(0, 300)}`);
      assert.ok(errorCodes.includes(code as never), `${what}: the code is catalogued`);
      assert.ok(!res.raw.includes(s) && !res.raw.includes(auth.slice(6, 30)), `${what}: the secret is not echoed`);
    }
    assert.equal(await issuedTo(m.id), 0, 'nothing was issued');
    await assertIssued(await postForm(ok));
  });

  test('only the token endpoint takes form bodies and Basic: other routes still refuse them', async () => {
    const root = { authorization: `Bearer ${h.rootToken}` };
    const machine = await post(form({ name: 'form-made', kind: 'client_secret' }), { ...root, 'content-type': FORM }, undefined, '/v1/machines');
    assert.deepEqual([machine.status, machine.body.error.code, machine.body.error.message], [415, 'UNSUPPORTED_MEDIA_TYPE', 'send the body as application/json']);
    const login = await post(form({ tenant: 'default', username: 'ann', password: 'correct-horse-9' }), { 'content-type': FORM }, undefined, '/v1/auth/login');
    assert.deepEqual([login.status, login.body.error.code], [415, 'UNSUPPORTED_MEDIA_TYPE']);
    const m = await createMachine('basic-elsewhere');
    const list = await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: { authorization: basic(m.clientId, m.clientSecret) } });
    assert.deepEqual([list.statusCode, list.json().error.code], [401, 'UNAUTHENTICATED']);
    const listed = (await h.app.inject({ method: 'GET', url: '/v1/machines', headers: root })).json();
    assert.equal(listed.items.some((x: { name: string }) => x.name === 'form-made'), false);
  });

  test('form and Basic requests count towards the same rate limit as JSON ones', async () => {
    const m = await createMachine('hammered-by-form');
    const wrong = 'khcs_wrong';
    const ip = nextIp();
    for (let i = 0; i < 10; i++) {
      const res = i % 3 === 0
        ? await post(JSON.stringify({ grant_type: 'client_credentials', client_id: m.clientId, client_secret: wrong }), { 'content-type': 'application/json' }, ip)
        : i % 3 === 1
          ? await postForm({ grant_type: 'client_credentials', client_id: m.clientId, client_secret: wrong }, {}, ip)
          : await postForm({ grant_type: 'client_credentials' }, { authorization: basic(m.clientId, wrong) }, ip);
      assert.equal(res.status, 401);
    }
    const limited = await postForm({ grant_type: 'client_credentials' }, { authorization: basic(m.clientId, m.clientSecret) }, ip);
    assert.deepEqual([limited.status, limited.body.code], [429, 'RATE_LIMITED']);
    assert.ok(Number(limited.headers['retry-after']) >= 1);
    h.clock.advance(60_001);
    await assertIssued(await postForm({ grant_type: 'client_credentials' }, { authorization: basic(m.clientId, m.clientSecret) }, ip));
  });

  test('the OpenAPI document lists both body types and Basic client authentication for the token endpoint', async () => {
    const doc = (await h.app.inject({ method: 'GET', url: '/v1/openapi.json' })).json();
    const op = doc.paths['/v1/auth/token'].post;
    assert.deepEqual(Object.keys(op.requestBody.content).sort(), ['application/json', FORM]);
    assert.deepEqual(op.security, [{}, { clientBasic: [] }]);
    assert.deepEqual(doc.components.securitySchemes.clientBasic, { type: 'http', scheme: 'basic' });
  });

  test('no client secret or Basic header this suite sent appears in the server log or an audit event', async () => {
    assert.ok(sent.size > 5);
    const logged = h.logs.text();
    const events = JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute());
    for (const value of sent) {
      for (const shape of [value, encodeURIComponent(value), Buffer.from(value).toString('base64')]) {
        assert.equal(logged.includes(shape), false, 'not in the log');
        assert.equal(events.includes(shape), false, 'not in the audit trail');
      }
    }
  });
});
