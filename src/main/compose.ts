import type { FastifyInstance, RouteOptions } from 'fastify';
import type { Config } from '../config/config.ts';
import { createKeyring } from '../crypto/keyring.ts';
import { registerAuth } from '../http/auth.ts';
import { buildHttpServer } from '../http/server.ts';
import { createTokenService } from '../modules/auth/token-service.ts';
import { createInvalidationBus } from '../modules/invalidation/bus.ts';
import { sharedSealedRows } from '../modules/invalidation/sealed-rows.ts';
import { sharedKeyring } from '../modules/invalidation/keyring.ts';
import { createAuthenticator } from '../modules/identity/principal.ts';
import { createCredentialSweep } from '../modules/identity/credential-sweep.ts';
import { createKekRepository } from '../modules/keys/kek-repository.ts';
import { createKeyService } from '../modules/keys/key-service.ts';
import { createKeySelfTest } from '../modules/keys/self-test.ts';
import { keyRoutes } from '../modules/keys/routes.ts';
import { createRetentionJob } from '../modules/secrets/retention.ts';
import { secretRoutes } from '../modules/secrets/routes.ts';
import { createSecretService } from '../modules/secrets/secret-service.ts';
import { createListCursors } from '../modules/secrets/list-cursor.ts';
import { createValueService } from '../modules/secrets/value-service.ts';
import { createSealedRowCache } from '../modules/secrets/sealed-row-cache.ts';
import { createVersionCheckService } from '../modules/secrets/version-check.ts';
import { versionCheckRoutes } from '../modules/secrets/version-routes.ts';
import { createAuditLog } from '../modules/audit/audit-log.ts';
import { createSqliteAppender } from '../modules/audit/sqlite-appender.ts';
import { createCheckpointer } from '../modules/audit/checkpoints.ts';
import { createIdentifierHasher } from '../modules/audit/identifiers.ts';
import { createEventMacKeys } from '../modules/audit/event-mac.ts';
import { createAuditQueryService } from '../modules/audit/query-service.ts';
import { createUsageSummary } from '../modules/audit/usage-summary.ts';
import { auditRoutes } from '../modules/audit/routes.ts';
import { systemRoutes } from '../modules/system/routes.ts';
import { createSealManager } from '../modules/system/seal-manager.ts';
import { createSystemMetaRepository } from '../modules/system/system-meta-repository.ts';
import { createSystemService } from '../modules/system/system-service.ts';
import { createRootGeneration } from '../modules/system/root-generation.ts';
import { createRootGenerationLedger } from '../modules/system/root-generation-ledger.ts';
import { generateRootRoutes } from '../modules/system/generate-root-routes.ts';
import { auditSinkRoutes, type AuditStreamingSlot } from '../modules/audit/sink-routes.ts';
import { tenantRoutes } from '../modules/tenants/routes.ts';
import { createTenantService } from '../modules/tenants/tenant-service.ts';
import { createJwksCache } from '../modules/identity/machines/jwks-cache.ts';
import { createMachineRepository } from '../modules/identity/machines/machine-repository.ts';
import { createMachineService } from '../modules/identity/machines/machine-service.ts';
import { createOidcVerifier } from '../modules/identity/machines/oidc-verifier.ts';
import { machineRoutes } from '../modules/identity/machines/routes.ts';
import { createTokenExchange } from '../modules/identity/machines/token-exchange.ts';
import { createUserModule, userRoutes } from '../modules/identity/users/index.ts';
import { createPolicyEngine } from '../modules/policy/engine.ts';
import { createCedarAuthorizer } from '../modules/policy/cedar-authorizer.ts';
import { createPolicyService } from '../modules/policy/policy-service.ts';
import { policyRoutes } from '../modules/policy/routes.ts';
import { createGrantService } from '../modules/grants/grant-service.ts';
import { grantRoutes } from '../modules/grants/routes.ts';
import { connectorRoutes, createConnectorService } from '../modules/connectors/index.ts';
import { createProxyService, DEFAULT_PROXY_LIMITS, proxyRoutes } from '../modules/proxy/index.ts';
import { createRotationModule, rotationRoutes } from '../modules/rotation/index.ts';
import { dependentsFromConnectors } from '../modules/rotation/dependents.ts';
import { notifierFromSettings } from '../modules/notifications/channels.ts';
import { createMaskingNotifier } from '../modules/notifications/masking.ts';
import { createRecipientResolver } from '../modules/notifications/recipients.ts';
import { createPeopleDirectory } from '../modules/identity/people-directory.ts';
import { createFanoutNotifier } from '../modules/notifications/fanout.ts';
import { guardedFetch } from '../modules/connectors/address-guard.ts';
import { pinnedFetch } from '../modules/connectors/pinned-fetch.ts';
import type { Clock } from '../platform/clock.ts';
import type { Logger } from '../platform/logger.ts';
import type { Storage } from '../storage/database.ts';
import { approverGroupMembers, createEscrowModule, escrowRoutes } from '../modules/escrow/index.ts';
import { automationRoutes, createAutomationModule } from '../modules/automations/index.ts';
import { createKnownValues, createTenantRedactors, trackKnownValues, type KnownValues } from '../modules/redaction/index.ts';
import { findCredentials } from '../modules/leaks/detectors.ts';
import { runScript } from '../modules/scripts/run-script.ts';
import type { Notifier } from '../modules/notifications/notifier.ts';
import { createLogNotifier } from '../modules/notifications/log/index.ts';
import { createLogger } from '../platform/logger.ts';

