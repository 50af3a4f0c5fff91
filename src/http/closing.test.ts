import { test } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHarness, type Harness } from '../../test/helpers/harness.ts';
import { within } from '../../test/helpers/deadline.ts';

/**
 * A harness listening on loopback, and a raw connection carrying a POST whose body has only begun to arrive
 * when the server starts closing: `rest` sends more bytes on it, `answer` is everything read back so far.
 */
async function closingWithRequestInFlight(h: Harness) {
  await h.app.listen({ host: '127.0.0.1', port: 0 });
  const socket = connect((h.app.server.address() as AddressInfo).port, '127.0.0.1');
  let answer = '';
  socket.on('data', (c: Buffer) => (answer += c.toString('utf8')));
  const ended = new Promise((resolve) => socket.on('close', resolve));
  // A request whose body is still arriving keeps its connection open while the server closes.
  const body = JSON.stringify({ name: 'IN_FLIGHT', owner: 'ops' });
  socket.write(`POST /v1/secrets HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${h.rootToken}\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body.slice(0, 5)}`);
  await sleep(100);
  const closing = h.app.close();
  await sleep(50);
  return { socket, ended, closing, rest: body.slice(5), answer: () => answer };
}

test('a request that reaches a closing server over a connection still open gets a catalogued answer with every header, then the connection ends', async () => {
  const h = await createHarness('sqlite');
  try {
    const { socket, ended, closing, rest, answer } = await closingWithRequestInFlight(h);
    // The rest of it, and a second request pipelined behind it.
    socket.write(`${rest}GET /v1/sys/status HTTP/1.1\r\nHost: x\r\n\r\n`);
    await within(ended, 5_000, undefined);
    socket.destroy();
    await closing;
    const second = answer().split(/(?=HTTP\/1\.1 )/)[1] ?? '';
    const [head = '', text = ''] = second.split('\r\n\r\n');
    assert.match(head.toLowerCase(), /x-content-type-options: nosniff/, second);
    assert.match(head.toLowerCase(), /cache-control: no-store/);
    assert.match(head.toLowerCase(), /connection: close/);
    assert.match(head.toLowerCase(), /x-request-id: /);
    const parsed = JSON.parse(text) as { error?: { code?: unknown } };
    // fastify's own shutdown answer ({"error":"Service Unavailable",...}) is no Keyhold body; a route's answer or a catalogued error is.
    assert.notEqual(typeof parsed.error, 'string', text);
  } finally {
    await h.close();
  }
});

test('a request in flight when the server starts closing is answered, and its keep-alive connection then ends so the close does not wait on an idle client', async () => {
  const h = await createHarness('sqlite');
  try {
    const { socket, ended, closing, rest, answer: read } = await closingWithRequestInFlight(h);
    // The rest of the body; then the client keeps its connection, as a pooling client (a proxy, an SDK) does.
    socket.write(rest);
    const closed = await within(closing.then(() => 'closed'), 3_000, 'still waiting');
    const gone = await within(ended.then(() => 'ended'), 1_000, 'still open');
    socket.destroy();
    const answer = read();
    assert.equal(closed, 'closed', `the close waited on a connection whose request had been answered:\n${answer}`);
    assert.equal(gone, 'ended');
    assert.match(answer, /^HTTP\/1\.1 201 /, answer);
    assert.match(answer.toLowerCase(), /\r\nconnection: close\r\n/, 'the answer tells the client not to reuse the connection');
    await closing;
  } finally {
    await h.close();
  }
});
