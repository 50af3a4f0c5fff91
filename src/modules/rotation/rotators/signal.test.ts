import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { createHttpRotator } from './http/index.ts';
import { createPostgresRotator } from './postgres/index.ts';
import type { RotatorContext } from './types.ts';

/**
 * A loopback server that accepts connections and then stalls: `greet` answers each connection's first bytes (a
 * login, response headers) and nothing after. Sockets are destroyed when the test ends.
 */
async function stallingServer(t: TestContext, greet: (socket: Socket) => void = () => {}): Promise<number> {
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once('data', () => greet(socket));
    socket.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return (server.address() as AddressInfo).port;
}

function context(settings: Record<string, unknown>, signal: AbortSignal): RotatorContext {
  return {
    tenantId: 't', secretName: 'DB_PASSWORD', environment: 'staging', rotationId: 'r1', settings, currentState: {}, state: { id: 'cred-1' },
    current: 'old-password-0001', previous: null, resolve: async () => 'admin-password-0001', rehearsal: false, signal,
  };
}

/** Aborts after `ms` and answers how long `call` took to settle after that, and how it settled. */
async function settleAfterAbort(ms: number, call: (signal: AbortSignal) => Promise<unknown>): Promise<{ late: number; error: Error | null }> {
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error('deadline')), ms);
  const started = performance.now();
  let error: Error | null = null;
  await call(controller.signal).catch((err: Error) => void (error = err));
  return { late: performance.now() - started - ms, error };
}

/** What a PostgreSQL server sends for a login that needs no password: AuthenticationOk, then ReadyForQuery (idle). */
const LOGIN_OK = Buffer.from([0x52, 0, 0, 0, 8, 0, 0, 0, 0, 0x5a, 0, 0, 0, 5, 0x49]);

test('the postgres rotator gives up as soon as its signal aborts, on a server that accepts the connection and never answers', async (t) => {
  const port = await stallingServer(t);
  const pg = createPostgresRotator();
  // The rotator's own bounds are a minute: only the signal can end these calls quickly.
  const settings = { host: '127.0.0.1', port, database: 'app', adminUser: 'admin', role: 'app_user', timeoutMs: 60_000 };
  const applied = await settleAfterAbort(200, (signal) => pg.apply(context(settings, signal), 'new-password-0001'));
  assert.match(applied.error?.message ?? '', /cannot connect to PostgreSQL as the admin user/);
  assert.ok(applied.late < 2000, `apply settled ${Math.round(applied.late)} ms after the abort`);
  const tested = await settleAfterAbort(200, (signal) => pg.test(context(settings, signal), 'new-password-0001'));
  assert.equal(tested.error, null);
  assert.ok(tested.late < 2000, `test settled ${Math.round(tested.late)} ms after the abort`);
});

test('the postgres rotator gives up as soon as its signal aborts, on a server that lets it log in and never answers the statement', async (t) => {
  const port = await stallingServer(t, (socket) => socket.write(LOGIN_OK));
  const pg = createPostgresRotator();
  const settings = { host: '127.0.0.1', port, database: 'app', adminUser: 'admin', role: 'app_user', timeoutMs: 60_000 };
  const restored = await settleAfterAbort(200, (signal) => pg.restore(context(settings, signal), 'new-password-0001'));
  assert.ok(restored.error, 'the restore failed');
  assert.ok(restored.late < 2000, `restore settled ${Math.round(restored.late)} ms after the abort`);
});

test('the http rotator gives up as soon as its signal aborts, on a provider that sends headers and then stalls', async (t) => {
  const port = await stallingServer(t, (socket) => socket.write('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"id":'));
  const http = createHttpRotator();
  const settings = { url: `http://127.0.0.1:${port}/rotate`, timeoutMs: 120_000 };
  const issued = await settleAfterAbort(200, (signal) => http.generate(context(settings, signal)));
  assert.match(issued.error?.message ?? '', /rotation endpoint \/issue did not answer/);
  assert.ok(issued.late < 2000, `generate settled ${Math.round(issued.late)} ms after the abort`);
});
