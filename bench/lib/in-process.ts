import { join } from 'node:path';
import { identitySettings, loadConfig } from '../../src/config/config.ts';
import { createHttpApp, createServices } from '../../src/main/compose.ts';
import { systemClock } from '../../src/platform/clock.ts';
import type { Logger } from '../../src/platform/logger.ts';
import { openStorage } from '../../src/storage/database.ts';
import { ENVIRONMENT, SECRET_NAME } from './keyhold.ts';

/**
 * A Keyhold in this process (dev mode, SQLite in `dataDir`, default limits): its services and HTTP
 * app, not listening, for benches that take the read apart (bench/stages.ts, bench/servers/ladder.ts).
 */
export async function composeInProcess(dataDir: string, logger: Logger) {
  const { limits } = loadConfig({});
  const storage = await openStorage({ url: `sqlite:${join(dataDir, 'keyhold.db')}` });
  const services = createServices({
    config: { dataDir, limits, rollbackWindowMs: 7 * 86_400_000, identity: identitySettings() },
    storage, clock: systemClock,
  });
  const { rootToken } = await services.system.initialize({ type: 'dev', shares: 1, threshold: 1 });
  const app = await createHttpApp(services, { logger, bodyLimit: limits.maxBodyBytes });
  return { limits, storage, services, app, rootToken };
}

/**
 * The bench's reader, as bench/lib/keyhold.ts makes it over HTTP: `value` written to the bench
 * secret in production, a machine holding `builder` there, its client credentials exchanged for a
 * token, and the value read back with it.
 */
export async function seedReader(app: Awaited<ReturnType<typeof composeInProcess>>['app'], rootToken: string, value: string): Promise<{ secretId: string; token: string }> {
  const call = async (method: 'GET' | 'POST' | 'PUT', url: string, payload?: object, token = rootToken) => {
    const res = await app.inject({ method, url, headers: { authorization: `Bearer ${token}` }, ...(payload ? { payload } : {}) });
    if (res.statusCode >= 300) throw new Error(`${method} ${url}: ${res.statusCode} ${res.body}`);
    return res.json() as Record<string, string>;
  };
  const secretId = (await call('POST', '/v1/secrets', { name: SECRET_NAME, owner: 'bench' })).id!;
  await call('PUT', `/v1/secrets/${SECRET_NAME}/values/${ENVIRONMENT}`, { value });
  const machine = await call('POST', '/v1/machines', { name: 'bench-runner', kind: 'client_secret' });
  await call('POST', '/v1/grants', { principalType: 'machine', principalId: machine.id!, role: 'builder', environments: [ENVIRONMENT] });
  const exchanged = await app.inject({ method: 'POST', url: '/v1/auth/token', payload: { grant_type: 'client_credentials', client_id: machine.clientId!, client_secret: machine.clientSecret! } });
  const token = (exchanged.json() as { access_token: string }).access_token;
  if ((await call('GET', `/v1/secrets/${SECRET_NAME}/values/${ENVIRONMENT}`, undefined, token)).value !== value) throw new Error('the value read back differs');
  return { secretId, token };
}
