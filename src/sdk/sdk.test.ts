import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describeEachDialect } from '../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../test/helpers/harness.ts';
import { createManualClock } from '../platform/clock.ts';
import { createKeyhold, isKeyholdError, KeyholdError, type KeyholdOptions } from './index.ts';

const SDK_ENTRY = fileURLToPath(new URL('./index.ts', import.meta.url));

/** Asserts a typed SDK error with this code whose message does not contain any of `secrets`. */
async function rejectsWith(p: Promise<unknown>, code: string, secrets: string[] = []): Promise<KeyholdError> {
  let caught: unknown;
  await assert.rejects(p, (err) => {
    caught = err;
    return true;
  });
  assert.ok(isKeyholdError(caught), `expected a KeyholdError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  for (const s of secrets) assert.ok(!caught.message.includes(s) && !String(caught.stack).includes(s), 'the error must not carry a value');
  return caught;
}

test('an address in plain http is refused unless it is loopback, and one carrying credentials without echoing them', () => {
  const refused = (addr: string, message: RegExp) => assert.throws(() => createKeyhold({ addr, token: 'kh_sdk-token', environment: 'production', env: {} }),
    (err: KeyholdError) => err.code === 'NOT_CONFIGURED' && message.test(err.message) && !err.message.includes('hunter2-pw') && !err.message.includes('kh_sdk-token'), addr);
  refused('http://keyhold.example.com:8200', /plain http only to loopback/);
  refused('http://10.0.0.5', /plain http only to loopback/);
  refused('http://127.evil.example', /plain http only to loopback/);
  refused('https://ops:hunter2-pw@keyhold.example.com', /user name or password/);
  refused('https://keyhold.example.com/path', /no path/);
  refused('keyhold.example.com', /http\(s\)/);
  for (const addr of ['http://127.0.0.1:8200', 'http://127.9.9.9:1/', 'http://localhost:8200', 'http://[::1]:8200', 'https://keyhold.example.com', 'https://10.0.0.5:8200/']) {
    assert.doesNotThrow(() => createKeyhold({ addr, token: 'kh_sdk-token', environment: 'production', env: {} }).close(), addr);
  }
});

test('refreshMs and timeoutMs beyond what a timer holds are refused, not turned into 1 ms by Node', () => {
  for (const opt of ['refreshMs', 'timeoutMs'] as const) {
    assert.throws(() => createKeyhold({ addr: 'http://127.0.0.1:1', token: 'kh_x', env: {}, [opt]: 2 ** 31 }),
      (err: KeyholdError) => err.code === 'NOT_CONFIGURED' && err.message.includes(opt), opt);
    assert.doesNotThrow(() => createKeyhold({ addr: 'http://127.0.0.1:1', token: 'kh_x', env: {}, [opt]: 2 ** 31 - 1 }).close(), opt);
  }
});

test('a token or tenant that cannot go in a header is refused without echoing it (a token read from a file ends in a newline)', async () => {
  const bad = (opts: KeyholdOptions, what: string) => assert.throws(() => createKeyhold({ addr: 'http://127.0.0.1:1', environment: 'production', env: {}, ...opts }),
    (err: KeyholdError) => err.code === 'NOT_CONFIGURED' && err.message.includes(what) && !err.message.includes('kh_file-token') && !err.message.includes('acme'), JSON.stringify(opts));
  bad({ token: 'kh_file-token\n' }, 'token');
  bad({ token: 'kh_file-token\u0100' }, 'token');
  bad({ token: 'kh_file token' }, 'token');
  bad({ token: 'kh_file-token', tenant: 'acme\r\nx-evil: 1' }, 'tenant');
  bad({ token: 'kh_file-token', tenant: 'acme\u0100' }, 'tenant');
  // Whatever fetch itself throws before connecting (here: a header it will not send), its message is not echoed.
  const throwing: typeof fetch = () => Promise.reject(new TypeError('Headers.append: "Bearer kh_file-token" is an invalid header value.'));
  await rejectsWith(createKeyhold({ addr: 'http://127.0.0.1:1', token: 'kh_file-token', environment: 'production', env: {}, fetch: throwing }).get('A'),
    'UNREACHABLE', ['kh_file-token']);
});

describeEachDialect('keyhold/sdk against a real server on loopback', (dialect) => {
  let h: Harness;
  let addr: string;
  let machineId: string;
  let token: string;
  const clients: Array<{ close(): void }> = [];

  /** Every request the SDK made, as "METHOD path". */
  function recorder() {
    const calls: string[] = [];
    const f: typeof fetch = (input, init) => {
      calls.push(`${init?.method ?? 'GET'} ${new URL(String(input)).pathname}`);
      return fetch(input, init);
    };
    return { calls, fetch: f };
  }

  function client(opts: KeyholdOptions = {}) {
    const c = createKeyhold({ addr, token, environment: 'production', env: {}, ...opts });
    clients.push(c);
    return c;
  }

  async function issueToken(principalId = machineId) {
    return (await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId, name: 'sdk-test', ttlMs: 3_600_000 }));
  }

  before(async () => {
    h = await createHarness(dialect);
    addr = await h.app.listen({ port: 0, host: '127.0.0.1' });
    for (const name of ['SDK_API_KEY', 'SDK_ROTATED', 'SDK_SCOPED', 'SDK_CONCURRENT', 'SDK_GONE', 'SDK_PROD_ONLY']) {
      await h.services.secrets.create(h.ctx, { name, owner: 'ops' });
    }
    await h.services.values.write(h.ctx, 'SDK_API_KEY', 'production', { value: 'sdk-api-key-production' });
    await h.services.values.write(h.ctx, 'SDK_ROTATED', 'production', { value: 'sdk-rotated-one' });
    await h.services.values.write(h.ctx, 'SDK_SCOPED', 'production', { value: 'sdk-scoped-production' });
    await h.services.values.write(h.ctx, 'SDK_SCOPED', 'staging', { value: 'sdk-scoped-staging' });
    await h.services.values.write(h.ctx, 'SDK_CONCURRENT', 'production', { value: 'sdk-concurrent-value' });
    await h.services.values.write(h.ctx, 'SDK_GONE', 'production', { value: 'sdk-gone-value' });
    await h.services.values.write(h.ctx, 'SDK_PROD_ONLY', 'production', { value: 'sdk-prod-only-value' });
    const machine = await h.services.machines.create(h.ctx, { name: 'sdk-runner', kind: 'client_secret' });
    machineId = machine.id;
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machineId, role: 'builder', environments: ['production', 'staging'] });
    token = (await issueToken()).token;
  });
  after(async () => {
    for (const c of clients) c.close();
    await h.close();
  });

  test('a machine token reads a value, and the read is a use event', async () => {
    assert.equal(await client().get('SDK_API_KEY'), 'sdk-api-key-production');
    const events = await h.storage.db.selectFrom('audit_events').select(['action', 'actor_id', 'context'])
      .where('resource_name', '=', 'SDK_API_KEY').where('action', '=', 'secret.use').execute();
    assert.equal(events.length, 1);
    assert.equal(events[0]!.actor_id, machineId);
    assert.match(JSON.parse(events[0]!.context).userAgent, /^keyhold-sdk\//);
  });

  test('a warm get is answered from memory; after refreshMs one version check confirms it', async () => {
    const clock = createManualClock(1_000_000);
    const rec = recorder();
    const c = client({ clock, fetch: rec.fetch, refreshMs: 5_000 });
    await c.get('SDK_API_KEY');
    for (let i = 0; i < 50; i++) assert.equal(await c.get('SDK_API_KEY'), 'sdk-api-key-production');
    assert.deepEqual(rec.calls, ['GET /v1/secrets/SDK_API_KEY/values/production']);
    clock.advance(5_000);
    assert.equal(await c.get('SDK_API_KEY'), 'sdk-api-key-production');
    assert.deepEqual(rec.calls.slice(1), ['POST /v1/secrets/versions'], 'unchanged: confirmed, not fetched again');
  });

  test('a rotation is seen by the first get after refreshMs, and only the moved name is fetched again', async () => {
    const clock = createManualClock(2_000_000);
    const rec = recorder();
    const c = client({ clock, fetch: rec.fetch, refreshMs: 5_000 });
    assert.equal(await c.get('SDK_ROTATED'), 'sdk-rotated-one');
    await c.get('SDK_API_KEY');
    await h.services.values.write(h.ctx, 'SDK_ROTATED', 'production', { value: 'sdk-rotated-two' });
    clock.advance(4_999);
    assert.equal(await c.get('SDK_ROTATED'), 'sdk-rotated-one', 'within refreshMs the cached value is served');
    clock.advance(1);
    assert.equal(await c.get('SDK_ROTATED'), 'sdk-rotated-two');
    assert.equal(await c.get('SDK_API_KEY'), 'sdk-api-key-production');
    assert.deepEqual(rec.calls.slice(2), ['POST /v1/secrets/versions', 'GET /v1/secrets/SDK_ROTATED/values/production'],
      'one check covered both names; the unchanged one was not fetched');
  });

  test('the background refresh picks up a rotation with no get waiting (real timers, short refreshMs)', async () => {
    const rec = recorder();
    const c = client({ fetch: rec.fetch, refreshMs: 50 });
    await h.services.values.write(h.ctx, 'SDK_ROTATED', 'production', { value: 'sdk-rotated-three' });
    assert.equal(await c.get('SDK_ROTATED'), 'sdk-rotated-three');
    await h.services.values.write(h.ctx, 'SDK_ROTATED', 'production', { value: 'sdk-rotated-four' });
    const deadline = Date.now() + 10_000; // only a bound on a loaded machine: the timer fires every 50 ms
    while (!rec.calls.includes('GET /v1/secrets/SDK_ROTATED/values/production', 1) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    assert.ok(rec.calls.filter((x) => x.startsWith('GET')).length >= 2, `the timer refetched the moved value: ${rec.calls.join(', ')}`);
    const before = rec.calls.length;
    assert.equal(await c.get('SDK_ROTATED'), 'sdk-rotated-four');
    assert.ok(rec.calls.length <= before + 1);
  });

  test('concurrent gets of the same name share one request', async () => {
    const rec = recorder();
    const c = client({ fetch: rec.fetch });
    const values = await Promise.all(Array.from({ length: 20 }, () => c.get('SDK_CONCURRENT')));
    assert.ok(values.every((v) => v === 'sdk-concurrent-value'));
    assert.deepEqual(rec.calls, ['GET /v1/secrets/SDK_CONCURRENT/values/production']);
  });

  test('the cache is per environment: staging never answers a production get', async () => {
    const c = client({ environment: 'staging' });
    assert.equal(await c.get('SDK_SCOPED'), 'sdk-scoped-staging');
    assert.equal(await c.get('SDK_SCOPED', { environment: 'production' }), 'sdk-scoped-production');
    assert.equal(await c.get('SDK_SCOPED'), 'sdk-scoped-staging');
    await rejectsWith(c.get('SDK_PROD_ONLY'), 'VALUE_NOT_SET');
    await rejectsWith(c.get('SDK_SCOPED', { environment: 'development' }), 'FORBIDDEN', ['sdk-scoped-production', 'sdk-scoped-staging']);
  });

  test('a revoked token gets UNAUTHENTICATED, on a cold get and on the next check of a cached value', async () => {
    const clock = createManualClock(3_000_000);
    const issued = await issueToken();
    const c = client({ token: issued.token, clock });
    assert.equal(await c.get('SDK_API_KEY'), 'sdk-api-key-production');
    await h.services.tokens.revoke(issued.id, h.ctx.tenantId);
    assert.equal(await c.get('SDK_API_KEY'), 'sdk-api-key-production', 'within refreshMs nothing is asked');
    clock.advance(5_000);
    const err = await rejectsWith(c.get('SDK_API_KEY'), 'UNAUTHENTICATED', ['sdk-api-key-production', issued.token]);
    assert.equal(err.status, 401);
    assert.ok(err.requestId);
    await rejectsWith(c.get('SDK_API_KEY'), 'UNAUTHENTICATED', ['sdk-api-key-production']);
    await rejectsWith(client({ token: issued.token }).get('SDK_SCOPED'), 'UNAUTHENTICATED');
  });

  test('a secret deleted after it was cached stops being served after refreshMs', async () => {
    const clock = createManualClock(4_000_000);
    const c = client({ clock });
    assert.equal(await c.get('SDK_GONE'), 'sdk-gone-value');
    await h.services.secrets.remove(h.ctx, 'SDK_GONE');
    clock.advance(5_000);
    await rejectsWith(c.get('SDK_GONE'), 'SECRET_NOT_FOUND', ['sdk-gone-value']);
  });

  test('errors are typed: bad names and settings locally, an unreachable server, a closed client', async () => {
    await rejectsWith(client().get('../sys/seal'), 'INVALID_NAME');
    await rejectsWith(client().get('OK', { environment: 'Prod/../x' }), 'INVALID_NAME');
    await rejectsWith(client({ environment: undefined }).get('SDK_API_KEY'), 'NOT_CONFIGURED');
    assert.throws(() => createKeyhold({ env: {} }), (err: KeyholdError) => err.code === 'NOT_CONFIGURED' && /KEYHOLD_ADDR/.test(err.message));
    assert.throws(() => createKeyhold({ env: { KEYHOLD_ADDR: addr } }), (err: KeyholdError) => err.code === 'NOT_CONFIGURED' && /KEYHOLD_TOKEN/.test(err.message));
    assert.throws(() => createKeyhold({ addr, token, refreshMs: 0, env: {} }), (err: KeyholdError) => err.code === 'NOT_CONFIGURED');
    const err = await rejectsWith(client({ addr: 'http://127.0.0.1:1' }).get('SDK_API_KEY'), 'UNREACHABLE', [token]);
    assert.equal(err.status, null);
    const c = client();
    await c.get('SDK_API_KEY');
    c.close();
    await rejectsWith(c.get('SDK_API_KEY'), 'CLOSED');
  });

  test('settings come from KEYHOLD_* variables, and the refresh timer never keeps a process alive', async () => {
    const script = `
      import { secrets, createKeyhold } from ${JSON.stringify(SDK_ENTRY)};
      const value = await secrets.get('SDK_API_KEY');
      await createKeyhold({ refreshMs: 60000 }).get('SDK_SCOPED', { environment: 'staging' });
      process.stdout.write(value === 'sdk-api-key-production' ? 'ok' : 'wrong');
    `;
    const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', '--input-type=module', '-e', script], {
      env: { KEYHOLD_ADDR: addr, KEYHOLD_TOKEN: token, KEYHOLD_ENVIRONMENT: 'production', KEYHOLD_TENANT: 'default' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 20_000);
    const [code, signal] = await new Promise<[number | null, string | null]>((resolve) => child.once('exit', (c, s) => resolve([c, s])));
    clearTimeout(killer);
    assert.equal(signal, null, 'the process exited by itself, no timer held it open');
    assert.equal(code, 0, err);
    assert.equal(out, 'ok');
  });
});
