import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, createServer, get } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { identitySettings, rotationSettings } from '../../src/config/config.ts';
import { createServices } from '../../src/main/compose.ts';
import type { DependentsPort } from '../../src/modules/rotation/dependents.ts';
import { systemClock } from '../../src/platform/clock.ts';
import { openStorage } from '../../src/storage/database.ts';
import type { Cleanup } from './cleanup.ts';

/**
 * `rotation_fanout_s`: one secret with `connectors` dependent connectors, each health check a real
 * HTTP GET to a local endpoint (through the rotation's dependents port, keep-alive, bounded
 * concurrency). Measures the wall time of a whole rotation: pending written, every check, promoted.
 */
export async function benchRotationFanout(opts: { connectors: number; rounds: number; cleanup: Cleanup }): Promise<{ bestSeconds: number; checks: number }> {
  const endpoint = createServer((req, res) => {
    // A healthy API: it answers 200 only when the credential is present.
    res.writeHead(req.headers.authorization ? 200 : 401).end();
  });
  await new Promise<void>((r) => endpoint.listen(0, '127.0.0.1', r));
  opts.cleanup.add('rotation bench endpoint', () => new Promise<void>((r) => { endpoint.closeAllConnections(); endpoint.close(() => r()); }));
  const url = `http://127.0.0.1:${(endpoint.address() as AddressInfo).port}/health`;
  const agent = new Agent({ keepAlive: true, maxSockets: 64 });
  opts.cleanup.add('rotation bench agent', () => agent.destroy());

  const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-bench-rotation-'));
  opts.cleanup.add('rotation bench data dir', () => rmSync(dataDir, { recursive: true, force: true }));
  const storage = await openStorage({ url: `sqlite:${join(dataDir, 'keyhold.db')}` });
  opts.cleanup.add('rotation bench storage', () => storage.close());
  const services = createServices({
    config: { dataDir, limits: { maxNameLength: 128, maxValueBytes: 65_536, maxBodyBytes: 1 << 20 }, rollbackWindowMs: 7 * 86_400_000, identity: identitySettings(), rotation: rotationSettings() },
    // Notifications are not what is measured, and their log lines would mix with the bench lines.
    storage, clock: systemClock, notifier: { notify: async () => {} },
  });
  await services.system.initialize({ type: 'dev', shares: 1, threshold: 1 });
  const tenant = (await services.tenants.findByName('default'))!;
  const ctx = { tenantId: tenant.id, actor: { type: 'root' as const, id: 'bench', name: 'bench' }, requestId: 'bench' };
  await services.secrets.create(ctx, { name: 'FANOUT_KEY', owner: 'bench' });
  await services.values.write(ctx, 'FANOUT_KEY', 'production', { value: 'bench-initial-value' });

  const names = Array.from({ length: opts.connectors }, (_, i) => `conn-${i}`);
  let checks = 0;
  const port: DependentsPort = {
    dependents: async () => names.map((connector) => ({ connector, slot: 'token' })),
    healthCheck: (_ctx, _env, _connector, overrides) => new Promise((resolve) => {
      const started = performance.now();
      checks++;
      get(url, { agent, headers: { authorization: `Bearer ${overrides.token}` } }, (res) => {
        res.resume();
        res.on('end', () => resolve({ ok: res.statusCode === 200, latencyMs: performance.now() - started, detail: `HTTP ${res.statusCode}` }));
      }).on('error', (err) => resolve({ ok: false, latencyMs: performance.now() - started, detail: err.message }));
    }),
  };
  services.rotation.useDependents(port);
  await services.rotation.service.setPolicy(ctx, 'FANOUT_KEY', 'production', { rotator: 'random' });

  let best = Infinity;
  for (let round = 0; round < opts.rounds; round++) {
    const started = performance.now();
    const r = await services.rotation.service.rotate(ctx, 'FANOUT_KEY', 'production');
    const seconds = (performance.now() - started) / 1000;
    if (r.state !== 'succeeded') throw new Error(`rotation ${r.state}: ${JSON.stringify(r.error)}`);
    if (r.checks.length !== opts.connectors) throw new Error(`expected ${opts.connectors} checks, got ${r.checks.length}`);
    best = Math.min(best, seconds);
  }
  return { bestSeconds: best, checks };
}
