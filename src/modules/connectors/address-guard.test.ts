import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guardedFetch, type Lookup } from './address-guard.ts';
import { sendOutbound } from './outbound.ts';
import { within } from '../../../test/helpers/deadline.ts';

/** No real DNS and no real request: a lookup table and a fetch that records what it was asked. */
function rig(table: Record<string, string[]>) {
  const asked: string[] = [];
  const looked: string[] = [];
  const inner = (async (input: URL | string) => {
    asked.push(String(input));
    return new Response('ok', { status: 200 });
  }) as typeof fetch;
  const lookup: Lookup = async (host) => {
    looked.push(host);
    const addresses = table[host];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address }));
  };
  return { fetch: guardedFetch(inner, lookup), asked, looked };
}

const limits = { headersTimeoutMs: 1000, totalTimeoutMs: 1000, maxResponseBytes: 1024 };
const get = (url: string) => ({ method: 'GET', url: new URL(url), headers: {}, body: undefined });

test('a name that resolves to a metadata or link-local address is never called, even when it also resolves elsewhere', async () => {
  const r = rig({
    'rebind.example': ['169.254.169.254'], 'mixed.example': ['203.0.113.7', 'fe80::1'], 'v6meta.example': ['fd00:ec2::254'],
    'api.example': ['203.0.113.7'], 'internal.example': ['10.1.2.3'],
  });
  for (const host of ['rebind.example', 'mixed.example', 'v6meta.example']) {
    assert.deepEqual(await sendOutbound(r.fetch, get(`https://${host}/x`), limits), { ok: false, reason: 'forbidden_address' }, host);
  }
  assert.deepEqual(r.asked, [], 'no request left');
  for (const host of ['api.example', 'internal.example']) {
    const res = await sendOutbound(r.fetch, get(`https://${host}/x`), limits);
    assert.equal(res.ok && res.status, 200, host);
  }
  assert.deepEqual(r.asked, ['https://api.example/x', 'https://internal.example/x'], 'public and private networks are reached');
});

test('literal addresses and metadata names are refused without a lookup; a failed lookup is "unreachable"', async () => {
  const r = rig({});
  for (const url of ['https://169.254.169.254/latest', 'http://metadata.google.internal/', 'https://[fe80::1]/', 'https://100.100.100.200/']) {
    assert.deepEqual(await sendOutbound(r.fetch, get(url), limits), { ok: false, reason: 'forbidden_address' }, url);
  }
  assert.deepEqual(r.looked, []);
  assert.deepEqual(await sendOutbound(r.fetch, get('https://nowhere.example/'), limits), { ok: false, reason: 'unreachable' });
  const local = await sendOutbound(r.fetch, get('http://127.0.0.1:9/x'), limits);
  assert.equal(local.ok, true, 'loopback literals go straight through');
});

test('an allowed name is remembered for 30 s (no DNS query per call), then asked again; a refused one never is', async () => {
  let t = 0;
  const table: Record<string, string[]> = { 'api.example': ['203.0.113.7'], 'meta.example': ['169.254.169.254'] };
  const looked: string[] = [];
  const inner = (async () => new Response('ok')) as typeof fetch;
  const f = guardedFetch(inner, async (host) => {
    looked.push(host);
    return table[host]!.map((address) => ({ address }));
  }, { now: () => t });
  for (let i = 0; i < 3; i++) assert.equal((await sendOutbound(f, get('https://API.example/x'), limits)).ok, true);
  assert.deepEqual(looked, ['api.example'], 'one lookup for three calls');
  t += 30_001;
  table['api.example'] = ['169.254.169.254']; // the name now points at the metadata service
  assert.deepEqual(await sendOutbound(f, get('https://api.example/x'), limits), { ok: false, reason: 'forbidden_address' });
  for (let i = 0; i < 2; i++) await sendOutbound(f, get('https://meta.example/x'), limits);
  assert.deepEqual(looked, ['api.example', 'api.example', 'meta.example', 'meta.example']);
});

test('a lookup that does not answer is given up when the request\'s signal aborts: a JWKS or connector timeout covers DNS too', async () => {
  let called = false;
  const inner = (async () => {
    called = true;
    return new Response('ok');
  }) as typeof fetch;
  const silent: Lookup = () => new Promise(() => {}); // a resolver that never answers (a name server that drops queries)
  const fetchGuarded = guardedFetch(inner, silent);
  const started = performance.now();
  const outcome = await within(
    fetchGuarded('https://slow-dns.example/jwks', { signal: AbortSignal.timeout(100) }).then(() => 'answered', (err: Error) => err.name),
    3_000, 'still waiting after 3 s',
  );
  assert.equal(outcome, 'TimeoutError');
  assert.ok(performance.now() - started < 2_000);
  assert.equal(called, false, 'nothing was fetched');
});
