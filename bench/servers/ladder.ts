import { join } from 'node:path';
import { writeFileSync } from 'node:fs';
import { Type } from 'typebox';
import { createLogger } from '../../src/platform/logger.ts';
import { tenantContextOf } from '../../src/http/auth.ts';
import { auditFrom } from '../../src/modules/audit/audit-log.ts';
import { composeInProcess, seedReader } from '../lib/in-process.ts';

/**
 * The rungs of `bench/ladder.ts`: a Keyhold server (dev mode, SQLite, bench/lib/in-process.ts) with extra GET routes that each add one part of the secret read to the one
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
const logger = createLogger({ level: 'info' });
const { storage, services, app, rootToken } = await composeInProcess(dataDir, logger);

const body = { name: 'BENCH_KEY', environment: 'production', version: 1, value: 'x'.repeat(64), createdAt: new Date().toISOString() };
const Params = Type.Object({ name: Type.String({ maxLength: 200 }), env: Type.String({ maxLength: 64 }) });
const schema = {
  params: Params,
  querystring: Type.Object({ version: Type.Optional(Type.Integer({ minimum: 1 })) }, { additionalProperties: false }),
  response: { 200: Type.Object({ name: Type.String(), environment: Type.String(), version: Type.Integer(), value: Type.String(), createdAt: Type.String() }) },
};
const tenant = { auth: 'tenant' as const };
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
const { secretId, token } = await seedReader(app, rootToken, body.value);
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
