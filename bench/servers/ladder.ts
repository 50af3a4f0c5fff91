import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { Type } from 'typebox';
import { identitySettings, loadConfig } from '../../src/config/config.ts';
import { createHttpApp, createServices } from '../../src/main/compose.ts';
import { systemClock } from '../../src/platform/clock.ts';
import { createLogger } from '../../src/platform/logger.ts';
import { openStorage } from '../../src/storage/database.ts';
import { tenantContextOf } from '../../src/http/auth.ts';
import { auditFrom } from '../../src/modules/audit/audit-log.ts';

/**
 * The rungs of `bench/ladder.ts`: a Keyhold server (dev mode, SQLite, composed as in
 * bench/stages.ts) with extra GET routes that each add one part of the secret read to the one
 * before, all answering the read's body shape with a constant:
 *   /ladder/plain   a route in Keyhold's app (its hooks, error handler, logger), no schema, no auth
 *   /ladder/schema  + the read's params, querystring and response schemas
 *   /ladder/auth    + tenant authentication (token, tenant, request context)
 *   /ladder/audit   + one durable `secret.use` event (group commit), as the read records
 * and the real read, `/v1/secrets/BENCH_KEY/values/production`, is the last rung. Prints a
 * "ladder listening" line with the address; the machine's token is in <data dir>/machine-token.
 */
const dataDir = process.argv[2];
if (!dataDir) throw new Error('usage: ladder.ts <empty data directory>');
const { limits } = loadConfig({});
const storage = await openStorage({ url: `sqlite:${join(dataDir, 'keyhold.db')}` });
const services = createServices({
  config: { dataDir, limits, rollbackWindowMs: 7 * 86_400_000, identity: identitySettings() },
  storage, clock: systemClock,
});
const { rootToken } = await services.system.initialize({ type: 'dev', shares: 1, threshold: 1 });
const logger = createLogger({ level: 'info' });
const app = await createHttpApp(services, { logger, bodyLimit: limits.maxBodyBytes });

const body = { name: 'BENCH_KEY', environment: 'production', version: 1, value: 'x'.repeat(64), createdAt: new Date().toISOString() };
const Params = Type.Object({ name: Type.String({ maxLength: 200 }), env: Type.String({ maxLength: 64 }) });
const schema = {
  params: Params,
  querystring: Type.Object({ version: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false }),
  response: { 200: Type.Object({ name: Type.String(), environment: Type.String(), version: Type.Integer(), value: Type.String(), createdAt: Type.String() }) },
};
const tenant = { auth: 'tenant' as const };
let secretId: string | null = null;
await app.register(async (r) => {
  r.get('/ladder/plain/:name/values/:env', async () => body);
  r.get('/ladder/schema/:name/values/:env', { schema }, async () => body);
  r.get('/ladder/auth/:name/values/:env', { schema, config: tenant }, async () => body);
  r.get('/ladder/audit/:name/values/:env', { schema, config: tenant }, async (req) => {
    // The event the read records, built the way the read builds it.
    await services.audit.record([{
      ...auditFrom(tenantContextOf(req)), action: 'secret.use', resource: { type: 'secret', id: secretId, name: 'BENCH_KEY' },
      environment: 'production', secretVersion: 1, outcome: 'allowed',
    }]);
    return body;
  });
});
// The bench's reader, as in bench/lib/keyhold.ts: a machine holding builder in production.
const call = async (method: 'GET' | 'POST' | 'PUT', url: string, payload?: object, token = rootToken) => {
  const res = await app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });
  if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
  return res.json() as Record<string, string>;
};
secretId = (await call('POST', '/v1/secrets', { name: 'BENCH_KEY', owner: 'bench' })).id ?? null;
await call('PUT', '/v1/secrets/BENCH_KEY/values/production', { value: body.value });
const machine = await call('POST', '/v1/machines', { name: 'bench-runner', kind: 'client_secret' });
await call('POST', '/v1/grants', { principalType: 'machine', principalId: machine.id!, role: 'builder', environments: ['production'] });
const exchanged = await app.inject({ method: 'POST', url: '/v1/auth/token', payload: { grant_type: 'client_credentials', client_id: machine.clientId!, client_secret: machine.clientSecret! } });
const token = (exchanged.json() as { access_token: string }).access_token;
if ((await call('GET', '/v1/secrets/BENCH_KEY/values/production', undefined, token)).value !== body.value) throw new Error('the value read back differs');
// The token goes to a file the driver reads, never to the log.
writeFileSync(join(dataDir, 'machine-token'), token, { mode: 0o600 });
const address = await app.listen({ host: '127.0.0.1', port: 0 });
logger.info({ address }, 'ladder listening');

const shutdown = async () => {
  await app.close();
  await storage.close();
  process.exit(0);
};
process.once('SIGTERM', () => void shutdown());
process.once('SIGINT', () => void shutdown());