export type KeyholdConfig = Pick<Config, 'dataDir' | 'limits' | 'rollbackWindowMs' | 'identity'> & Partial<Pick<Config, 'rotation' | 'notify'>>;

/** Wires every service from its module factory. No I/O beyond what the factories do lazily. */
export function createServices(deps: { config: KeyholdConfig; storage: Storage; clock: Clock; notifier?: Notifier; onBackgroundError?: (err: unknown) => void; knownValues?: KnownValues }) {
  const { config, storage, clock } = deps;
  const db = storage.db;
  const seal = createSealManager({ meta: createSystemMetaRepository(db), dataDir: config.dataDir });
  // Revocations, authorization, value and key changes reach the other nodes as they commit (PostgreSQL; started by server.ts).
  const peers = createInvalidationBus({ notifications: storage.notifications, onError: (err) => deps.onBackgroundError?.(err) });
  const keyring = sharedKeyring(createKeyring({ store: createKekRepository(db), root: seal, dekCache: { ttlMs: 60_000, maxEntries: 10_000, now: () => clock.now() } }), peers);
  // Sealed rows only (never plaintext); other nodes drop theirs when told, and within ttlMs if a message is lost.
  const rows = sharedSealedRows(createSealedRowCache({ clock, ttlMs: 1_000, maxEntries: 50_000 }), peers, (tenantId) => redactors.forget(tenantId));
  seal.onSeal(() => rows.clear());
  // On SQLite, group commits are written off the event loop (node:sqlite blocks while it commits).
  const appender = storage.sqlitePath ? createSqliteAppender({ path: storage.sqlitePath }) : undefined;
  if (appender) {
    storage.onClose(() => appender.close());
    seal.onSeal(() => appender.dropKey());
  }
  // Every event written while unsealed carries a MAC under a root-derived key (audit/event-mac.ts).
  const macKeys = createEventMacKeys(seal);
  const audit = createAuditLog({ db, clock, macKeys, afterCommit: storage.afterCommit, ...(appender ? { appender } : {}) });
  const checkpoints = createCheckpointer({ db, root: seal, clock, audit, macKeys });
  const identifiers = createIdentifierHasher(seal);
  const engine = createPolicyEngine();
  const authz = createCedarAuthorizer({ db, engine, clock, audit, identifiers, peers, stepUpWindowMs: config.identity.stepUpWindowMs });
  const tenants = createTenantService({ db, keyring, authz, clock, audit });
  const tokens = createTokenService({ db, dialect: storage.dialect, clock, peers });
  const people = createUserModule({ db, dialect: storage.dialect, keyring, tenants, authz, clock, audit, identifiers, identity: config.identity });
  const authenticator = createAuthenticator([tokens, people.sessions]);
  const credentialSweep = createCredentialSweep({ tables: { sessions: people.sessions, tokens }, clock, graceMs: config.identity.credentialGraceMs });
  const auditUsage = createUsageSummary({ db, dialect: storage.dialect });
  const auditQueries = createAuditQueryService({
    db, authz, log: audit, usage: auditUsage, clock, trustedPublicKey: () => (seal.isSealed() ? null : checkpoints.publicKey()),
    checkpointFloor: () => checkpoints.highestSigned(),
    macKey: () => macKeys.current()?.key ?? null, identifiers,
  });
  const grants = createGrantService({ db, authz, tenants, clock, audit });
  const cursors = createListCursors(seal);
  const secrets = createSecretService({ db, tenants, authz, clock, keyring, rows, audit, identifiers, cursors, maxNameLength: config.limits.maxNameLength });
  // Values this process has seen, for masking its own log lines (the server's logger filters through it).
  const knownValues = deps.knownValues ?? createKnownValues();
  seal.onSeal(() => knownValues.clear());
  const redactors = createTenantRedactors({ db, keyring, clock, seal, known: knownValues });
  // The tenant's values masked out: of text people type (justifications, comments) before it is stored,
  // audited or sent, and of every notification that leaves the process (the log masks its own lines).
  const maskFor = async (tenantId: string) => {
    const redactor = await redactors.forTenant(tenantId);
    return (text: string) => redactor.redact(text);
  };
  const maskText = async (tenantId: string, text: string) => (text === '' ? text : (await maskFor(tenantId))(text));
  const policies = createPolicyService({ db, engine, authz, clock, audit, maskText });
  // A write here rebuilds the tenant's redactor on next use, so a new value is masked at once (other nodes: within its ttl).
  const values = trackKnownValues(createValueService({
    db, keyring, tenants, secrets, authz, rows, audit, clock, maxValueBytes: config.limits.maxValueBytes, rollbackWindowMs: config.rollbackWindowMs, maskText,
  }), knownValues, (tenantId) => redactors.forget(tenantId));
  const versionChecks = createVersionCheckService({ db, tenants, authz, maxNameLength: config.limits.maxNameLength });
  const keys = createKeyService({ db, keyring, authz, clock, rows, audit });
  const selfTest = createKeySelfTest({ db, keyring, audit, clock });
  // One notifier for every module: always the log (server.ts passes its own logger's), and the
  // KEYHOLD_NOTIFY_* channels when configured, so break-glass alerts and rotation news reach both.
  const logNotifier = deps.notifier ?? createLogNotifier({ logger: createLogger({ level: 'info' }) });
  const onNotifyError = (err: unknown) => deps.onBackgroundError?.(err);
  // Connector calls (proxy and health checks) and notification webhooks never reach link-local or cloud metadata addresses.
  const outboundFetch = guardedFetch(pinnedFetch());
  // The SMTP channel mails the people a notification names: users, machines' owners, approver groups' members.
  const mailees = createRecipientResolver(createPeopleDirectory({ db, groupMembers: (tenantId, groups) => approverGroupMembers(db, tenantId, groups) }));
  const notifier = config.notify && (config.notify.webhook || config.notify.smtp)
    ? createFanoutNotifier([logNotifier, createMaskingNotifier(notifierFromSettings(config.notify, onNotifyError, outboundFetch, mailees), maskFor, onNotifyError)], onNotifyError)
    : logNotifier;
  const escrow = createEscrowModule({ db, authz, clock, tenants, secrets, audit, notifier, maskText, stepUpWindowMs: config.identity.stepUpWindowMs });
  const system = createSystemService({
    db, seal, tenants, tokens, audit, dataDir: config.dataDir, auditAppendOnly: storage.auditAppendOnly.guarantee, auditTampered: () => checkpoints.tampered(),
  });
  const rootGenerationLedger = createRootGenerationLedger({ db, dialect: storage.dialect, clock, audit });
  const rootGeneration = createRootGeneration({ db, clock, tokens, meta: createSystemMetaRepository(db), seal, audit, ledger: rootGenerationLedger });
  // Its locks pin connections (PostgreSQL): they go before the pool does.
  storage.onClose(() => rootGeneration.release());
  const retention = createRetentionJob({ db, clock, keyring, rows, rollbackWindowMs: config.rollbackWindowMs });
  const machineRepo = createMachineRepository(db, storage.dialect);
  const machines = createMachineService({ db, repo: machineRepo, clock, authz, tokens, audit, defaultTokenTtlMs: config.identity.machineTokenTtlMs });
  const tokenExchange = createTokenExchange({
    audit, identifiers,
    db, repo: machineRepo, tokens, clock, oidc: createOidcVerifier({ clock, jwks: createJwksCache() }),
  });
  const connectors = createConnectorService({
    db, tenants, secrets, values, authz, audit, clock, fetch: outboundFetch, limits: DEFAULT_PROXY_LIMITS, maxNameLength: config.limits.maxNameLength,
  });
  const proxy = createProxyService({
    connectors, values, audit, identifiers, clock, fetch: outboundFetch, redactors,
    limits: { ...DEFAULT_PROXY_LIMITS, maxRequestBytes: config.limits.maxBodyBytes, maskLookaheadBytes: Math.max(DEFAULT_PROXY_LIMITS.maskLookaheadBytes, 2 * config.limits.maxValueBytes) },
  });
  // Where script steps reach this server, and the CA they trust for it (PEM): set by whoever makes it listen (server.ts, tests).
  const self = { address: null as string | null, ca: null as string | null };
  // Where audit streaming is left by whoever starts it (server.ts, tests), for GET /v1/audit/sinks.
  const auditStreaming: AuditStreamingSlot = { delivery: null };
  const runtime = createAutomationModule({
    db, authz, clock, audit, tenants, secrets, tokens, machines: machineRepo, connectors, proxy, redactors, detectCredentials: findCredentials,
    scripts: { run: runScript }, keyholdAddress: () => self.address, keyholdCa: () => self.ca, onBackgroundError: deps.onBackgroundError ?? (() => undefined),
    isSealed: () => seal.isSealed(),
  });
  const rotation = createRotationModule({
    db, dialect: storage.dialect, clock, keyring, rows, audit, authz, secrets, tenants, values,
    maxValueBytes: config.limits.maxValueBytes, rollbackWindowMs: config.rollbackWindowMs, fetch: outboundFetch,
    ...(config.rotation ? { settings: config.rotation } : {}),
    notifier,
  });
  rotation.useDependents(dependentsFromConnectors(connectors));
  return { clock, self, peers, auditStreaming, redactors, cursors, connectors, proxy, ...runtime, seal, keyring, audit, macKeys, auditQueries, auditUsage, checkpoints, identifiers, tenants, tokens, authenticator, engine, authz, grants, policies, secrets, values, keys, selfTest, system, rootGeneration, rootGenerationLedger, retention, credentialSweep, machines, tokenExchange, ...people, versionChecks, escrow, rotation, rows, notifier, knownValues };
}

