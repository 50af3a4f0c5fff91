import type { FastifyInstance } from 'fastify';
import { Writable } from 'node:stream';
import { createServices, createHttpApp, type Services } from '../../src/main/compose.ts';
import { identitySettings } from '../../src/config/config.ts';
import { createManualClock } from '../../src/platform/clock.ts';
import { createLogger } from '../../src/platform/logger.ts';
import type { TenantContext } from '../../src/modules/shared/context.ts';
import type { Storage, DialectName } from '../../src/storage/database.ts';
import { createTestDatabase, type TestDatabase } from './databases.ts';

export const TEST_LIMITS = { maxNameLength: 128, maxValueBytes: 65_536, maxBodyBytes: 65_536 * 6 + 65_536 };
export const ROLLBACK_WINDOW_MS = 7 * 24 * 3600 * 1000;

/** Every log line the test server wrote, to scan for canaries. */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.lines.push(chunk.toString('utf8'));
    done();
  }
  text(): string {
    return this.lines.join('');
  }
}

export interface Harness {
  database: TestDatabase;
  storage: Storage;
  services: Services;
  clock: ReturnType<typeof createManualClock>;
  shares: string[];
  rootToken: string;
  /** The default tenant, acted on as root. */
  ctx: TenantContext;
  contextFor(tenantId: string): TenantContext;
  app: FastifyInstance;
  logs: LogCapture;
  close(): Promise<void>;
}

/** A fully initialised and unsealed Keyhold over a fresh database, with an in-process HTTP app. */
export async function createHarness(dialect: DialectName): Promise<Harness> {
  const database = await createTestDatabase(dialect);
  const storage = await database.open();
  const clock = createManualClock(Date.UTC(2026, 5, 1));
  const services = createServices({
    config: { dataDir: database.dataDir, limits: TEST_LIMITS, rollbackWindowMs: ROLLBACK_WINDOW_MS, identity: identitySettings() },
    storage,
    clock,
  });
  const init = await services.system.initialize({ type: 'shamir', shares: 3, threshold: 2 });
  for (const share of init.shares.slice(0, 2)) await services.system.unseal(share);
  const logs = new LogCapture();
  const app = await createHttpApp(services, { logger: createLogger({ level: 'info', destination: logs }), bodyLimit: TEST_LIMITS.maxBodyBytes });
  const tenant = (await services.tenants.findByName('default'))!;
  const contextFor = (tenantId: string): TenantContext => ({ tenantId, actor: { type: 'root', id: 'test-root', name: 'root' }, requestId: 'test' });
  return {
    database, storage, services, clock, shares: init.shares, rootToken: init.rootToken,
    ctx: contextFor(tenant.id), contextFor, app, logs,
    async close() {
      await app.close();
      await storage.close();
      await database.cleanup();
    },
  };
}
