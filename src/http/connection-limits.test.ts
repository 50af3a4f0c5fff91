import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { errorCodes } from '../errors/index.ts';
import { createHarness, type Harness } from '../../test/helpers/harness.ts';

/** Writes `text` on a fresh connection and reads until the server closes it (or `idleMs` pass). */
function raw(port: number, text: string, opts: { keepOpenMs?: number } = {}): Promise<{ answer: string; closedAfterMs: number }> {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    socket.on('data', (c) => chunks.push(c));
    socket.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' ? undefined : reject(err)));
    socket.on('close', () => resolve({ answer: Buffer.concat(chunks).toString('utf8'), closedAfterMs: Date.now() - started }));
    socket.write(text);
    if (opts.keepOpenMs === undefined) return;
    setTimeout(() => socket.destroy(), opts.keepOpenMs).unref();
  });
}

function parse(answer: string): { status: number; headers: string; body: { error?: { code?: string } } } {
  const [head = '', body = ''] = answer.split('\r\n\r\n');
  return { status: Number(head.split(' ')[1]), headers: head.toLowerCase(), body: JSON.parse(body) };
}

/** What a client that breaks HTTP itself gets: the catalogued body too, and a connection that does not hang forever. */
describe('HTTP connections: broken requests get catalogued answers, slow ones are cut off', () => {
  let h: Harness;
  let port: number;
  before(async () => {
    h = await createHarness('sqlite');
    await h.app.listen({ host: '127.0.0.1', port: 0 });
    port = (h.app.server.address() as AddressInfo).port;
  });
  after(() => h.close());

  test('headers over 16 KB are a 431 HEADERS_TOO_LARGE with the error body', async () => {
    const { answer } = await raw(port, `GET /v1/sys/status HTTP/1.1\r\nHost: x\r\nX-Big: ${'b'.repeat(20_000)}\r\n\r\n`);
    const res = parse(answer);
    assert.deepEqual([res.status, res.body.error?.code], [431, 'HEADERS_TOO_LARGE'], answer.slice(0, 300));
    assert.match(res.headers, /x-content-type-options: nosniff/);
  });

  test('a request that is not HTTP is a 400 MALFORMED_REQUEST with the error body', async () => {
    for (const junk of ['GARBAGE\r\n\r\n', 'GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n', 'GET /\u0000 HTTP/1.1\r\n\r\n']) {
      const res = parse((await raw(port, junk)).answer);
      assert.deepEqual([res.status, res.body.error?.code], [400, 'MALFORMED_REQUEST'], JSON.stringify(junk));
      assert.ok(errorCodes.includes('MALFORMED_REQUEST'));
    }
  });

  test('the server bounds how long a request may take to arrive, headers and body', () => {
    const server = h.app.server;
    assert.ok(server.headersTimeout > 0 && server.headersTimeout <= 10_000, `headersTimeout ${server.headersTimeout}`);
    assert.ok(server.requestTimeout > 0 && server.requestTimeout <= 30_000, `requestTimeout ${server.requestTimeout}`);
    assert.ok(server.requestTimeout >= server.headersTimeout);
  });

  test('a client that dribbles its headers is cut off with 408 REQUEST_TIMEOUT', async () => {
    const server = h.app.server;
    const saved = server.headersTimeout;
    server.headersTimeout = 300;
    try {
      const { answer, closedAfterMs } = await raw(port, 'GET /v1/sys/status HTTP/1.1\r\nHost: x\r\nX-Slow: 1', { keepOpenMs: 10_000 });
      const res = parse(answer);
      assert.deepEqual([res.status, res.body.error?.code], [408, 'REQUEST_TIMEOUT'], answer.slice(0, 300));
      assert.ok(closedAfterMs < 5_000, `closed after ${closedAfterMs} ms`);
    } finally {
      server.headersTimeout = saved;
    }
  });

  test('a client that dribbles its body is cut off with 408 REQUEST_TIMEOUT', async () => {
    const server = h.app.server;
    const saved = [server.headersTimeout, server.requestTimeout];
    [server.headersTimeout, server.requestTimeout] = [300, 600];
    try {
      const head = `POST /v1/sys/unseal HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"share":"`;
      const { answer, closedAfterMs } = await raw(port, head, { keepOpenMs: 10_000 });
      assert.match(answer, /^HTTP\/1\.1 408 /, answer.slice(0, 300));
      assert.match(answer, /"REQUEST_TIMEOUT"/);
      assert.ok(closedAfterMs < 5_000, `closed after ${closedAfterMs} ms`);
    } finally {
      [server.headersTimeout, server.requestTimeout] = saved as [number, number];
    }
  });
});
