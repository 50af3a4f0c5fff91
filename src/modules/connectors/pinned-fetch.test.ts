import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { guardedFetch, isForbiddenDestination, type Lookup } from './address-guard.ts';
import { sendOutbound } from './outbound.ts';
import { pinnedFetch } from './pinned-fetch.ts';

/**
 * The connection resolves names through the same check it connects with. Names are answered by a
 * table (no real DNS); the only address ever connected to is 127.0.0.1. A name answered with a
 * forbidden address is refused before any connection is attempted.
 */
let server: Server;
let port = 0;
const seen: string[] = [];
describe('connections pinned to the checked address', () => {
  before(async () => {
    server = createServer((req, res) => {
      seen.push(`${req.headers.host} ${req.url}`);
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((resolve) => server.close(() => resolve())));

  const limits = { headersTimeoutMs: 2000, totalTimeoutMs: 2000, maxResponseBytes: 1024 };
  const get = (url: string) => ({ method: 'GET', url: new URL(url), headers: {}, body: undefined });
  const table = (answers: Record<string, string[]>): Lookup => async (host) => {
    const addresses = answers[host];
    if (!addresses) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return addresses.map((address) => ({ address }));
  };

  test('a connection goes to the address the check resolved, not one the system resolver picks', async () => {
    const f = pinnedFetch(table({ 'billing.pinned.test': ['127.0.0.1'] }));
    const res = await sendOutbound(f, get(`http://billing.pinned.test:${port}/invoices`), limits);
    assert.equal(res.ok && res.body.toString(), 'ok');
    assert.deepEqual(seen.splice(0), [`billing.pinned.test:${port} /invoices`]);
  });

  test('a name that resolves to a metadata or link-local address is refused at connect time, also beside an allowed address', async () => {
    const f = pinnedFetch(table({
      'meta.pinned.test': ['169.254.169.254'], 'mixed.pinned.test': ['127.0.0.1', 'fe80::1'], 'alibaba.pinned.test': ['100.100.100.200'],
    }));
    for (const host of ['meta.pinned.test', 'mixed.pinned.test', 'alibaba.pinned.test']) {
      assert.deepEqual(await sendOutbound(f, get(`http://${host}:${port}/latest/meta-data/`), limits), { ok: false, reason: 'forbidden_address' }, host);
      await assert.rejects(f(`http://${host}:${port}/`), (err) => isForbiddenDestination(err), host);
    }
    assert.deepEqual(seen, [], 'nothing was connected to');
  });

  test('DNS rebinding: a name allowed by the early check and rebound to the metadata address before the connection is refused', async () => {
    let asked = 0;
    // First answer (guardedFetch's check): a public address. Every later one (the connection's): the metadata service.
    const rebinding: Lookup = async () => [{ address: asked++ === 0 ? '203.0.113.9' : '169.254.169.254' }];
    const f = guardedFetch(pinnedFetch(rebinding), rebinding);
    assert.deepEqual(await sendOutbound(f, get(`http://rebind.pinned.test:${port}/latest/meta-data/iam/`), limits), { ok: false, reason: 'forbidden_address' });
    assert.equal(asked, 2, 'the connection asked again, and was refused on that answer');
    assert.deepEqual(seen, []);
  });

  test('a name that does not resolve is unreachable, not forbidden', async () => {
    const f = pinnedFetch(table({}));
    assert.deepEqual(await sendOutbound(f, get(`http://nowhere.pinned.test:${port}/`), limits), { ok: false, reason: 'unreachable' });
  });

  test('the http rotator, given the guarded fetch, never reaches a provider name rebound to the metadata service', async () => {
    const { createHttpRotator } = await import('../rotation/rotators/http/index.ts');
    const lookup: Lookup = async () => [{ address: '169.254.169.254' }];
    const rotator = createHttpRotator({ fetch: guardedFetch(pinnedFetch(lookup), lookup) });
    const rc = {
      settings: { url: 'https://provider.pinned.test/keys' }, rehearsal: false, secretName: 'API_KEY', environment: 'production', rotationId: 'r1',
      signal: new AbortController().signal, resolve: async () => assert.fail('no secret is resolved'),
    };
    await assert.rejects(rotator.generate(rc as never), /rotation endpoint \/issue did not answer \(ForbiddenDestinationError\)/);
    assert.deepEqual(seen, []);
  });
});
