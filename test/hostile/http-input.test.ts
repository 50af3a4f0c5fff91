import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { errorCodes } from '../../src/errors/index.ts';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createHarness, TEST_LIMITS, type Harness } from '../helpers/harness.ts';
import { UNSEAL_ATTEMPTS_PER_MINUTE } from '../../src/modules/system/routes.ts';

const CANARY = `canary-${randomBytes(8).toString('hex')}`;

describeEachDialect('HTTP: bad input is a clear 4xx with a stable code, never a 500, never a partial write', (dialect) => {
  let h: Harness;
  let auth: Record<string, string>;
  before(async () => {
    h = await createHarness(dialect);
    auth = { authorization: `Bearer ${h.rootToken}` };
    await h.app.inject({ method: 'POST', url: '/v1/secrets', headers: auth, payload: { name: 'API_KEY', owner: 'ops' } });
    await h.app.inject({ method: 'PUT', url: '/v1/secrets/API_KEY/values/production', headers: auth, payload: { value: 'good-value' } });
  });
  after(() => h.close());

  const countRows = async () => ({
    secrets: (await h.storage.db.selectFrom('secrets').select('id').execute()).length,
    versions: (await h.storage.db.selectFrom('secret_versions').select('id').execute()).length,
  });

  type Case = { name: string; method: 'POST' | 'PUT' | 'PATCH' | 'GET'; url: string; body?: string; contentType?: string; status: number; code: string; message?: RegExp };
  const json = (v: unknown) => JSON.stringify(v);
  const cases: Case[] = [
    { name: 'malformed JSON', method: 'PUT', url: '/v1/secrets/API_KEY/values/production', body: `{"value": "${CANARY}"`, status: 400, code: 'MALFORMED_JSON', message: /^the body is not valid JSON$/ },
    { name: 'empty JSON body', method: 'POST', url: '/v1/secrets', body: '', status: 400, code: 'MALFORMED_JSON' },
    { name: 'JSON that is not an object', method: 'POST', url: '/v1/secrets', body: '[1,2]', status: 400, code: 'VALIDATION_FAILED' },
    { name: 'an unknown field next to the value', method: 'PUT', url: '/v1/secrets/API_KEY/values/production', body: json({ value: CANARY, valu: 'x' }), status: 400, code: 'UNKNOWN_FIELD' },
    { name: 'an unknown field on create', method: 'POST', url: '/v1/secrets', body: json({ name: 'NEW_ONE', owner: 'x', admin: true }), status: 400, code: 'UNKNOWN_FIELD' },
    { name: 'a prototype-pollution key', method: 'POST', url: '/v1/secrets', body: '{"name":"PP","owner":"x","__proto__":{"admin":true}}', status: 400, code: 'MALFORMED_JSON', message: /names "__proto__"/ },
    { name: 'a constructor.prototype key', method: 'POST', url: '/v1/secrets', body: '{"name":"PP","owner":"x","tags":[{"constructor":{"prototype":{"admin":true}}}]}', status: 400, code: 'MALFORMED_JSON', message: /"constructor" holding "prototype"/ },
    { name: 'a number where a string belongs (no coercion)', method: 'PUT', url: '/v1/secrets/API_KEY/values/production', body: json({ value: 12345 }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'a missing owner', method: 'POST', url: '/v1/secrets', body: json({ name: 'NO_OWNER' }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'an unknown classification', method: 'POST', url: '/v1/secrets', body: json({ name: 'CLS', owner: 'x', classification: 'secret' }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'a negative CAS', method: 'PUT', url: '/v1/secrets/API_KEY/values/production', body: json({ value: 'v', cas: -1 }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'a fractional CAS', method: 'PUT', url: '/v1/secrets/API_KEY/values/production', body: json({ value: 'v', cas: 1.5 }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'a string CAS', method: 'PUT', url: '/v1/secrets/API_KEY/values/production', body: json({ value: 'v', cas: '1' }), status: 400, code: 'VALIDATION_FAILED' },
    { name: 'a value over the size limit', method: 'PUT', url: '/v1/secrets/API_KEY/values/production', body: json({ value: CANARY + 'x'.repeat(70_000) }), status: 413, code: 'VALUE_TOO_LARGE' },
    { name: 'a body over the body limit', method: 'PUT', url: '/v1/secrets/API_KEY/values/production', body: json({ value: CANARY + 'x'.repeat(600_000) }), status: 413, code: 'BODY_TOO_LARGE' },
    { name: 'a non-JSON content type', method: 'PUT', url: '/v1/secrets/API_KEY/values/production', body: `value=${CANARY}`, contentType: 'application/x-www-form-urlencoded', status: 415, code: 'UNSUPPORTED_MEDIA_TYPE' },
    { name: 'a name with a slash-like character', method: 'POST', url: '/v1/secrets', body: json({ name: 'a b', owner: 'x' }), status: 400, code: 'INVALID_NAME' },
    { name: 'a name that is too long', method: 'POST', url: '/v1/secrets', body: json({ name: 'N'.repeat(129), owner: 'x' }), status: 400, code: 'INVALID_NAME' },
    { name: 'a name starting with a digit', method: 'PUT', url: '/v1/secrets/9LIVES/values/production', body: json({ value: 'v' }), status: 400, code: 'INVALID_NAME' },
    { name: 'a bad environment name', method: 'PUT', url: '/v1/secrets/API_KEY/values/PRODUCTION!', body: json({ value: 'v' }), status: 400, code: 'INVALID_NAME' },
    { name: 'an unknown environment', method: 'PUT', url: '/v1/secrets/API_KEY/values/qa', body: json({ value: CANARY }), status: 404, code: 'ENVIRONMENT_NOT_FOUND' },
    { name: 'a value for a secret that does not exist', method: 'PUT', url: '/v1/secrets/NOPE/values/production', body: json({ value: CANARY }), status: 404, code: 'SECRET_NOT_FOUND' },
    { name: 'an unknown query parameter', method: 'GET', url: '/v1/secrets/API_KEY/values/production?versoin=1', status: 400, code: 'UNKNOWN_FIELD' },
    { name: 'a non-numeric version', method: 'GET', url: '/v1/secrets/API_KEY/values/production?version=abc', status: 400, code: 'VALIDATION_FAILED' },
    { name: 'an unknown label', method: 'GET', url: '/v1/secrets/API_KEY/values/production?label=latest', status: 400, code: 'VALIDATION_FAILED' },
    { name: 'an unknown route', method: 'GET', url: '/v1/secretz', status: 404, code: 'ROUTE_NOT_FOUND' },
    { name: 'an invalid expiry date', method: 'POST', url: '/v1/secrets', body: json({ name: 'EXP', owner: 'x', expiresAt: 'tomorrow' }), status: 400, code: 'VALIDATION_FAILED' },
  ];

  for (const c of cases) {
    test(`${c.name} → ${c.status} ${c.code}, nothing written, the value not echoed`, async () => {
      const before = await countRows();
      const res = await h.app.inject({
        method: c.method, url: c.url, headers: { ...auth, ...(c.body !== undefined ? { 'content-type': c.contentType ?? 'application/json' } : {}) },
        ...(c.body !== undefined ? { payload: c.body } : {}),
      });
      assert.equal(res.statusCode, c.status, res.body);
      const body = res.json() as { error: { code: string; message: string; requestId: string } };
      assert.equal(body.error.code, c.code);
      assert.ok(errorCodes.includes(body.error.code as never), 'the code is catalogued');
      assert.ok(body.error.requestId.length > 0 && body.error.message.length > 0);
      if (c.message) assert.match(body.error.message, c.message);
      assert.equal(res.body.includes(CANARY), false, 'the error body never echoes the value');
      assert.deepEqual(await countRows(), before);
    });
  }

  test('a value of exactly the size limit is written however its JSON escapes it (6 bytes a byte); one byte more is VALUE_TOO_LARGE, never BODY_TOO_LARGE, and writes nothing', async () => {
    const max = TEST_LIMITS.maxValueBytes;
    // Its own secret: the other tests here expect API_KEY to have no previous version.
    await h.app.inject({ method: 'POST', url: '/v1/secrets', headers: auth, payload: { name: 'MAX_SIZE_KEY', owner: 'ops' } });
    const put = (value: string) => h.app.inject({
      method: 'PUT', url: '/v1/secrets/MAX_SIZE_KEY/values/production', headers: { ...auth, 'content-type': 'application/json' },
      // Escaped as \u0001 by JSON.stringify: the largest a value's encoding can be; a maximal reason, all escaped too.
      payload: `{"value":${JSON.stringify(value)},"reason":"${'\\u0072'.repeat(500)}"}`,
    });
    const at = await put('\u0001'.repeat(max));
    assert.equal(at.statusCode, 200, at.body);
    const before = await countRows();
    const over = await put('\u0001'.repeat(max + 1));
    assert.equal(over.statusCode, 413, over.body);
    assert.equal((over.json() as { error: { code: string } }).error.code, 'VALUE_TOO_LARGE');
    assert.deepEqual(await countRows(), before);
    const read = await h.app.inject({ method: 'GET', url: '/v1/secrets/MAX_SIZE_KEY/values/production', headers: auth });
    const got = read.json() as { version: number; value: string };
    assert.deepEqual([got.version, Buffer.byteLength(got.value), got.value === '\u0001'.repeat(max)], [(at.json() as { version: number }).version, max, true]);
  });

  test('random junk bodies never produce a 500', async () => {
    const junk = ['null', 'true', '"str"', '{"value":{}}', '{"value":[]}', '{"value":null}', '{"name":null,"owner":null}', '{"a":'.repeat(50), '\u0000', '{"value":"\\ud800"}', '1e999'];
    for (const body of junk) {
      for (const url of ['/v1/secrets', '/v1/secrets/API_KEY/values/production', '/v1/secrets/API_KEY/values/production/rollback']) {
        const res = await h.app.inject({ method: url.endsWith('production') ? 'PUT' : 'POST', url, headers: { ...auth, 'content-type': 'application/json' }, payload: body });
        assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${url} ${JSON.stringify(body)} → ${res.statusCode} ${res.body}`);
      }
    }
    assert.equal((await h.app.inject({ method: 'GET', url: '/v1/secrets/API_KEY/values/production', headers: auth })).json().value, 'good-value');
  });

  test('a request with no body at all: fine where the body is optional, a 400 where it is required, and a JSON null is no body', async () => {
    await h.app.inject({ method: 'PUT', url: '/v1/secrets/API_KEY/values/production', headers: auth, payload: { value: 'second-value' } });
    const before = await countRows();
    const missing = await h.app.inject({ method: 'PUT', url: '/v1/secrets/API_KEY/values/production', headers: auth });
    assert.deepEqual([missing.statusCode, missing.json().error.code], [400, 'VALIDATION_FAILED'], 'a write needs its body');
    assert.deepEqual(await countRows(), before);
    // Rollback's body (a check-and-set) is optional: curl -X POST with nothing must work.
    const rollback = await h.app.inject({ method: 'POST', url: '/v1/secrets/API_KEY/values/production/rollback', headers: auth });
    assert.equal(rollback.statusCode, 200, rollback.body);
    const nullBody = await h.app.inject({ method: 'POST', url: '/v1/secrets/API_KEY/values/production/rollback', headers: { ...auth, 'content-type': 'application/json' }, payload: 'null' });
    assert.equal(nullBody.statusCode, 200, nullBody.body);
    const wrong = await h.app.inject({ method: 'POST', url: '/v1/secrets/API_KEY/values/production/rollback', headers: auth, payload: { cas: 'x' } });
    assert.deepEqual([wrong.statusCode, wrong.json().error.code], [400, 'VALIDATION_FAILED'], 'a body that is there is still checked');
  });

  test('numbers and booleans in a query string are taken only in their plain spelling', async () => {
    for (const query of ['after=1.5', 'after=0x10', 'after=', 'after=%207', 'after=1e3', 'after=01', 'limit=-0x1', 'allTenants=1', 'allTenants=yes']) {
      const res = await h.app.inject({ method: 'GET', url: `/v1/audit/tail?${query}`, headers: auth });
      assert.deepEqual([res.statusCode, res.json().error?.code], [400, 'VALIDATION_FAILED'], query);
    }
    for (const query of ['after=0', 'after=15', 'limit=5&allTenants=true', 'allTenants=false']) {
      const res = await h.app.inject({ method: 'GET', url: `/v1/audit/tail?${query}`, headers: auth });
      assert.equal(res.statusCode, 200, `${query}: ${res.body}`);
    }
    const versions = await h.app.inject({ method: 'GET', url: '/v1/secrets?includeDeleted=1', headers: auth });
    assert.equal(versions.statusCode, 400);
  });

  test('JSON nested deeper than 64 levels is a 400 wherever a body takes any JSON, not a stack overflow', async () => {
    const nest = (depth: number) => '{"a":'.repeat(depth) + '1' + '}'.repeat(depth);
    const tries = [
      { url: '/v1/access-policies/validate', body: `{"document":${nest(20_000)}}` },
      { url: '/v1/hooks/no-such-hook/no-token', body: '['.repeat(100_000) + ']'.repeat(100_000) },
      { url: '/v1/secrets/API_KEY/values/production/rollback', body: nest(65) },
    ];
    for (const t of tries) {
      const res = await h.app.inject({ method: 'POST', url: t.url, headers: { ...auth, 'content-type': 'application/json' }, payload: t.body });
      assert.deepEqual([res.statusCode, res.json().error.code], [400, 'VALIDATION_FAILED'], `${t.url}: ${res.body.slice(0, 200)}`);
      assert.match(res.json().error.message, /nest/);
    }
    // 64 levels are still JSON the schema judges (here: an access policy it finds malformed).
    const fine = await h.app.inject({ method: 'POST', url: '/v1/access-policies/validate', headers: auth, payload: { document: JSON.parse(nest(62)) } });
    assert.ok(fine.statusCode < 500 && !/nest/.test(fine.body), fine.body.slice(0, 200));
  });

  test('every answer, errors of every kind included, carries the security headers and is never cached', async () => {
    const answers = {
      'no such route': await h.app.inject({ method: 'GET', url: '/v1/hooks/some-hook/kh-webhook-token-canary' }),
      'malformed JSON': await h.app.inject({ method: 'POST', url: '/v1/secrets', headers: { ...auth, 'content-type': 'application/json' }, payload: '{' }),
      'no token': await h.app.inject({ method: 'GET', url: '/v1/secrets' }),
      'a body too large': await h.app.inject({ method: 'POST', url: '/v1/secrets', headers: { ...auth, 'content-type': 'application/json' }, payload: 'x'.repeat(600_000) }),
      'a success': await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: auth }),
    };
    for (const [what, res] of Object.entries(answers)) {
      assert.equal(res.headers['x-content-type-options'], 'nosniff', what);
      assert.equal(res.headers['content-security-policy'], "default-src 'none'; frame-ancestors 'none'", what);
      assert.equal(res.headers['referrer-policy'], 'no-referrer', what);
      assert.equal(res.headers['cache-control'], 'no-store', what);
    }
    assert.equal(answers['no such route'].json().error.code, 'ROUTE_NOT_FOUND');
    assert.equal(answers['no such route'].body.includes('kh-webhook-token-canary'), false, 'a path (a webhook token is one) is not echoed');
  });

  test('an endpoint that takes no body or query string refuses one rather than ignoring it', async () => {
    const kek = async () => (await h.services.keys.status(h.ctx)).currentVersion;
    const before = await kek();
    const refused = [
      { payload: '{"tenant":"acme"}', url: '/v1/keys/rotate', code: 'UNKNOWN_FIELD' },
      { payload: '[]', url: '/v1/keys/rotate', code: 'VALIDATION_FAILED' },
      { payload: undefined, url: '/v1/keys/rotate?tenant=acme', code: 'UNKNOWN_FIELD' },
    ];
    for (const r of refused) {
      const res = await h.app.inject({ method: 'POST', url: r.url, headers: { ...auth, ...(r.payload ? { 'content-type': 'application/json' } : {}) }, ...(r.payload ? { payload: r.payload } : {}) });
      assert.deepEqual([res.statusCode, res.json().error.code], [400, r.code], `${r.url} ${r.payload}: ${res.body}`);
    }
    assert.equal(await kek(), before, 'no key was rotated');
    for (const payload of [undefined, '{}', 'null']) {
      const res = await h.app.inject({ method: 'POST', url: '/v1/keys/rotate', headers: { ...auth, ...(payload ? { 'content-type': 'application/json' } : {}) }, ...(payload ? { payload } : {}) });
      assert.equal(res.statusCode, 200, `${payload}: ${res.body}`);
    }
    assert.equal((await h.app.inject({ method: 'GET', url: '/v1/secrets/API_KEY?zz=1', headers: auth })).json().error.code, 'UNKNOWN_FIELD');
  });

  test('a body in any content type but JSON is a 415, wherever it is sent', async () => {
    for (const url of ['/v1/secrets', '/v1/keys/rotate', '/v1/hooks/no-such-hook/no-token']) {
      const res = await h.app.inject({ method: 'POST', url, headers: { ...auth, 'content-type': 'text/plain' }, payload: '{"name":"PLAIN","owner":"x"}' });
      assert.deepEqual([res.statusCode, res.json().error.code], [415, 'UNSUPPORTED_MEDIA_TYPE'], `${url}: ${res.body}`);
    }
  });

  test('a lone surrogate in any string of a body is refused, not stored as U+FFFD', async () => {
    const before = await countRows();
    const tries = [
      { method: 'PATCH' as const, url: '/v1/secrets/API_KEY', body: '{"owner":"ops\\ud800"}' },
      { method: 'PUT' as const, url: '/v1/secrets/API_KEY/values/production', body: '{"value":"fine","reason":"\\udc00\\ud800"}' },
      { method: 'POST' as const, url: '/v1/secrets', body: '{"name":"SURROGATE","owner":"x","tags":["a\\ud83d"]}' },
    ];
    for (const t of tries) {
      const res = await h.app.inject({ method: t.method, url: t.url, headers: { ...auth, 'content-type': 'application/json' }, payload: t.body });
      assert.deepEqual([res.statusCode, res.json().error.code], [400, 'VALIDATION_FAILED'], `${t.url}: ${res.body}`);
      assert.match(res.json().error.message, /surrogate/);
    }
    assert.deepEqual(await countRows(), before);
    assert.equal((await h.app.inject({ method: 'GET', url: '/v1/secrets/API_KEY', headers: auth })).json().owner, 'ops');
    // A pair is a character like any other.
    const emoji = await h.app.inject({ method: 'PATCH', url: '/v1/secrets/API_KEY', headers: { ...auth, 'content-type': 'application/json' }, payload: '{"purpose":"keys \\ud83d\\udd11"}' });
    assert.equal(emoji.statusCode, 200, emoji.body);
  });

  test('invalid UTF-8 bytes in a body are refused, not silently replaced', async () => {
    const before = await countRows();
    const payload = Buffer.concat([Buffer.from('{"value":"ab'), Buffer.from([0xff, 0xc3]), Buffer.from('cd"}')]);
    const res = await h.app.inject({ method: 'PUT', url: '/v1/secrets/API_KEY/values/production', headers: { ...auth, 'content-type': 'application/json' }, payload });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().error.code, 'MALFORMED_JSON');
    assert.deepEqual(await countRows(), before);
  });

  test('unknown field names are echoed only when short and plain, so an error body never carries a value or 100 KB', async () => {
    const res = await h.app.inject({
      method: 'POST', url: '/v1/secrets', headers: { ...auth, 'content-type': 'application/json' },
      payload: JSON.stringify({ name: 'ECHO', owner: 'x', [CANARY + ' spaced']: 1, ['k'.repeat(100_000)]: 2, ok_name: 3 }),
    });
    assert.equal(res.statusCode, 400);
    assert.equal(res.json().error.code, 'UNKNOWN_FIELD');
    assert.match(res.json().error.message, /ok_name/);
    assert.equal(res.body.includes(CANARY), false);
    assert.ok(res.body.length < 1000, `error body is ${res.body.length} bytes`);
  });

  test('a field name in any validation message is echoed only when short and plain', async () => {
    const odd = `${CANARY} ${'k'.repeat(5_000)}`;
    const tries = [
      { url: '/v1/proxy/production/none', payload: { method: 'GET', path: '/', headers: { [odd]: 1 } } },
      { url: '/v1/secrets', payload: { name: 'ODD', owner: 'x', nested: { [odd]: 'a\u0000' } } },
      { url: '/v1/access-policies/validate', payload: { document: { [odd]: '\u0000' } } },
    ];
    for (const t of tries) {
      const res = await h.app.inject({ method: 'POST', url: t.url, headers: auth, payload: t.payload });
      assert.equal(res.statusCode, 400, res.body.slice(0, 200));
      assert.equal(res.body.includes(CANARY), false, `${t.url} echoed the field name`);
      assert.ok(res.body.length < 1000, `${t.url}: error body is ${res.body.length} bytes`);
    }
  });

  test('a path the router cannot decode, or with a parameter over 200 characters, is a catalogued 400 that does not echo it', async () => {
    for (const url of [`/v1/secrets/a%zz${CANARY}`, `/v1/hooks/x/%ff${CANARY}`, '/v1/secrets/%ED%A0%80', `/v1/secrets/${CANARY}${'p'.repeat(10_000)}`]) {
      const res = await h.app.inject({ method: 'GET', url, headers: auth });
      assert.deepEqual([res.statusCode, res.json().error?.code], [400, 'VALIDATION_FAILED'], `${url.slice(0, 60)}: ${res.body.slice(0, 200)}`);
      assert.equal(res.body.includes(CANARY), false, 'the path is not echoed');
      assert.equal(res.headers['cache-control'], 'no-store');
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
    }
  });

  test('no token, a junk token or a revoked token are all the same 401', async () => {
    const bodies = new Set<string>();
    const issued = await h.services.tokens.issue({ tenantId: null, kind: 'root', name: 'temp' });
    await h.services.tokens.revoke(issued.id, null);
    for (const headers of [{}, { authorization: 'Bearer kh_nope' }, { authorization: 'Basic abc' }, { authorization: `Bearer ${issued.token}` }]) {
      const res = await h.app.inject({ method: 'GET', url: '/v1/secrets', headers });
      assert.equal(res.statusCode, 401);
      const { code, message } = res.json().error;
      bodies.add(`${code}:${message}`);
    }
    assert.equal(bodies.size, 1);
  });

  test('the OpenAPI document is served and lists the secret endpoints', async () => {
    const res = await h.app.inject({ method: 'GET', url: '/v1/openapi.json' });
    assert.equal(res.statusCode, 200);
    const doc = res.json() as { openapi: string; paths: Record<string, unknown> };
    assert.equal(doc.openapi, '3.1.0');
    for (const path of ['/v1/secrets', '/v1/secrets/{name}/values/{env}', '/v1/sys/unseal', '/v1/keys/rewrap']) assert.ok(doc.paths[path], path);
  });

  test('a NUL character anywhere but a secret value is a 400 on every dialect (PostgreSQL cannot store it in text), before sign-in too', async () => {
    const nul = '\u0000';
    const tries: Array<{ name: string; method: 'GET' | 'POST' | 'PUT'; url: string; payload?: object; headers?: Record<string, string>; code: string }> = [
      { name: 'login username', method: 'POST', url: '/v1/auth/login', payload: { tenant: 'default', username: `alice${nul}`, password: 'x'.repeat(12) }, code: 'VALIDATION_FAILED' },
      { name: 'login tenant', method: 'POST', url: '/v1/auth/login', payload: { tenant: `default${nul}`, username: 'alice', password: 'x'.repeat(12) }, code: 'VALIDATION_FAILED' },
      { name: 'token client_id', method: 'POST', url: '/v1/auth/token', payload: { grant_type: 'client_credentials', client_id: `khc_${nul}`, client_secret: 'x' }, code: 'VALIDATION_FAILED' },
      { name: 'user id in the path', method: 'GET', url: '/v1/users/a%00b', headers: auth, code: 'VALIDATION_FAILED' },
      { name: 'machine id in the path', method: 'GET', url: '/v1/machines/a%00b', headers: auth, code: 'VALIDATION_FAILED' },
      { name: 'secret name in the path', method: 'GET', url: '/v1/secrets/A%00B/values/production', headers: auth, code: 'VALIDATION_FAILED' },
      { name: 'tenant header', method: 'GET', url: '/v1/secrets', headers: { ...auth, 'x-keyhold-tenant': `default${nul}` }, code: 'TENANT_NOT_FOUND' },
      { name: 'audit actor filter', method: 'GET', url: '/v1/audit/events?actor=%00', headers: auth, code: 'VALIDATION_FAILED' },
      { name: 'audit export filter', method: 'GET', url: '/v1/audit/export?secret=A%00B', headers: auth, code: 'VALIDATION_FAILED' },
      { name: 'audit usage secret', method: 'GET', url: '/v1/audit/usage?secret=A%00B', headers: auth, code: 'VALIDATION_FAILED' },
      { name: 'audit page past bigint', method: 'GET', url: '/v1/audit/events?after=100000000000000000000', headers: auth, code: 'VALIDATION_FAILED' },
      { name: 'secret owner in a body', method: 'POST', url: '/v1/secrets', payload: { name: 'NUL_OWNER', owner: `ops${nul}` }, headers: auth, code: 'VALIDATION_FAILED' },
    ];
    const before = await countRows();
    for (const t of tries) {
      const res = await h.app.inject({ method: t.method, url: t.url, ...(t.headers ? { headers: t.headers } : {}), ...(t.payload ? { payload: t.payload } : {}) });
      assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${t.name}: ${res.statusCode} ${res.body.slice(0, 200)}`);
      // The token endpoint answers in OAuth's shape (RFC 6749 §5.2), Keyhold's code beside it.
      const body = res.json();
      assert.equal(typeof body.error === 'string' ? body.code : body.error.code, t.code, t.name);
    }
    assert.deepEqual(await countRows(), before, 'nothing was written');
    // A secret value may hold any character: it is encrypted to bytes.
    const value = `bin${nul}ary`;
    assert.equal((await h.app.inject({ method: 'PUT', url: '/v1/secrets/API_KEY/values/staging', headers: auth, payload: { value } })).statusCode, 200);
    assert.equal((await h.app.inject({ method: 'GET', url: '/v1/secrets/API_KEY/values/staging', headers: auth })).json().value, value);
  });
});

describeEachDialect('HTTP: tenancy and the seal', (dialect) => {
  let h: Harness;
  let root: Record<string, string>;
  let acme: Record<string, string>;
  before(async () => {
    h = await createHarness(dialect);
    root = { authorization: `Bearer ${h.rootToken}` };
    const tenant = (await h.app.inject({ method: 'POST', url: '/v1/tenants', headers: root, payload: { name: 'acme' } })).json();
    const issued = await h.services.tokens.issue({ tenantId: tenant.id, kind: 'machine', principalId: 'acme-bot-id', name: 'acme-bot' });
    acme = { authorization: `Bearer ${issued.token}` };
    await h.app.inject({ method: 'POST', url: '/v1/secrets', headers: root, payload: { name: 'DEFAULT_ONLY', owner: 'ops' } });
    await h.app.inject({ method: 'PUT', url: '/v1/secrets/DEFAULT_ONLY/values/production', headers: root, payload: { value: 'default-value' } });
  });
  after(() => h.close());

  test("a tenant token reading another tenant's secret gets 404, not 403", async () => {
    const res = await h.app.inject({ method: 'GET', url: '/v1/secrets/DEFAULT_ONLY/values/production', headers: acme });
    assert.equal(res.statusCode, 404);
    assert.equal(res.json().error.code, 'SECRET_NOT_FOUND');
  });

  test('a tenant token naming another tenant in the header gets the same 404 as a tenant that does not exist', async () => {
    const other = await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: { ...acme, 'x-keyhold-tenant': 'default' } });
    const none = await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: { ...acme, 'x-keyhold-tenant': 'no-such-tenant' } });
    assert.equal(other.statusCode, 404);
    assert.equal(other.json().error.code, 'TENANT_NOT_FOUND');
    assert.equal(other.json().error.message, none.json().error.message);
  });

  test('a tenant token cannot create tenants or revoke tokens', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/v1/tenants', headers: acme, payload: { name: 'evil' } });
    assert.equal(res.statusCode, 403);
    assert.equal(res.json().error.code, 'FORBIDDEN');
    const revoke = await h.app.inject({ method: 'DELETE', url: `/v1/tokens/${h.rootToken}`, headers: acme });
    assert.equal(revoke.statusCode, 403);
  });

  test('a sealed server answers status but refuses every secret route with 503 SEALED', async () => {
    const sealed = await h.app.inject({ method: 'POST', url: '/v1/sys/seal', headers: root });
    assert.equal(sealed.json().sealed, true);
    for (const [method, url] of [['GET', '/v1/secrets'], ['GET', '/v1/secrets/DEFAULT_ONLY/values/production'], ['POST', '/v1/keys/rotate']] as const) {
      const res = await h.app.inject({ method, url, headers: root });
      assert.equal(res.statusCode, 503);
      assert.equal(res.json().error.code, 'SEALED');
    }
    assert.equal((await h.app.inject({ method: 'GET', url: '/v1/sys/status' })).json().sealed, true);
    for (const share of h.shares.slice(1)) await h.app.inject({ method: 'POST', url: '/v1/sys/unseal', payload: { share } });
    const res = await h.app.inject({ method: 'GET', url: '/v1/secrets/DEFAULT_ONLY/values/production', headers: root });
    assert.equal(res.json().value, 'default-value');
  });

  test('unseal submissions are bounded per address, so no one can grow the audit trail at will through them', async () => {
    const unseal = (remoteAddress: string) => h.app.inject({ method: 'POST', url: '/v1/sys/unseal', remoteAddress, payload: { share: h.shares[0]! } });
    const events = async () => (await h.storage.db.selectFrom('audit_events').select('seq').where('action', '=', 'system.unseal').execute()).length;
    const before = await events();
    for (let i = 0; i < UNSEAL_ATTEMPTS_PER_MINUTE; i++) assert.equal((await unseal('198.51.100.7')).statusCode, 200, `submission ${i}`);
    const refused = await unseal('198.51.100.7');
    assert.deepEqual([refused.statusCode, refused.json().error.code], [429, 'RATE_LIMITED']);
    assert.ok(Number(refused.headers['retry-after']) >= 1);
    assert.equal(await events(), before + UNSEAL_ATTEMPTS_PER_MINUTE, 'a refused submission is not recorded');
    assert.equal((await unseal('198.51.100.8')).statusCode, 200, 'another address is not affected');
    h.clock.advance(60_001);
    assert.equal((await unseal('198.51.100.7')).statusCode, 200, 'the window passes');
  });
});
