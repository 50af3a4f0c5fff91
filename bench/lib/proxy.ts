import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakePaymentApi } from '../../test/fixtures/fake-payment-api.ts';
import type { Cleanup } from './cleanup.ts';
import { spawnServer } from './spawn.ts';

export interface ProxyOverhead {
  directMedianMs: number;
  proxyMedianMs: number;
  /** proxyMedianMs − directMedianMs. */
  overheadMs: number;
  calls: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function expectOk(res: Promise<Response>, what: string): Promise<unknown> {
  const r = await res;
  const text = await r.text();
  if (!r.ok) throw new Error(`${what}: ${r.status} ${text.slice(0, 300)}`);
  return JSON.parse(text) as unknown;
}

/**
 * Latency of one authorised call to the fake payment API's `/health`, sequentially, alternating
 * between a direct call (the bench injects the bearer itself) and the same call through a real
 * Keyhold server's credential proxy as a machine holding `builder` (authz, decrypt, audit, inject,
 * forward, mask). Same endpoint, same run; medians of `calls` each after a warm-up.
 */
export async function benchProxyOverhead(opts: { cleanup: Cleanup; calls?: number; warmup?: number }): Promise<ProxyOverhead> {
  const calls = opts.calls ?? 400;
  const token = `sk_live_${randomBytes(16).toString('hex')}`;
  const api = await startFakePaymentApi({ token });
  opts.cleanup.add('fake payment api', () => api.close());
  const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-bench-proxy-'));
  opts.cleanup.add(`remove ${dataDir}`, () => rmSync(dataDir, { recursive: true, force: true }));
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('KEYHOLD_')));
  const server = await spawnServer({
    label: 'keyhold server (proxy)', script: 'src/main/server.ts', args: ['--dev'], readyMsg: 'keyhold listening', cleanup: opts.cleanup,
    env: { ...env, KEYHOLD_DATA_DIR: dataDir, KEYHOLD_PORT: '0', KEYHOLD_LOG_LEVEL: 'info' },
  });
  const root = { authorization: `Bearer ${readFileSync(join(dataDir, 'dev-root-token'), 'utf8').trim()}`, 'content-type': 'application/json' };
  const post = (path: string, body: unknown, headers: Record<string, string> = root) => expectOk(fetch(server.address + path, { method: 'POST', headers, body: JSON.stringify(body) }), path);
  await post('/v1/secrets', { name: 'BENCH_API_TOKEN', owner: 'bench' });
  await expectOk(fetch(`${server.address}/v1/secrets/BENCH_API_TOKEN/values/production`, { method: 'PUT', headers: root, body: JSON.stringify({ value: token }) }), 'write');
  await post('/v1/connectors/production', { name: 'bench-api', type: 'http', owner: 'bench', settings: { baseUrl: api.url, auth: { kind: 'bearer' } }, slots: { token: 'BENCH_API_TOKEN' } });
  const machine = (await post('/v1/machines', { name: 'bench-proxy-runner', kind: 'client_secret' })) as { id: string; clientId: string; clientSecret: string };
  await post('/v1/grants', { principalType: 'machine', principalId: machine.id, role: 'builder', environments: ['production'] });
  const exchanged = (await post('/v1/auth/token', { grant_type: 'client_credentials', client_id: machine.clientId, client_secret: machine.clientSecret }, { 'content-type': 'application/json' })) as { access_token: string };
  const runner = { authorization: `Bearer ${exchanged.access_token}`, 'content-type': 'application/json' };
  const proxyBody = JSON.stringify({ method: 'GET', path: '/health' });

  const direct = async () => {
    const r = await fetch(`${api.url}/health`, { headers: { authorization: `Bearer ${token}` } });
    await r.text();
    if (r.status !== 200) throw new Error(`direct call: ${r.status}`);
  };
  const proxied = async () => {
    const r = await fetch(`${server.address}/v1/proxy/production/bench-api`, { method: 'POST', headers: runner, body: proxyBody });
    const body = (await r.json()) as { status?: number };
    if (r.status !== 200 || body.status !== 200) throw new Error(`proxied call: ${r.status} ${JSON.stringify(body).slice(0, 200)}`);
  };
  for (let i = 0; i < (opts.warmup ?? 50); i++) {
    await direct();
    await proxied();
  }
  const d: number[] = [];
  const p: number[] = [];
  for (let i = 0; i < calls; i++) {
    let t = performance.now();
    await direct();
    d.push(performance.now() - t);
    t = performance.now();
    await proxied();
    p.push(performance.now() - t);
  }
  await server.stop();
  const directMedianMs = median(d);
  const proxyMedianMs = median(p);
  return { directMedianMs, proxyMedianMs, overheadMs: proxyMedianMs - directMedianMs, calls };
}
