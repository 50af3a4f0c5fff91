import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import Fastify from 'fastify';
import { loadConfig } from '../src/config/config.ts';
import { serverOptions } from '../src/http/server.ts';
import { createLogger } from '../src/platform/logger.ts';
import type { TenantContext } from '../src/modules/shared/context.ts';
import { secretResource } from '../src/modules/secrets/secret-service.ts';
import { composeInProcess, seedReader } from './lib/in-process.ts';

/**
 * `node bench/stages.ts`: the secret read taken apart, in process, on SQLite. Each stage runs on
 * its own in a loop and reports microseconds per call: CPU of the main thread (the event loop the
 * requests share), CPU of the process (with the audit appender's thread; time waiting for fsync
 * is not CPU), and wall time. `inject` lines go through fastify
 * without a socket: `full read` minus `bare inject` is what Keyhold adds to fastify per read.
 * Concurrency 32, as in the bench, so the audit log's group commit batches as it does there.
 */
const CONCURRENCY = 32;
const { limits } = loadConfig({});
const silent = new Writable({ write: (_c, _e, done) => done() });

function report(name: string, n: number, mainUs: number, cpuUs: number, wallUs: number): void {
  const f = (us: number) => (us / n).toFixed(1).padStart(7);
  process.stdout.write(`${name.padEnd(44)} ${f(mainUs)} us main-thread CPU ${f(cpuUs)} us process CPU ${f(wallUs)} us wall\n`);
}

async function measure(name: string, n: number, fn: (i: number) => Promise<unknown> | unknown, concurrent = false): Promise<void> {
  for (let i = 0; i < Math.min(n, 2000); i++) await fn(i); // warm-up
  const c0 = process.cpuUsage();
  const m0 = process.threadCpuUsage();
  const t0 = performance.now();
  if (concurrent) {
    let next = 0;
    await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
      while (next < n) await fn(next++);
    }));
  } else {
    for (let i = 0; i < n; i++) await fn(i);
  }
  const wall = (performance.now() - t0) * 1000;
  const c = process.cpuUsage(c0);
  const m = process.threadCpuUsage(m0);
  report(name, n, m.user + m.system, c.user + c.system, wall);
}

const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-stages-'));
try {
  const { storage, services, app, rootToken } = await composeInProcess(dataDir, createLogger({ level: 'info', destination: silent }));
  const { token } = await seedReader(app, rootToken, 'x'.repeat(64));
  const headers = { authorization: `Bearer ${token}`, 'user-agent': 'autocannon' };

  const bare = Fastify(serverOptions({ logger: createLogger({ level: 'info', destination: silent }), bodyLimit: limits.maxBodyBytes }));
  bare.get('/bare', async () => ({ ok: true }));
  await bare.ready();

  const N = 20_000;
  await measure('bare inject (fastify, no socket)', N, () => bare.inject({ method: 'GET', url: '/bare' }), true);
  await measure('full read inject (audit, 32 concurrent)', N, async () => {
    const r = await app.inject({ method: 'GET', url: '/v1/secrets/BENCH_KEY/values/production', headers });
    if (r.statusCode !== 200) throw new Error(r.body);
  }, true);

  const principal = (await services.authenticator.authenticate(token))!;
  await measure('authenticate (token cache hit)', N, () => services.authenticator.authenticate(token));
  const tenant = (await services.tenants.findByName('default'))!;
  const ctx: TenantContext = {
    tenantId: tenant.id, requestId: 'r', sourceIp: '127.0.0.1', userAgent: 'autocannon',
    actor: { type: 'machine', id: principal.id, name: principal.name, mfaAt: null, credentialId: principal.credentialId, homeTenantId: principal.tenantId },
  };
  const env = await services.tenants.environment(tenant.id, 'production');
  await measure('tenants.environment (cached)', N, () => services.tenants.environment(tenant.id, 'production'));
  const secret = await services.secrets.load(ctx, 'BENCH_KEY');
  // Frozen, as the read path's views are: the authorizer remembers allows only for frozen resources.
  const plain = secretResource(secret);
  const resource = Object.freeze({ ...plain, tags: Object.freeze([...plain.tags]) as string[] });
  await measure('authz.require use (decision cached)', N, () => services.authz.require(ctx, 'use', resource, 'production'));
  const row = (await storage.db.selectFrom('secret_versions').selectAll().where('secret_id', '=', secret.id).executeTakeFirst())!;
  const binding = { tenantId: tenant.id, environmentId: env.id, secretId: secret.id, version: row.version };
  await measure('keyring.openValue (DEK cached)', N, () => services.keyring.openValue(binding, row.ciphertext!, row.wrapped_dek!));
  const event = { tenantId: tenant.id, actor: { type: 'machine' as const, id: principal.id }, action: 'secret.use', resource: { type: 'secret', id: secret.id, name: 'BENCH_KEY' }, environment: 'production', secretVersion: 1, outcome: 'allowed' as const, context: { requestId: 'a0c6a3f4-3e1c-4a51-9d0e-1f7f8e6a5b4c', sourceIp: '127.0.0.1', userAgent: 'autocannon' } };
  await measure('audit.record (group commit, 32 concurrent)', N, () => services.audit.record([event]), true);
  await measure('values.read (service, audit, 32 concurrent)', N, () => services.values.read(ctx, 'BENCH_KEY', 'production'), true);

  await app.close();
  await bare.close();
  await storage.close();
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
