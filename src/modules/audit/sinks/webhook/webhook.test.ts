import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { describe, test } from 'node:test';
import { ConfigError } from '../../../../config/config.ts';
import { createManualClock } from '../../../../platform/clock.ts';
import { createMemoryCursorStore, retryDelay } from '../../delivery-ports.ts';
import { createAuditDelivery, type AuditDelivery } from '../../delivery.ts';
import type { AuditEvent, AuditSink } from '../../event.ts';
import { auditEvent, createMemoryAuditLog, seqs, waitFor } from '../testing.ts';
import { createWebhookSink, retryAfter, SIGNATURE_HEADER } from './index.ts';
import { isLoopbackHost } from '../../../../platform/addresses.ts';
import { cpuMs } from '../../../../../test/helpers/cpu-time.ts';

const SECRET = 'whsec_0123456789abcdef';

type Answer = 'ok' | 'fail' | 'hang' | 'endless' | 'redirect' | 'busy' | 'busy-for-an-hour';

/** A SIEM collector on loopback; `answer` decides per request, `accepted` holds events from 2xx answers. */
async function collector(answer: (n: number) => Answer) {
  const accepted: AuditEvent[] = [];
  const requests: { answer: Answer; signatureOk: boolean; contentType: string | undefined; at: number }[] = [];
  const dropped = { endless: 0 };
  const handle = (req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks);
      const a = answer(requests.length + 1);
      const expected = `sha256=${createHmac('sha256', SECRET).update(body).digest('hex')}`;
      requests.push({ answer: a, signatureOk: req.headers[SIGNATURE_HEADER] === expected, contentType: req.headers['content-type'], at: performance.now() });
      if (a === 'hang') return; // never answers
      if (a === 'fail') return void res.writeHead(500).end('collector unavailable');
      if (a === 'busy') return void res.writeHead(503, { 'retry-after': '1' }).end('busy');
      if (a === 'busy-for-an-hour') return void res.writeHead(429, { 'retry-after': '3600' }).end('slow down');
      if (a === 'redirect') return void res.writeHead(302, { location: 'https://elsewhere.example/' }).end();
      accepted.push(...(JSON.parse(body.toString('utf8')) as AuditEvent[]));
      if (a === 'ok') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
      // 'endless': a 200 whose body never ends
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.on('close', () => dropped.endless++);
      const chunk = 'x'.repeat(1024);
      const pump = setInterval(() => (res.destroyed ? clearInterval(pump) : res.write(chunk)), 1);
    });
  };
  const server: Server = createServer(handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}/audit?token=collector-token-123`,
    accepted,
    requests,
    dropped,
    async close() {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

function deliveryFor(sink: AuditSink, log: ReturnType<typeof createMemoryAuditLog>, over: { timeoutMs?: number; batchSize?: number; maxBackoffMs?: number } = {}): AuditDelivery {
  return createAuditDelivery({
    source: log,
    sinks: [sink],
    cursors: createMemoryCursorStore(),
    clock: createManualClock(),
    timeoutMs: over.timeoutMs ?? 1000,
    batchSize: over.batchSize ?? 5,
    backoff: { baseMs: 5, maxMs: over.maxBackoffMs ?? 40, random: () => 0.5 },
  });
}

describe('webhook audit sink', () => {
  test('a collector that answers 500 for a while gets every event after it recovers: in order, none lost, each batch signed', async () => {
    const siem = await collector((n) => (n <= 4 ? 'fail' : 'ok'));
    const log = createMemoryAuditLog();
    log.append(12);
    const delivery = deliveryFor(createWebhookSink({ name: 'siem', url: siem.url, secret: SECRET }), log);
    try {
      delivery.start();
      await waitFor('failures', () => delivery.status()[0]!.consecutiveFailures >= 1);
      await waitFor('all events', () => delivery.status()[0]!.cursor === 12);
      log.append(3);
      delivery.poke(15);
      await waitFor('late events', () => delivery.status()[0]!.cursor === 15);

      assert.deepEqual(siem.accepted.map((e) => e.seq), seqs(15));
      assert.deepEqual(siem.accepted, log.events);
      assert.equal(siem.requests.filter((r) => r.answer === 'fail').length, 4);
      assert.ok(siem.requests.every((r) => r.signatureOk && r.contentType === 'application/json'));
      const status = delivery.status()[0]!;
      assert.equal(status.consecutiveFailures, 0);
      assert.equal(status.lag, 0);
      assert.equal(status.lastError, 'webhook answered HTTP 500');
    } finally {
      await delivery.stop();
      await siem.close();
    }
  });

  test('a collector that answers 503 with Retry-After is not asked again before it said; a longer wait than the backoff cap is cut to the cap', async () => {
    const siem = await collector((n) => (n === 1 ? 'busy' : n === 2 ? 'busy-for-an-hour' : 'ok'));
    const log = createMemoryAuditLog();
    log.append(4);
    const delivery = deliveryFor(createWebhookSink({ name: 'siem', url: siem.url, secret: SECRET }), log, { maxBackoffMs: 1500 });
    try {
      delivery.start();
      await waitFor('the first refusal', () => delivery.status()[0]!.consecutiveFailures === 1);
      assert.equal(delivery.status()[0]!.lastError, 'webhook answered HTTP 503, Retry-After 1 s');
      await waitFor('all events', () => delivery.status()[0]!.cursor === 4, 10_000);
      const [busy, hour, ok] = siem.requests.map((r) => r.at);
      // Without the header the retry would come after the 5 ms backoff (the other tests here).
      assert.ok(hour! - busy! >= 950, `asked again ${Math.round(hour! - busy!)} ms after a Retry-After of 1 s`);
      // An hour asked, the cap (1.5 s) given: a hostile or wrong hint stops the stream no longer than any failure.
      assert.ok(ok! - hour! >= 1400 && ok! - hour! < 5000, `asked again ${Math.round(ok! - hour!)} ms after a Retry-After of an hour, capped at 1.5 s`);
      assert.deepEqual(siem.accepted.map((e) => e.seq), seqs(4));
    } finally {
      await delivery.stop();
      await siem.close();
    }
  });

  test('Retry-After is read as delay-seconds or an HTTP date; anything else, zero or a past date is no hint', () => {
    const now = Date.parse('2026-12-06T12:00:00Z');
    assert.equal(retryAfter('120', now), 120_000);
    assert.equal(retryAfter(' 5 ', now), 5_000);
    assert.equal(retryAfter('Sun, 06 Dec 2026 12:00:30 GMT', now), 30_000);
    for (const none of [undefined, '', '0', '-1', '1.5', 'soon', 'Sun, 06 Dec 2026 11:59:00 GMT']) assert.equal(retryAfter(none, now), null, String(none));
    const settings = { baseMs: 100, maxMs: 1000, random: () => 0 };
    assert.equal(retryDelay(Object.assign(new Error('x'), { retryAfterMs: 600 }), 1, settings), 600, 'longer than the backoff: the hint');
    assert.equal(retryDelay(Object.assign(new Error('x'), { retryAfterMs: 50 }), 1, settings), 100, 'shorter: the backoff');
    assert.equal(retryDelay(Object.assign(new Error('x'), { retryAfterMs: 3_600_000 }), 1, settings), 1000, 'past the cap: the cap');
    assert.equal(retryDelay(Object.assign(new Error('x'), { retryAfterMs: 'soon' }), 1, settings), 100, 'not a number: the backoff');
    assert.equal(retryDelay(null, 1, settings), 100);
  });

  test('a collector that hangs is timed out and retried, callers stay fast, and everything arrives once it answers', async () => {
    let hanging = true;
    const siem = await collector(() => (hanging ? 'hang' : 'ok'));
    const log = createMemoryAuditLog();
    log.append(3);
    const delivery = deliveryFor(createWebhookSink({ name: 'siem', url: siem.url, secret: SECRET }), log, { timeoutMs: 100 });
    try {
      delivery.start();
      await waitFor('a hung request', () => siem.requests.length >= 1);

      // The request path while the sink hangs: append and poke, a thousand times.
      const { ms: elapsed } = cpuMs(() => {
        for (let i = 0; i < 1000; i++) {
          const [event] = log.append(1);
          delivery.poke(event!.seq);
        }
      });
      assert.ok(elapsed < 50, `1000 appends + pokes took ${elapsed.toFixed(1)} ms`);

      await waitFor('a timed-out retry', () => siem.requests.length >= 2 && delivery.status()[0]!.consecutiveFailures >= 1);
      const stuck = delivery.status()[0]!;
      assert.match(stuck.lastError ?? '', /timed out after 100 ms/);
      assert.equal(stuck.cursor, 0);
      assert.equal(stuck.lag, 1003);

      hanging = false;
      await waitFor('all events', () => delivery.status()[0]!.cursor === 1003, 5000);
      assert.deepEqual(siem.accepted.map((e) => e.seq), seqs(1003));
      assert.equal(delivery.status()[0]!.lag, 0);
    } finally {
      await delivery.stop();
      await siem.close();
    }
  });

  test('a 2xx whose body never ends still acknowledges the batch (at most 4 KiB of a response is read)', async () => {
    const siem = await collector(() => 'endless');
    const sink = createWebhookSink({ name: 'siem', url: siem.url });
    try {
      const controller = new AbortController();
      await sink.deliver([auditEvent(1), auditEvent(2)], controller.signal);
      assert.deepEqual(siem.accepted.map((e) => e.seq), [1, 2]);
      // The client drops the connection after 4 KiB instead of reading on (it would otherwise read for seconds).
      // Well before the 5 s drain timer would drop it too (3 s: room for a loaded machine).
      await waitFor('the endless response to be dropped', () => siem.dropped.endless === 1, 3000);
    } finally {
      await sink.close!();
      await siem.close();
    }
  });

  test('a redirect is a failure and is not followed', async () => {
    const siem = await collector(() => 'redirect');
    const sink = createWebhookSink({ name: 'siem', url: siem.url });
    try {
      await assert.rejects(sink.deliver([auditEvent(1)], new AbortController().signal), /webhook answered HTTP 302/);
      assert.equal(siem.requests.length, 1);
    } finally {
      await sink.close!();
      await siem.close();
    }
  });

  test('an unreachable collector fails without echoing the URL or its token', async () => {
    const siem = await collector(() => 'ok');
    const url = siem.url;
    await siem.close();
    const sink = createWebhookSink({ name: 'siem', url });
    const err = await sink.deliver([auditEvent(1)], new AbortController().signal).then(() => null, (e: unknown) => e as Error);
    await sink.close!();
    assert.ok(err);
    assert.equal(err.message, 'webhook request failed: ECONNREFUSED');
  });

  test('plain http is accepted only for loopback; a short signing secret is refused', () => {
    for (const url of ['http://127.0.0.1:9/x', 'http://localhost/x', 'http://[::1]:8080/', 'https://siem.example.com/hook']) {
      assert.doesNotThrow(() => createWebhookSink({ name: 'siem', url }), url);
    }
    for (const url of ['http://siem.example.com/hook', 'http://10.0.0.5/hook', 'http://127.0.0.1.example.com/', 'ftp://127.0.0.1/', 'not a url']) {
      assert.throws(() => createWebhookSink({ name: 'siem', url }), ConfigError, url);
    }
    assert.throws(() => createWebhookSink({ name: 'siem', url: 'https://siem.example.com/', secret: 'short' }), /secret must be at least 16 bytes/);
    assert.equal(isLoopbackHost('127.255.0.1'), true);
    assert.equal(isLoopbackHost('127.256.0.1'), false);
  });
});