export type Services = ReturnType<typeof createServices>;

/** The HTTP application over a set of services. `onRoute` sees each route as it is registered, schemas as amended. */
export async function createHttpApp(services: Services, opts: {
  logger: Logger; bodyLimit: number; https?: { cert: Buffer; key: Buffer } | null; onRoute?: (route: RouteOptions) => void;
}): Promise<FastifyInstance> {
  return buildHttpServer(
    opts,
    [
      systemRoutes({ system: services.system, clock: services.clock }),
      generateRootRoutes({ generation: services.rootGeneration, system: services.system, clock: services.clock }),
      tenantRoutes({ tenants: services.tenants, system: services.system }),
      secretRoutes({ secrets: services.secrets, values: services.values }),
      versionCheckRoutes({ versions: services.versionChecks }),
      keyRoutes({ keys: services.keys, selfTest: services.selfTest }),
      machineRoutes({ machines: services.machines, exchange: services.tokenExchange, seal: services.seal }),
      grantRoutes({ grants: services.grants }),
      policyRoutes({ policies: services.policies }),
      auditRoutes({ queries: services.auditQueries }),
      auditSinkRoutes({ streaming: services.auditStreaming }),
      userRoutes({ users: services.users, totp: services.totp, logins: services.logins, tenants: services.tenants }),
      escrowRoutes({ escrow: services.escrow }),
      automationRoutes({ ...services, isSealed: () => services.seal.isSealed() }),
      connectorRoutes({ connectors: services.connectors }),
      proxyRoutes({ proxy: services.proxy }),
      rotationRoutes({ rotation: services.rotation.service }),
    ],
    (app) => {
      if (opts.onRoute) app.addHook('onRoute', opts.onRoute);
      registerAuth(app, { authenticator: services.authenticator, tenants: services.tenants, seal: services.seal, audit: services.audit });
    },
  );
}
