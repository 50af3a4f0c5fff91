import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError, loadConfig, type Config } from '../config/config.ts';
import { certificateNames, readTlsFiles, type TlsFiles } from '../config/tls-files.ts';
import { createLogger } from '../platform/logger.ts';
import { warmUpNextTick } from '../platform/jit-warm-up.ts';
import { systemClock } from '../platform/clock.ts';
import { openStorage, StorageRefusal, withoutPassword, type Storage } from '../storage/database.ts';
import { DEV_KEY_FILE, DevKeyFileError } from '../crypto/root/dev/index.ts';
import { DEV_ROOT_TOKEN_FILE } from '../modules/system/system-service.ts';
import { createHttpApp, createServices } from './compose.ts';
import { sinksFrom, startAuditStreaming } from '../modules/audit/streaming.ts';
import type { AuditSink } from '../modules/audit/event.ts';
import { createLogNotifier } from '../modules/notifications/log/index.ts';
import { createKnownValues, logLineRedactor } from '../modules/redaction/index.ts';

/** How often new use and reveal events are folded into the usage summary (audit/usage-summary.ts). */
const USAGE_FOLD_MS = 5_000;
/** How often expired unwrapped keys are dropped from memory (keyring.sweep). */
const KEY_SWEEP_MS = 30_000;

function devBanner(config: Config, address: string, created: boolean): string {
  const bar = '!'.repeat(78);
  return [
    bar,
    '!!  KEYHOLD IS RUNNING IN DEV MODE. DO NOT USE THIS FOR REAL SECRETS.',
    `!!  The unseal key is stored IN THE CLEAR at ${join(config.dataDir, DEV_KEY_FILE)}`,
    `!!  The root token is stored IN THE CLEAR at ${join(config.dataDir, DEV_ROOT_TOKEN_FILE)}`,
    created ? '!!  A new dev server was initialised (default tenant, development/staging/production).' : '!!  Unsealed from the dev key.',
    bar,
    '',
    'Log in from another terminal:',
    `  export KEYHOLD_ADDR=${address}`,
    `  export KEYHOLD_TOKEN=$(cat ${join(config.dataDir, DEV_ROOT_TOKEN_FILE)})`,
    '  ./bin/keyhold status',
    '  echo -n "s3cr3t" | ./bin/keyhold secrets set DEMO_API_KEY --env development --owner you@example.com',
    '  ./bin/keyhold secrets get DEMO_API_KEY --env development',
    '',
  ].join('\n');
}

