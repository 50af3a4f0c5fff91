import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createHarness, type Harness } from '../helpers/harness.ts';

const canary = (what: string) => `${what}-${randomBytes(8).toString('hex')}`;

/**
 * A JSON object naming a key twice is read differently by different parsers (JSON.parse keeps the
 * last, many proxies, WAFs and policy engines the first): a check in front of Keyhold could approve
 * one value while Keyhold stores the other. Every such body is refused before any handler runs.
 */
describeEachDialect('HTTP: a JSON body that names a key twice, at any depth, is refused with DUPLICATE_FIELD and writes nothing', (dialect) => {
  let h: Harness;
  let auth: Record<string, string>;
  const json = { 'content-type': 'application/json' };
  before(async () => {
    h = await createHarness(dialect);
    auth = { authorization: `Bearer ${h.rootToken}` };
    await h.services.secrets.create(h.ctx, { name: 'DUP_KEY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'DUP_KEY', 'production', { value: 'original-value' });
  });
  after(() => h.close());

  const history = async () => ({
    versions: await h.storage.db.selectFrom('secret_versions').selectAll().orderBy('id').execute(),
    secrets: await h.storage.db.selectFrom('secrets').selectAll().orderBy('id').execute(),
    rotations: await h.storage.db.selectFrom('rotations').selectAll().execute(),
  });

  const send = (method: 'POST' | 'PUT' | 'PATCH', url: string, payload: string) => h.app.inject({ method, url, headers: { ...auth, ...json }, payload });

  function assertRefused(res: { statusCode: number; body: string }, secrets: string[], what: string): void {
    assert.equal(res.statusCode, 400, `${what}: ${res.body.slice(0, 300)}`);
    assert.equal(JSON.parse(res.body).error.code, 'DUPLICATE_FIELD', what);
    for (const s of secrets) assert.equal(res.body.includes(s), false, `${what}: the answer echoes ${s}`);
  }

  test('a secret write with `value` twice writes no version, and the answer holds neither value', async () => {
    const first = canary('first');
    const second = canary('second');
    const before = await history();
    for (const body of [`{"value":"${first}","value":"${second}"}`, `{"value":"${first}","\\u0076alue":"${second}"}`, `{"value":"${first}","reason":"r","value":"${second}"}`]) {
      assertRefused(await send('PUT', '/v1/secrets/DUP_KEY/values/production', body), [first, second], body);
    }
    assert.deepEqual(await history(), before);
    assert.equal((await h.services.values.read(h.ctx, 'DUP_KEY', 'production')).value, 'original-value');
  });

  test('a manual rotation supplied `value` twice stays waiting, writes no version, and the answer holds neither value', async () => {
    await h.services.secrets.create(h.ctx, { name: 'DUP_MANUAL', owner: 'ops' });
    await h.services.values.write(h.ctx, 'DUP_MANUAL', 'production', { value: 'manual-original' });
    await h.services.rotation.service.setPolicy(h.ctx, 'DUP_MANUAL', 'production', { rotator: 'manual' });
    assert.equal((await h.services.rotation.service.rotate(h.ctx, 'DUP_MANUAL', 'production')).state, 'awaiting_value');
    const first = canary('first');
    const second = canary('second');
    const before = await history();
    assertRefused(await send('POST', '/v1/secrets/DUP_MANUAL/rotation/production/supply', `{"value":"${first}","value":"${second}"}`), [first, second], 'supply');
    assert.deepEqual(await history(), before);
    const [last] = await h.services.rotation.service.history(h.ctx, 'DUP_MANUAL', 'production');
    assert.equal(last!.state, 'awaiting_value');
    assert.equal((await h.services.values.read(h.ctx, 'DUP_MANUAL', 'production')).value, 'manual-original');
  });

  test('over a real socket too: the duplicated value is refused and nothing is written', async () => {
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    const { port } = h.app.server.address() as AddressInfo;
    const first = canary('first');
    const second = canary('second');
    const before = await history();
    const res = await fetch(`http://127.0.0.1:${port}/v1/secrets/DUP_KEY/values/production`, { method: 'PUT', headers: { ...auth, ...json }, body: `{"value":"${first}","value":"${second}"}` });
    assertRefused({ statusCode: res.status, body: await res.text() }, [first, second], 'loopback');
    assert.deepEqual(await history(), before);
  });

  test('duplicates are found wherever they are, after unescaping, and the message echoes no key that is not a plain name', async () => {
    // Shaped like a base64 credential: as for UNKNOWN_FIELD, a key is echoed only when it looks like a field name.
    const key = `${canary('key')}+/=`;
    const cases: Array<{ what: string; method: 'POST' | 'PUT' | 'PATCH'; url: string; body: string }> = [
      { what: 'a top-level key spelled with an escape', method: 'POST', url: '/v1/secrets', body: '{"name":"DUP_A","\\u006eame":"DUP_B","owner":"x"}' },
      { what: 'an escaped slash', method: 'POST', url: '/v1/secrets', body: '{"name":"DUP_A","owner":"x","tags":{"a/b":"1","a\\/b":"2"}}' },
      { what: 'a nested object', method: 'POST', url: '/v1/secrets', body: `{"name":"DUP_C","owner":"x","tags":{"${key}":"a","${key}":"b"}}` },
      { what: 'an object in an array', method: 'POST', url: '/v1/secrets/versions', body: '{"environment":"production","names":[{"a":1},{"b":1,"b":2}]}' },
      { what: 'a key as long as a value', method: 'POST', url: '/v1/secrets', body: `{"name":"DUP_D","owner":"x","${'k'.repeat(10_000)}${key}":1,"${'k'.repeat(10_000)}${key}":2}` },
      { what: 'a key with a space', method: 'PATCH', url: '/v1/secrets/DUP_KEY', body: `{"purpose":"p","tags":{"${key} x":1,"${key} x":2}}` },
      { what: 'strings full of braces, quotes and backslashes before the repeat', method: 'PATCH', url: '/v1/secrets/DUP_KEY', body: '{"purpose":"}{\\"purpose\\":\\\\","owner":"{[\\"]}","purpose":"x"}' },
      { what: 'deep inside an access policy document', method: 'POST', url: '/v1/access-policies/validate', body: `{"document":${'{"a":'.repeat(40)}{"b":1,"b":2}${'}'.repeat(40)}}` },
      { what: 'in a webhook input', method: 'POST', url: '/v1/hooks/no-such-hook/no-token', body: '{"x":[[{"y":{"z":1,"z":1}}]]}' },
    ];
    const before = await history();
    for (const c of cases) {
      const res = await send(c.method, c.url, c.body);
      assertRefused(res, [key, 'k'.repeat(100)], c.what);
      assert.ok(res.body.length < 1000, `${c.what}: the error body is ${res.body.length} bytes`);
    }
    assert.deepEqual(await history(), before);
  });

  test('a plainly named key repeated is named in the message, with where it is', async () => {
    const res = await send('POST', '/v1/secrets', '{"name":"DUP_E","owner":"x","tags":{"team":"a","team":"b"}}');
    assertRefused(res, [], 'plain');
    assert.match(JSON.parse(res.body).error.message, /team/);
    assert.match(JSON.parse(res.body).error.message, /body\.tags/);
  });

  test('the same key in sibling objects, in an array of objects, at different depths or inside strings is fine', async () => {
    const write = await send('PUT', '/v1/secrets/DUP_KEY/values/production', '{"value":"{\\"value\\":1,\\"value\\":2}","reason":"value"}');
    assert.equal(write.statusCode, 200, write.body);
    assert.equal((await h.services.values.read(h.ctx, 'DUP_KEY', 'production')).value, '{"value":1,"value":2}');
    const document = '{"a":{"b":1},"c":{"b":1,"a":{"b":2}},"d":[{"b":1},{"b":2,"a":[{"b":3}]}],"e":"\\"b\\":\\\\","b":{}}';
    const siblings = await send('POST', '/v1/access-policies/validate', `{"document":${document}}`);
    assert.ok(siblings.statusCode < 500, siblings.body);
    assert.notEqual(JSON.parse(siblings.body).error?.code, 'DUPLICATE_FIELD', siblings.body);
  });

  test('very deep nesting and a large body with many keys stay a 4xx answered promptly, never a 500', async () => {
    const tries = [
      '['.repeat(300_000) + ']'.repeat(300_000),
      '{"a":'.repeat(60_000) + '1' + '}'.repeat(60_000),
      `{"document":${'{"a":'.repeat(60_000)}{"b":1,"b":2}${'}'.repeat(60_000)}}`,
      `{"document":{${Array.from({ length: 30_000 }, (_, i) => `"k${i}":${i}`).join(',')},"k0":1}}`,
    ];
    for (const body of tries) {
      const started = performance.now();
      const res = await send('POST', '/v1/access-policies/validate', body);
      assert.ok(res.statusCode >= 400 && res.statusCode < 500, `${body.slice(0, 40)}: ${res.statusCode} ${res.body.slice(0, 200)}`);
      assert.ok(performance.now() - started < 5_000, `${body.slice(0, 40)} took ${performance.now() - started} ms`);
    }
    const many = await send('POST', '/v1/access-policies/validate', `{"document":{${Array.from({ length: 30_000 }, (_, i) => `"k${i}":${i}`).join(',')},"k0":1}}`);
    assert.equal(JSON.parse(many.body).error.code, 'DUPLICATE_FIELD');
  });
});
