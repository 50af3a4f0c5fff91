import type { FastifyInstance } from 'fastify';
import { Writable } from 'node:stream';
import { createServices, createHttpApp, type Services } from '../../src/main/compose.ts';
import { identitySettings, type NotifySettings } from '../../src/config/config.ts';
import { createManualClock } from '../../src/platform/clock.ts';
import { createLogger } from '../../src/platform/logger.ts';
import type { TenantContext } from '../../src/modules/shared/context.ts';
import type { Storage, DialectName } from '../../src/storage/database.ts';
import { createTestDatabase, type TestDatabase } from './databases.ts';
import { createMemoryNotifier } from './notifications.ts';

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
  /** Every notification the services sent (escrow). */
  notifications: ReturnType<typeof createMemoryNotifier>;
  close(): Promise<void>;
}

/** A fully initialised and unsealed Keyhold over a fresh database, with an in-process HTTP app. */
/** `notify`: KEYHOLD_NOTIFY_* channels, beside the memory notifier that stands for the log. */
export async function createHarness(dialect: DialectName, opts: { notify?: NotifySettings } = {}): Promise<Harness> {
  const database = await createTestDatabase(dialect);
  const storage = await database.open();
  const clock = createManualClock(Date.UTC(2026, 5, 1));
  const notifications = createMemoryNotifier();
  const services = createServices({
    config: { dataDir: database.dataDir, limits: TEST_LIMITS, rollbackWindowMs: ROLLBACK_WINDOW_MS, identity: identitySettings(), ...(opts.notify ? { notify: opts.notify } : {}) },
    storage,
    clock,
    notifier: notifications,
  });
  const init = await services.system.initialize({ type: 'shamir', shares: 3, threshold: 2 });
  for (const share of init.shares.slice(0, 2)) await services.system.unseal(share);
  const logs = new LogCapture();
  const app = await createHttpApp(services, { logger: createLogger({ level: 'info', destination: logs }), bodyLimit: TEST_LIMITS.maxBodyBytes });
  const tenant = (await services.tenants.findByName('default'))!;
  const contextFor = (tenantId: string): TenantContext => ({ tenantId, actor: { type: 'root', id: 'test-root', name: 'root' }, requestId: 'test' });
  return {
    database, storage, services, clock, shares: init.shares, rootToken: init.rootToken,
    ctx: contextFor(tenant.id), contextFor, app, logs, notifications,
    async close() {
      await assertNoValueLeaked(services, storage, logs);
      await app.close();
      await storage.close();
      await database.cleanup();
    },
  };
}

/**
 * Run at the end of every harness-based suite, so the whole test suite's traffic is checked: every
 * value stored in this database (decrypted here, while unsealed) must be absent from every audit
 * event and every line the server logged. Values under 6 characters are skipped (they match by chance).
 */
async function assertNoValueLeaked(services: Services, storage: Storage, logs: LogCapture): Promise<void> {
  if (services.seal.isSealed()) return;
  const versions = await storage.db.selectFrom('secret_versions')
    .select(['tenant_id', 'environment_id', 'secret_id', 'version', 'ciphertext', 'wrapped_dek'])
    .where('ciphertext', 'is not', null).execute();
  const values = new Set<string>();
  for (const v of versions) {
    try {
      const plain = await services.keyring.openValue(
        { tenantId: v.tenant_id, environmentId: v.environment_id, secretId: v.secret_id, version: v.version }, v.ciphertext!, v.wrapped_dek!);
      const text = plain.toString('utf8');
      if (text.length >= 6) values.add(text);
    } catch {
      // Rows a tamper test left broken cannot be opened; there is no value to look for.
    }
  }
  const events = JSON.stringify(await storage.db.selectFrom('audit_events').selectAll().execute());
  const logged = logs.text();
  for (const value of values) {
    for (const form of [value, Buffer.from(value).toString('base64'), encodeURIComponent(value)]) {
      if (form.length >= 6 && events.includes(form)) throw new Error(`a secret value (or its encoding) appears in an audit event (${value.length} chars)`);
      if (form.length >= 6 && logged.includes(form)) throw new Error(`a secret value (or its encoding) appears in the server log (${value.length} chars)`);
    }
  }
}
