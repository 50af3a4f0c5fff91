import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.ts';
import { startServer, type ServerProcess } from '../helpers/server-process.ts';
import { startRotationSource, type RotationSource } from '../fixtures/rotation-source.ts';

const ENV = 'production';
// Short leases so a restarted server takes over the dead one's rotation within a couple of seconds.
const FAST = { KEYHOLD_ROTATION_LEASE: '2s', KEYHOLD_ROTATION_TICK: '300ms' };
const TERMINAL = ['succeeded', 'rolled_back', 'abandoned'];

interface Labels { currentVersion: number | null; pendingVersion: number | null; previousVersion: number | null }

describeEachDialect('rotation survives kill -9 at every step', (dialect) => {
  let database: TestDatabase;
  let source: RotationSource;
  const servers: ServerProcess[] = [];
  const start = async () => {
    const s = await startServer({ dataDir: database.dataDir, databaseUrl: database.url, logLevel: 'warn', env: FAST });
    servers.push(s);
    return s;
  };
  before(async () => {
    database = await createTestDatabase(dialect);
    source = await startRotationSource();
  });
  after(async () => {
    for (const s of servers) await s.kill('SIGKILL');
    await source.close();
    await database.cleanup();
  });

  const labels = async (s: ServerProcess, name: string): Promise<Labels> => {
    const res = await s.request('GET', `/v1/secrets/${name}`);
    assert.equal(res.status, 200, res.text);
    return (res.json.environments as Array<Labels & { environment: string }>).find((e) => e.environment === ENV)!;
  };
  const value = async (s: ServerProcess, name: string) => (await s.request('GET', `/v1/secrets/${name}/values/${ENV}`)).json.value as string;
  async function settle(s: ServerProcess, name: string) {
    for (let i = 0; i < 200; i++) {
      const res = await s.request('GET', `/v1/secrets/${name}/rotation/${ENV}/history`);
      const last = res.json.items[0];
      if (last && TERMINAL.includes(last.state)) return last;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error('the interrupted rotation was never recovered');
  }

  // Where the server dies: the external source is blocked in the call each step makes.
  const CASES = [
    { step: 'generate', path: '/issue', expect: 'abandoned' },
    { step: 'apply', path: '/activate', expect: 'rolled_back' },
    { step: 'test', path: '/test', expect: 'rolled_back' },
    { step: 'finalize', path: '/revoke', expect: 'succeeded' },
  ] as const;

  let server: ServerProcess;
  test('setup: a secret rotated by an external HTTP source', async () => {
    server = await start();
    for (const c of CASES) {
      const name = `CRASH_${c.step.toUpperCase()}`;
      assert.equal((await server.request('POST', '/v1/secrets', { body: { name, owner: 'ops' } })).status, 201);
      assert.equal((await server.request('PUT', `/v1/secrets/${name}/values/${ENV}`, { body: { value: `hand-written-${name}` } })).status, 200);
      const p = await server.request('PUT', `/v1/secrets/${name}/rotation/${ENV}`, { body: { rotator: 'http', settings: { url: source.url } } });
      assert.equal(p.status, 200, p.text);
      // One clean rotation first, so the current value is a credential the source issued (finalize revokes it).
      const r = await server.request('POST', `/v1/secrets/${name}/rotation/${ENV}/rotate`, { body: {} });
      assert.equal(r.json.state, 'succeeded', r.text);
    }
  });

  for (const c of CASES) {
    test(`killed during ${c.step}: after restart the rotation ends ${c.expect}, with exactly one current version`, async () => {
      const name = `CRASH_${c.step.toUpperCase()}`;
      const before = await labels(server, name);
      const oldValue = await value(server, name);
      const known = new Set(source.credentials.keys());
      source.block(c.path);
      const inflight = server.request('POST', `/v1/secrets/${name}/rotation/${ENV}/rotate`, { body: {} }).catch(() => null);
      await source.reached();
      assert.deepEqual(await server.kill('SIGKILL'), { code: null, signal: 'SIGKILL' });
      await inflight;
      source.release();

      server = await start();
      const last = await settle(server, name);
      assert.equal(last.state, c.expect, JSON.stringify(last));
      const after = await labels(server, name);
      assert.equal(after.pendingVersion, null, 'no pending version is left behind');
      assert.notEqual(after.currentVersion, null, 'there is always a current version');
      const now = await value(server, name);
      if (c.expect === 'succeeded') {
        assert.notEqual(now, oldValue);
        assert.equal(after.previousVersion, before.currentVersion);
        assert.equal(source.byValue(oldValue)?.revoked, true, 'finalize resumed and revoked the old credential');
        assert.equal(source.byValue(now)?.revoked, false);
      } else {
        assert.equal(now, oldValue, 'the value in use did not change');
        assert.equal(after.currentVersion, before.currentVersion);
        assert.equal(source.byValue(oldValue)?.revoked, false, 'the credential in use still works at the source');
        if (c.expect === 'rolled_back') {
          const issued = [...source.credentials.values()].filter((x) => !known.has(x.id));
          assert.equal(issued.length, 1);
          assert.equal(issued[0]!.revoked, true, 'the credential issued for the failed rotation was revoked (source restored)');
        }
      }
      const again = await server.request('POST', `/v1/secrets/${name}/rotation/${ENV}/rotate`, { body: {} });
      assert.equal(again.json.state, 'succeeded', `the next rotation runs normally: ${again.text}`);
    });
  }

  test('two server processes triggering the same rotation at once: exactly one runs it', async () => {
    const second = await start();
    const name = 'CRASH_APPLY';
    const versionsBefore = (await labels(server, name)).currentVersion!;
    source.block('/activate');
    const calls = source.calls.length;
    const a = server.request('POST', `/v1/secrets/${name}/rotation/${ENV}/rotate`, { body: {} });
    const b = second.request('POST', `/v1/secrets/${name}/rotation/${ENV}/rotate`, { body: {} });
    await source.reached();
    // Give the loser time to answer while the winner is held at the source.
    const loser = await Promise.race([a, b]);
    assert.equal(loser.status, 409, loser.text);
    assert.equal(loser.json.error.code, 'ROTATION_IN_PROGRESS');
    source.release();
    const results = await Promise.all([a, b]);
    assert.deepEqual(results.map((r) => r.status).sort(), [200, 409]);
    assert.equal(source.calls.slice(calls).filter((p) => p === '/issue').length, 1, 'the source was asked for one credential');
    assert.equal((await labels(server, name)).currentVersion, versionsBefore + 1, 'one new version');
    await second.stop();
  });
});