/** Composition root of the server process: config, storage, services, HTTP, background jobs. */
export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<void> {
  const { values: flags } = parseArgs({ args: argv, options: { dev: { type: 'boolean' } }, strict: true });
  let config: Readonly<Config>;
  let sinks: AuditSink[];
  let tls: TlsFiles | null;
  try {
    config = loadConfig(env, flags.dev ? { dev: true } : {});
    // Built now, so a refused sink URL or secret stops start-up like any other bad setting.
    sinks = sinksFrom(config.audit);
    tls = config.tls ? readTlsFiles(config.tls) : null;
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
  await warmUpNextTick();
  const knownValues = createKnownValues();
  const logger = createLogger({ level: config.logLevel, filterLine: logLineRedactor(knownValues) });
  let storage: Storage;
  try {
    storage = await openStorage({ url: config.databaseUrl, ...config.database });
  } catch (err) {
    // Not a crash: the operator migrates as the schema owner, runs the newer version or creates the schema, then starts again.
    if (err instanceof StorageRefusal) {
      process.stderr.write(`keyhold cannot start: KEYHOLD_DATABASE_URL: ${err.message}\n`);
      process.exit(2);
    }
    // Unreachable, refused, or a URL the driver cannot read: name the setting to look at (the data directory when the
    // URL is the default inside it), and never the password, whatever the driver's message holds.
    const setting = env.KEYHOLD_DATABASE_URL === undefined ? 'KEYHOLD_DATA_DIR' : 'KEYHOLD_DATABASE_URL';
    process.stderr.write(`keyhold cannot start: ${setting}: the database cannot be opened: ${withoutPassword((err as Error).message, config.databaseUrl)}\n`);
    process.exit(1);
  }
  if (storage.migrationsApplied.length > 0) logger.info({ migrations: storage.migrationsApplied }, 'database migrations applied');
  if (storage.dialect === 'postgres' && storage.auditAppendOnly.guarantee === 'trigger') {
    logger.warn({ reasons: storage.auditAppendOnly.reasons },
      "audit log is append-only by a trigger only, which KEYHOLD_DATABASE_URL's user can disable: run the server as a role that does not own the schema (keyhold migrate --grant-to, docs/operations.md \"PostgreSQL roles\")");
  }
  // Anything that fails from here on stops the process: a server half started (listening, but
  // without its sinks, checkpoints or shutdown handling) must not keep serving.
  let app: Awaited<ReturnType<typeof createHttpApp>> | null = null;
  try {
    const services = createServices({
      config, storage, clock: systemClock, notifier: createLogNotifier({ logger }), knownValues,
      onBackgroundError: (err) => logger.error({ err }, 'background work failed'),
    });
    // Operators learn of a failing audit log from the log, not only from clients' AUDIT_UNAVAILABLE.
    services.audit.onHealthChange((health) => {
      if (health.writable) logger.info('audit log writable again: audited actions are accepted');
      else logger.error({ cause: health.cause }, 'audit log cannot be written: every audited action is refused (AUDIT_UNAVAILABLE) until it can');
    });

    app = await createHttpApp(services, { logger, bodyLimit: config.limits.maxBodyBytes, https: tls?.https ?? null });
    const server = app;

    let created = false;
    if (config.dev) {
      const status = await services.system.status();
      if (!status.initialized) {
        await services.system.initialize({ type: 'dev', shares: 1, threshold: 1 });
        created = true;
      } else if (!(await services.system.unsealFromDevKey())) {
        throw new Error(`dev mode: this data directory was not initialised in dev mode (or ${DEV_KEY_FILE} is missing)`);
      }
    }

    const address = await server.listen({ host: config.host, port: config.port });
    // Script steps reach this server with their run's token: at its listen address unless told another (KEYHOLD_SCRIPT_ADDR),
    // trusting the CA that issued its certificate, which a private CA's or a self-signed one needs.
    services.self.address = config.scriptAddress ?? address;
    services.self.ca = tls?.scriptCa ?? null;
    if (tls && !config.scriptAddress && !certificateNames(tls.certificate, address)) {
      logger.warn({ address }, 'the TLS certificate does not name the listen address, so script steps reaching it there fail the name check: set KEYHOLD_SCRIPT_ADDR to an https address the certificate names');
    }
    const interrupted = await services.runner.recoverInterrupted();
    if (interrupted > 0) logger.warn({ runs: interrupted }, 'automation runs cut off by a restart were marked failed');
    await services.scheduler.start();
    if (!config.tls) logger.warn({ address }, 'serving plain HTTP on loopback only; configure KEYHOLD_TLS_CERT/KEY for anything else');
    if (config.dev) process.stderr.write(devBanner(config, address, created) + '\n');
    const status = await services.system.status();
    logger.info({ address, initialized: status.initialized, sealed: status.sealed, database: storage.dialect }, 'keyhold listening');

    const sweep = setInterval(() => {
      if (services.seal.isSealed()) return;
      services.retention.sweep().then(
        (n) => n > 0 && logger.info({ destroyed: n }, 'retention: destroyed versions past the rollback window'),
        (err) => logger.error({ err }, 'retention sweep failed'),
      );
      // Sessions and machine tokens dead for longer than KEYHOLD_CREDENTIAL_GRACE; other nodes may sweep too.
      services.credentialSweep.sweep().then(
        (n) => n.sessions + n.tokens > 0 && logger.info({ deleted: n }, 'credential sweep: deleted expired and revoked sessions and tokens'),
        (err) => logger.error({ err }, 'credential sweep failed'),
      );
    }, config.retentionSweepMs);
    sweep.unref();

    // SPEC §13: other nodes' revocations and authorization changes, heard as they commit (PostgreSQL).
    services.peers.start();

    const streaming = startAuditStreaming({ db: storage.db, log: services.audit, sinks, clock: systemClock, logger });
    services.auditStreaming.delivery = streaming;
    // Sign the chain head periodically while unsealed, so a cut tail or rewritten history shows.
    const checkpointTimer = setInterval(() => {
      if (services.seal.isSealed()) return;
      services.checkpoints.checkpoint().catch((err) => logger.error({ err }, 'audit checkpoint failed'));
    }, config.audit.checkpointIntervalMs);
    checkpointTimer.unref();

    // SPEC §2: unwrapped keys live a bounded time. Expired data keys, and the KEKs of tenants idle on this node (a
    // version another node retired among them), leave memory within the data-key lifetime plus this period.
    // generate-root: an attempt out of time leaves memory too, and one a stopped process left open in the audit trail
    // (its start with no end) is recorded as ended, here at start-up once unsealed, at each unseal and on each pass.
    const rootGenerationSweep = () => {
      services.rootGeneration.sweep().then(
        (n) => n > 0 && logger.warn({ attempts: n }, 'generate-root attempts a stopped process left open were recorded as ended (system.generate-root-end, INTERRUPTED)'),
        (err) => logger.error({ err }, 'generate-root sweep failed'),
      );
    };
    rootGenerationSweep();
    services.seal.onUnseal(rootGenerationSweep);
    const keySweep = setInterval(() => {
      services.keyring.sweep();
      rootGenerationSweep();
    }, KEY_SWEEP_MS);
    keySweep.unref();

    // SPEC §2: every tenant KEK, unwrapped afresh, must open a canary sealed under it: at start, at each unseal, then periodically.
    const selfTest = () => {
      if (services.seal.isSealed()) return;
      services.selfTest.run().then(
        (report) => !report.ok && logger.error({ failures: report.failures }, 'key self-test failed: these KEK versions would not open values after a restart'),
        (err) => logger.error({ err }, 'key self-test could not run'),
      );
    };
    selfTest();
    services.seal.onUnseal(selfTest);
    const selfTestTimer = setInterval(selfTest, config.selfTestIntervalMs);
    selfTestTimer.unref();

    // Fold new use/reveal events into the usage summary, so "first and last use" stays a short read.
    // Answers are exact whenever this runs (the unfolded tail is read too); it only bounds that tail.
    let folding: Promise<unknown> | null = null;
    const usageTimer = setInterval(() => {
      folding ??= services.auditUsage.foldAll()
        .catch((err) => logger.error({ err }, 'audit usage fold failed'))
        .finally(() => { folding = null; });
    }, USAGE_FOLD_MS);
    usageTimer.unref();

    // Rotation scheduler: due rotations, expiry, reminders, and recovery of rotations a crashed node left.
    const rotationTimer = setInterval(() => {
      if (services.seal.isSealed()) return;
      services.rotation.scheduler.tick().catch((err) => logger.error({ err }, 'rotation scheduler pass failed'));
    }, config.rotation.tickMs);
    rotationTimer.unref();

    const shutdown = async (signal: string) => {
      logger.info({ signal }, 'shutting down');
      clearInterval(rotationTimer);
      await services.rotation.scheduler.stop();
      clearInterval(sweep);
      services.scheduler.stop();
      // Runs in progress finish first: their script steps read values through this server's HTTP port.
      await services.runner.drain();
      // Then HTTP, still unsealed: no new connection, and a request in flight is answered as usual (a rolling restart
      // must not look like an operator's seal), each connection ending after its answer. Past the grace the rest are
      // cut, so a client that never finishes its request cannot hold the stop up to the request timeout (30 s).
      const cutOff = setTimeout(() => server.server.closeAllConnections(), config.shutdownGraceMs);
      cutOff.unref();
      await server.close();
      clearTimeout(cutOff);
      clearInterval(checkpointTimer);
      clearInterval(selfTestTimer);
      clearInterval(keySweep);
      clearInterval(usageTimer);
      await folding;
      // No request can reach it any more: the attempt in progress ends, and says so in the trail while the log takes it.
      await services.rootGeneration.stop();
      // After the last request: the trail says the stop sealed this node, and the checkpoint covers every event it wrote.
      if (!services.seal.isSealed()) {
        await services.system.recordShutdownSeal(signal).catch((err: Error) => logger.warn({ err: err.message }, 'the seal at shutdown could not be recorded'));
        await services.checkpoints.checkpoint().catch(() => null);
      }
      await streaming?.stop();
      services.seal.seal();
      await storage.close();
      process.exit(0);
    };
    // The first SIGINT or SIGTERM stops gracefully; a second, of either kind, means the operator will not wait for
    // what the stop still waits on (requests within the grace, automation runs): exit now, not 0. Every acknowledged
    // write is already committed, and the audit chain stays whole (its tail is then covered by the next checkpoint).
    let stopping = false;
    const onSignal = (signal: NodeJS.Signals) => {
      if (!stopping) {
        stopping = true;
        void shutdown(signal);
        return;
      }
      process.stderr.write(`keyhold: ${signal} during shutdown: exiting now, without waiting for the stop to finish\n`);
      process.exit(1);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  } catch (err) {
    await app?.close().catch(() => {});
    await storage.close().catch(() => {});
    // Not a crash: the operator restores the key file (or starts a new dev server), then starts again.
    if (err instanceof DevKeyFileError) {
      process.stderr.write(`keyhold cannot start: ${err.message}\n`);
      process.exit(2);
    }
    throw err;
  }
}

if (import.meta.main) {
  main(process.argv.slice(2), process.env).catch((err) => {
    process.stderr.write(`keyhold server failed to start: ${(err as Error).message}\n`);
    process.exit(1);
  });
}
