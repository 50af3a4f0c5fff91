import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createJwksCache } from './jwks-cache.ts';

const OPTIONS = { cooldownMs: 30_000, cacheMaxAgeMs: 600_000, timeoutMs: 1_000 };
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
