import { test } from 'node:test';
import assert from 'node:assert/strict';
import { sendOutbound } from './outbound.ts';

test('an answer past maxResponseBytes is cut there and the rest is not read: memory holds the limit, not what the upstream sends', async () => {
  let pulled = 0;
  const chunk = new Uint8Array(64 * 1024).fill(0x61);
  // An upstream that would stream 64 MiB: the read must stop at the limit and cancel the rest.
  const body = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled++;
      if (pulled > 1024) controller.close();
      else controller.enqueue(chunk);
    },
  });
  const fetchImpl = (async () => new Response(body, { status: 200 })) as typeof fetch;
  const res = await sendOutbound(fetchImpl, { method: 'GET', url: new URL('https://api.example/big'), headers: {}, body: undefined },
    { headersTimeoutMs: 5_000, totalTimeoutMs: 5_000, maxResponseBytes: 100_000 });
  assert.ok(res.ok);
  assert.equal(res.body.byteLength, 100_000);
  assert.equal(res.truncated, true);
  assert.ok(pulled < 10, `read ${pulled} chunks of the upstream's answer`);
});

test('an answer within the limit is whole and not flagged', async () => {
  const fetchImpl = (async () => new Response('x'.repeat(1_000), { status: 201 })) as typeof fetch;
  const res = await sendOutbound(fetchImpl, { method: 'GET', url: new URL('https://api.example/small'), headers: {}, body: undefined },
    { headersTimeoutMs: 5_000, totalTimeoutMs: 5_000, maxResponseBytes: 1_000 });
  assert.ok(res.ok);
  assert.deepEqual([res.status, res.body.byteLength, res.truncated], [201, 1_000, false]);
});
