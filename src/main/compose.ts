import type { FastifyInstance } from 'fastify';
import type { Config } from '../config/config.ts';
import { createKeyring } from '../crypto/keyring.ts';
import { registerAuth } from '../http/auth.ts';
import { buildHttpServer } from '../http/server.ts';
import { createTokenService } from '../modules/auth/token-service.ts';
import { createAuthenticator } from '../modules/identity/principal.ts';
import { createKekRepository } from '../modules/keys/kek-repository.ts';
import { createKeyService } from '../modules/keys/key-service.ts';
import { keyRoutes } from '../modules/keys/routes.ts';
import { createRetentionJob } from '../modules/secrets/retention.ts';
import { secretRoutes } from '../modules/secrets/routes.ts';
import { createSecretService } from '../modules/secrets/secret-service.ts';
import { createValueService } from '../modules/secrets/value-service.ts';
import { systemRoutes } from '../modules/system/routes.ts';
import { createSealManager } from '../modules/system/seal-manager.ts';
import { createSystemMetaRepository } from '../modules/system/system-meta-repository.ts';
import { createSystemService } from '../modules/system/system-service.ts';
import { tenantRoutes } from '../modules/tenants/routes.ts';
import { createTenantService } from '../modules/tenants/tenant-service.ts';
import type { Clock } from '../platform/clock.ts';
import type { Logger } from '../platform/logger.ts';
import type { Storage } from '../storage/database.ts';

export type KeyholdConfig = Pick<Config, 'dataDir' | 'limits' | 'rollbackWindowMs' | 'identity'>;

/** Wires every service from its module factory. No I/O beyond what the factories do lazily. */
export function createServices(deps: { config: KeyholdConfig; storage: Storage; clock: Clock }) {
  const { config, storage, clock } = deps;
  const db = storage.db;
  const seal = createSealManager({ meta: createSystemMetaRepository(db), dataDir: config.dataDir });
  const keyring = createKeyring({ store: createKekRepository(db), root: seal });
  const tenants = createTenantService({ db, keyring, clock });
  const tokens = createTokenService({ db, clock });
  const authenticator = createAuthenticator([tokens]);
  const secrets = createSecretService({ db, tenants, clock, maxNameLength: config.limits.maxNameLength });
  const values = createValueService({
    db, keyring, tenants, secrets, clock, maxValueBytes: config.limits.maxValueBytes, rollbackWindowMs: config.rollbackWindowMs,
  });
  const keys = createKeyService({ db, keyring, clock });
  const system = createSystemService({ db, seal, tenants, tokens, dataDir: config.dataDir });
  const retention = createRetentionJob({ db, clock, rollbackWindowMs: config.rollbackWindowMs });
  return { seal, keyring, tenants, tokens, authenticator, secrets, values, keys, system, retention };
}

export type Services = ReturnType<typeof createServices>;

/** The HTTP application over a set of services. */
export async function createHttpApp(services: Services, opts: { logger: Logger; bodyLimit: number; https?: { cert: Buffer; key: Buffer } | null }): Promise<FastifyInstance> {
  return buildHttpServer(
    opts,
    [
      systemRoutes({ system: services.system }),
      tenantRoutes({ tenants: services.tenants, tokens: services.tokens }),
      secretRoutes({ secrets: services.secrets, values: services.values }),
      keyRoutes({ keys: services.keys }),
    ],
    (app) => registerAuth(app, { authenticator: services.authenticator, tenants: services.tenants, seal: services.seal }),
  );
}
