import type { FastifyInstance } from 'fastify';
import type { KyselyPlugin } from 'kysely';
import { Writable } from 'node:stream';
import { createServices, createHttpApp, type Services } from '../../src/main/compose.ts';
import { identitySettings, type NotifySettings } from '../../src/config/config.ts';
import { createManualClock } from '../../src/platform/clock.ts';
import { createLogger } from '../../src/platform/logger.ts';
import type { TenantContext } from '../../src/modules/shared/context.ts';
import type { Storage, DialectName } from '../../src/storage/database.ts';
import type { StatementBounds } from '../../src/storage/postgres/postgres-dialect.ts';
import { createTestDatabase, type TestDatabase } from './databases.ts';
import { createMemoryNotifier } from './notifications.ts';
import { auditTexts, createCanaryRegistry, describeFindings, type CanaryRegistry } from './canaries.ts';
import { recordingKnownValues, tapInject, tapServices } from './credential-taps.ts';
import { createMacWalk, type MacFinding } from '../../src/modules/audit/event-mac.ts';
import { keyedFrom } from '../../src/modules/audit/keyed-from.ts';
import { fromRow } from '../../src/modules/audit/audit-log.ts';

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
  /** Every credential this harness saw; `close` fails if any is in the audit log, the log or an error body. Tests add their own. */
  canaries: CanaryRegistry;
  /** Every error body (status >= 400) the in-process app answered. */
  errorBodies: Array<{ where: string; text: string }>;
  close(): Promise<void>;
}

/** A fully initialised and unsealed Keyhold over a fresh database, with an in-process HTTP app. */
/** `notify`: KEYHOLD_NOTIFY_* channels, beside the memory notifier that stands for the log. */
/** `bounds`: PostgreSQL's lock and statement timeouts, if not the server's defaults (KEYHOLD_DB_*). */
export async function createHarness(dialect: DialectName, opts: { notify?: NotifySettings; plugins?: KyselyPlugin[]; bounds?: StatementBounds } = {}): Promise<Harness> {
  const database = await createTestDatabase(dialect);
  const opened = await database.open(opts.bounds);
  // Plugins (race tests' barriers and pauses) see every query the services make; the harness's own `storage.db` too.
  const storage = { ...opened, db: (opts.plugins ?? []).reduce((db, plugin) => db.withPlugin(plugin), opened.db) };
  const clock = createManualClock(Date.UTC(2026, 5, 1));
  const notifications = createMemoryNotifier();
  const canaries = createCanaryRegistry();
  canaries.add('webhook secret', opts.notify?.webhook?.secret);
  canaries.add('password', opts.notify?.smtp?.password);
  const services = createServices({
    config: { dataDir: database.dataDir, limits: TEST_LIMITS, rollbackWindowMs: ROLLBACK_WINDOW_MS, identity: identitySettings(), ...(opts.notify ? { notify: opts.notify } : {}) },
    storage,
    clock,
    notifier: notifications,
    knownValues: recordingKnownValues(canaries),
  });
  tapServices(services, canaries);
  const init = await services.system.initialize({ type: 'shamir', shares: 3, threshold: 2 });
  for (const share of init.shares.slice(0, 2)) await services.system.unseal(share);
  const logs = new LogCapture();
  const app = await createHttpApp(services, { logger: createLogger({ level: 'info', destination: logs }), bodyLimit: TEST_LIMITS.maxBodyBytes });
  const errorBodies: Harness['errorBodies'] = [];
  tapInject(app, canaries, errorBodies);
  const tenant = (await services.tenants.findByName('default'))!;
  const contextFor = (tenantId: string): TenantContext => ({ tenantId, actor: { type: 'root', id: 'test-root', name: 'root' }, requestId: 'test' });
  return {
    database, storage, services, clock, shares: init.shares, rootToken: init.rootToken,
    ctx: contextFor(tenant.id), contextFor, app, logs, notifications, canaries, errorBodies,
    async close() {
      try {
        await assertNoCredentialLeaked({ services, storage, logs, canaries, errorBodies });
        await assertEveryEventKeyed({ services, storage, shares: init.shares });
      } finally {
        await app.close();
        await storage.close();
        await database.cleanup();
      }
    },
  };
}

/**
 * Run when every harness closes, so every path that records an event is checked: each event after
 * the MAC start is covered by a correct commit MAC, or is an action recorded while sealed (audit/event-mac.ts).
 * A path that wrote an unkeyed event would make the log fail verify. Tests that forge events remove
 * their forgeries before closing.
 */
export async function assertEveryEventKeyed(h: Pick<Harness, 'services' | 'storage' | 'shares'>): Promise<void> {
  // A suite that left its server sealed: unseal it to get the key (every event must be checked).
  if (h.services.seal.isSealed()) for (const share of h.shares.slice(0, 2)) await h.services.system.unseal(share);
  const key = h.services.macKeys.current()!.key;
  const from = await keyedFrom(h.storage.db);
  const rows = await h.storage.db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
  const walk = createMacWalk(key, from ?? 0);
  const finding = rows.reduce<MacFinding | null>((found, r) => found ?? walk.push({ ...fromRow(r), mac: r.mac }), null) ?? walk.end();
  if (finding) throw new Error(`an audit event is not the server's own: ${finding.problem}`);
}

/**
 * Run when every harness closes, so the whole test suite's traffic is checked: no credential this
 * harness saw (see canaries.ts), and no value still stored in the database (decrypted here, while
 * unsealed: values written by paths the taps do not see, such as rotation), appears in any column of
 * any audit event or checkpoint, any line the server logged, or any error body it sent.
 */
export async function assertNoCredentialLeaked(h: Pick<Harness, 'services' | 'storage' | 'logs' | 'canaries' | 'errorBodies'>): Promise<void> {
  const { services, storage, canaries } = h;
  if (!services.seal.isSealed()) {
    const versions = await storage.db.selectFrom('secret_versions')
      .select(['tenant_id', 'environment_id', 'secret_id', 'version', 'ciphertext', 'wrapped_dek'])
      .where('ciphertext', 'is not', null).execute();
    for (const v of versions) {
      try {
        const plain = await services.keyring.openValue(
          { tenantId: v.tenant_id, environmentId: v.environment_id, secretId: v.secret_id, version: v.version }, v.ciphertext!, v.wrapped_dek!);
        canaries.add('secret value', plain.toString('utf8'));
      } catch {
        // Rows a tamper test left broken cannot be opened; there is no value to look for.
      }
    }
  }
  const findings = canaries.findIn([
    ...(await auditTexts(storage)),
    ...h.logs.lines.map((text, i) => ({ where: `the server log (line ${i + 1})`, text })),
    ...h.errorBodies,
  ]);
  if (findings.length > 0) throw new Error(describeFindings(findings));
}
