import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createJwksCache } from './jwks-cache.ts';

const OPTIONS = { cooldownMs: 30_000, cacheMaxAgeMs: 600_000, timeoutMs: 1_000, staleMaxAgeMs: 86_400_000 };
const HEADER = { alg: 'RS256', kid: 'k1' };

function countingFetch(answer: () => Response | Promise<Response>) {
  const calls: string[] = [];
  const fetch = (async (url: string | URL | Request) => {
    calls.push(String(url));
    return answer();
  }) as typeof globalThis.fetch;
  return { calls, fetch };
}

test('a JWKS URL whose fetch failed is not called again before the cooldown has passed', async () => {
  let t = 1_000_000;
  const { calls, fetch } = countingFetch(() => { throw new Error('connect ECONNREFUSED'); });
  const cache = createJwksCache(OPTIONS, { fetch, now: () => t });
  for (let i = 0; i < 5; i++) await assert.rejects(cache.get('https://idp.example.test/jwks')(HEADER));
  assert.equal(calls.length, 1);
  t += 30_001;
  await assert.rejects(cache.get('https://idp.example.test/jwks')(HEADER));
  assert.equal(calls.length, 2);
});

test('an error status counts as a failed fetch too', async () => {
  const t = 1_000_000;
  const { calls, fetch } = countingFetch(() => new Response('no', { status: 500 }));
  const cache = createJwksCache(OPTIONS, { fetch, now: () => t });
  for (let i = 0; i < 3; i++) await assert.rejects(cache.get('https://idp.example.test/jwks')(HEADER));
  assert.equal(calls.length, 1);
});

test('when the provider cannot be reached to refresh stale keys, the keys last fetched still verify for a day, and an unknown kid is still refused', async () => {
  const jwk = { ...generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey.export({ format: 'jwk' }), kid: 'k1', alg: 'ES256', use: 'sig' };
  let up = true;
  let t = 1_000_000;
  const { calls, fetch } = countingFetch(() => (up ? Response.json({ keys: [jwk] }) : new Response('unavailable', { status: 503 })));
  // Keys go stale after 20 ms (jose judges that by Date.now()); the day is judged by Keyhold's clock.
  const cache = createJwksCache({ ...OPTIONS, cacheMaxAgeMs: 20 }, { fetch, now: () => t });
  const known = { alg: 'ES256', kid: 'k1' };
  await cache.get('https://idp.example.test/jwks')(known);
  up = false;
  await sleep(40);
  await cache.get('https://idp.example.test/jwks')(known);
  assert.equal(calls.length, 2, 'the refresh was tried');
  await cache.get('https://idp.example.test/jwks')(known);
  assert.equal(calls.length, 2, 'and not again before the cooldown');
  await assert.rejects(cache.get('https://idp.example.test/jwks')({ alg: 'ES256', kid: 'k2' }), 'an unknown kid');
  t += 86_400_001;
  await assert.rejects(cache.get('https://idp.example.test/jwks')(known), 'keys unconfirmed for over a day');
});

test('a URL in use keeps its keys when other URLs fill the cache', async () => {
  const { calls, fetch } = countingFetch(() => Response.json({ keys: [] }));
  const cache = createJwksCache(OPTIONS, { fetch, maxSets: 3 });
  const busy = 'https://busy.example.test/jwks';
  assert.equal(cache.get(busy), cache.get(busy));
  const kept = cache.get(busy);
  const first = cache.get('https://tenant0.example.test/jwks');
  for (let i = 1; i < 10; i++) {
    cache.get(`https://tenant${i}.example.test/jwks`);
    assert.equal(cache.get(busy), kept, `evicted after ${i} other URLs`);
  }
  assert.notEqual(cache.get('https://tenant0.example.test/jwks'), first, 'the least recently used set is the one dropped');
  assert.equal(calls.length, 0);
});

test('an answer of 200 that is not a key set counts as a failed fetch too (a web page, JSON without keys)', async () => {
  for (const body of ['<html>hello</html>', '{}', '{"keys":"none"}']) {
    const t = 1_000_000;
    const { calls, fetch } = countingFetch(() => new Response(body, { status: 200, headers: { 'content-type': 'application/json' } }));
    const cache = createJwksCache(OPTIONS, { fetch, now: () => t });
    for (let i = 0; i < 3; i++) await assert.rejects(cache.get('https://idp.example.test/jwks')(HEADER));
    assert.equal(calls.length, 1, body);
  }
});

/** A JWKS host on loopback answering each request with `handler`, reached through the cache's default (guarded, pinned) fetch. */
async function loopbackHost(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<{ url: string; hits: () => number; close(): Promise<void> }> {
  let hits = 0;
  const server = createServer((req, res) => {
    hits++;
    handler(req, res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/jwks.json`,
    hits: () => hits,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}

test('a JWKS host that redirects is refused, and the redirect is not followed', async () => {
  const target = await loopbackHost((_req, res) => res.writeHead(200, { 'content-type': 'application/json' }).end('{"keys":[]}'));
  const redirecting = await loopbackHost((_req, res) => res.writeHead(302, { location: target.url }).end());
  try {
    const cache = createJwksCache(OPTIONS);
    await assert.rejects(cache.get(redirecting.url)(HEADER));
    assert.equal(redirecting.hits(), 1);
    assert.equal(target.hits(), 0, 'the redirect target was called');
  } finally {
    await redirecting.close();
    await target.close();
  }
});

test('a JWKS host that sends its answer slowly is cut off at the timeout', async () => {
  const slow = await loopbackHost((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.write('{"keys":[');
    const drip = setInterval(() => res.write(' '), 50);
    res.on('close', () => clearInterval(drip));
  });
  try {
    const cache = createJwksCache({ ...OPTIONS, timeoutMs: 300 });
    const started = performance.now();
    await assert.rejects(cache.get(slow.url)(HEADER));
    const took = performance.now() - started;
    assert.ok(took >= 250 && took < 5_000, `gave up after ${took} ms`);
  } finally {
    await slow.close();
  }
});

test('a JWKS answer larger than the bound is refused without being read to its end', async () => {
  // Far more than loopback's socket buffers can hold (they grow to several MB under load), so a
  // client that stopped at the bound leaves most of it unsent, and one that read on would not.
  const TOTAL = 64 * 1024 * 1024;
  let sent = 0;
  const huge = await loopbackHost((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    const chunk = Buffer.alloc(64 * 1024, 0x20);
    const pump = () => {
      let flowing = true;
      while (sent < TOTAL && flowing) {
        sent += chunk.length;
        flowing = res.write(chunk);
      }
      if (sent >= TOTAL) res.end();
      else res.once('drain', pump);
    };
    res.on('close', () => res.removeAllListeners('drain'));
    pump();
  });
  try {
    // A timeout far beyond the test's run: only the size bound can end this.
    const cache = createJwksCache({ ...OPTIONS, timeoutMs: 60_000 });
    await assert.rejects(cache.get(huge.url)(HEADER));
    assert.ok(sent < 16 * 1024 * 1024, `the server got to send ${sent} bytes`);
  } finally {
    await huge.close();
  }
});
