import { test } from 'node:test';
import { connect } from 'node:net';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { serverOnFreshDatabase } from '../helpers/server-database.ts';
import { eachLimit } from '../helpers/each-limit.ts';
import { within } from '../helpers/deadline.ts';

const WRITERS = 8;
const STOP_AFTER_ACKS = 100;
const MAX_WRITES_PER_WRITER = 200;
/** Far below a service manager's stop timeout (systemd 90 s, Kubernetes 30 s), and below startServer's 10 s grace. */
const STOP_WITHIN_MS = 5_000;

describeEachDialect('graceful stop', (dialect) => {
  const { start } = serverOnFreshDatabase(dialect);

  test('SIGTERM during a burst of writes from keep-alive clients exits 0 promptly; every acknowledged write reads back and the audit chain verifies', async () => {
    const live = await start();
    for (const name of ['STOP_A', 'STOP_B']) assert.equal((await live.request('POST', '/v1/secrets', { body: { name, owner: 'ops' } })).status, 201);
    const acked: Array<{ name: string; version: number; value: string }> = [];
    const refused: string[] = [];
    let stopping: Promise<{ code: number | null; signal: NodeJS.Signals | null }> | null = null;
    let stoppedIn = 0;
    const writer = async (w: number) => {
      for (let i = 0; i < MAX_WRITES_PER_WRITER; i++) {
        const name = (w + i) % 2 ? 'STOP_A' : 'STOP_B';
        const value = `w${w}.${i}`;
        let res;
        try {
          res = await live.request('PUT', `/v1/secrets/${name}/values/development`, { body: { value } });
        } catch {
          if (stopping) return; // the listener is gone: the write was never read
          throw new Error('a connection failed before the stop');
        }
        if (res.status === 200) acked.push({ name, version: res.json.version, value });
        else if (stopping) refused.push(`${res.status} ${res.json?.error?.code}`);
        else assert.fail(`${res.status} ${res.text}`);
        if (acked.length === STOP_AFTER_ACKS && !stopping) {
          const t0 = Date.now();
          stopping = live.stop().then((exit) => ((stoppedIn = Date.now() - t0), exit));
        }
      }
    };
    await Promise.all(Array.from({ length: WRITERS }, (_, w) => writer(w)));
    assert.ok(stopping, 'the server was stopped during the burst');
    assert.deepEqual(await stopping, { code: 0, signal: null }, live.stderr());
    assert.ok(stoppedIn < STOP_WITHIN_MS, `stopped in ${stoppedIn} ms`);
    // A request the server took before the stop is answered as usual: the node seals only once HTTP is closed.
    assert.deepEqual(refused, []);

    const again = await start();
    const lost: string[] = [];
    await eachLimit(acked, 8, async (a) => {
      const res = await again.request('GET', `/v1/secrets/${a.name}/values/development?version=${a.version}`);
      if (res.status !== 200 || res.json.value !== a.value) lost.push(`${a.name} v${a.version}: ${res.status}`);
    });
    assert.deepEqual(lost, []);
    const verified = await again.request('GET', '/v1/audit/verify');
    assert.equal(verified.json?.ok, true, verified.text);
    // The stop sealed the node, and the trail says so: by the system, why, and on which signal.
    const seals = await again.request('GET', '/v1/audit/events?action=system.seal&allTenants=true');
    assert.deepEqual(seals.json?.items?.map((e: any) => [e.actor.type, e.actor.id, e.outcome, e.context.reason, e.context.signal]), [['system', 'keyhold', 'allowed', 'SHUTDOWN', 'SIGTERM']], seals.text);
    assert.deepEqual(await again.stop(), { code: 0, signal: null });
  });

  test('a client that never finishes its request holds SIGTERM no longer than KEYHOLD_SHUTDOWN_GRACE', async () => {
    const live = await start({ env: { KEYHOLD_SHUTDOWN_GRACE: '1s' } });
    const { hostname, port } = new URL(live.address);
    const socket = connect(Number(port), hostname);
    socket.on('error', () => {});
    const cut = new Promise((resolve) => socket.on('close', resolve));
    // Headers and part of a body, then nothing: the request stays in flight until the server's 30 s request timeout.
    socket.write(`PUT /v1/secrets/STOP_A/values/development HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${live.token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"value":`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    const t0 = Date.now();
    assert.deepEqual(await live.stop(), { code: 0, signal: null }, live.stderr());
    const stoppedIn = Date.now() - t0;
    assert.ok(stoppedIn < STOP_WITHIN_MS, `stopped in ${stoppedIn} ms`);
    await cut;
  });
  test('a second SIGINT or SIGTERM while the stop waits ends the process at once, and nothing acknowledged is lost', async () => {
    const live = await start({ env: { KEYHOLD_SHUTDOWN_GRACE: '1m' } });
    assert.equal((await live.request('POST', '/v1/secrets', { body: { name: 'STOP_C', owner: 'ops' } })).status, 201);
    const written = await live.request('PUT', '/v1/secrets/STOP_C/values/staging', { body: { value: 'before-the-stop' } });
    assert.equal(written.status, 200, written.text);
    const { hostname, port } = new URL(live.address);
    const socket = connect(Number(port), hostname);
    socket.on('error', () => {});
    // A request that never finishes keeps the stop waiting for the whole grace.
    socket.write(`PUT /v1/secrets/STOP_C/values/development HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${live.token}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"value":`);
    await new Promise((resolve) => setTimeout(resolve, 300));
    process.kill(live.pid, 'SIGTERM');
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    const t0 = Date.now();
    process.kill(live.pid, 'SIGINT');
    const exit = await within(live.exited, STOP_WITHIN_MS, 'still running');
    socket.destroy();
    assert.notEqual(exit, 'still running', 'the second signal did not end the process');
    assert.ok(Date.now() - t0 < STOP_WITHIN_MS);
    assert.deepEqual(exit, { code: 1, signal: null }, 'not 0: the stop did not finish');
    assert.match(live.stderr() + live.stdout(), /SIGINT during shutdown: exiting now/);

    const again = await start();
    const read = await again.request('GET', `/v1/secrets/STOP_C/values/staging?version=${written.json.version}`);
    assert.equal(read.json?.value, 'before-the-stop', read.text);
    assert.equal((await again.request('GET', '/v1/audit/verify')).json?.ok, true);
    assert.deepEqual(await again.stop(), { code: 0, signal: null });
  });
});
