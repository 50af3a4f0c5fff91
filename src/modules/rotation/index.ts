import { randomUUID } from 'node:crypto';
import type { Kysely } from 'kysely';
import { rotationSettings, type RotationSettings } from '../../config/config.ts';
import type { Keyring } from '../../crypto/keyring.ts';
import type { Clock } from '../../platform/clock.ts';
import type { DialectName } from '../../storage/database.ts';
import type { Database } from '../../storage/schema.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { Notifier } from '../notifications/notifier.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import { createPendingVersions } from '../secrets/pending-versions.ts';
import type { SealedRowCache } from '../secrets/sealed-row-cache.ts';
import type { SecretService } from '../secrets/secret-service.ts';
import type { ValueService } from '../secrets/value-service.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import { noDependents, type DependentsPort } from './dependents.ts';
import { createRotationEngine } from './engine.ts';
import { createLeadership } from './leadership.ts';
import { createRotationService } from './rotation-service.ts';
import { builtinRotators, createRotatorRegistry } from './rotators/registry.ts';
import type { Rotator } from './rotators/types.ts';
import { createRotationScheduler } from './scheduler.ts';

export { rotationRoutes } from './routes.ts';
export { dependentsFromConnectors, noDependents, type DependentsPort } from './dependents.ts';
export { verifyOverlapping, signPayload } from './rotators/hmac/index.ts';

export const DEFAULT_ROTATION_SETTINGS: RotationSettings = rotationSettings();

/** A notifier that drops everything (no channel configured). */
export const silentNotifier: Notifier = { notify: async () => {} };

/** Wires the rotation module: pending versions, rotators, the engine, the service and the scheduler. */
export function createRotationModule(deps: {
  db: Kysely<Database>;
  dialect: DialectName;
  clock: Clock;
  keyring: Pick<Keyring, 'sealerFor' | 'openValue' | 'forgetDeks' | 'invalidate'>;
  rows: Pick<SealedRowCache, 'forgetSecret'>;
  audit: Pick<AuditLog, 'appendInTx' | 'record'>;
  authz: Authorizer;
  secrets: Pick<SecretService, 'load' | 'authorize'>;
  tenants: Pick<TenantService, 'environment'>;
  values: Pick<ValueService, 'rollback' | 'read'>;
  maxValueBytes: number;
  rollbackWindowMs: number;
  settings?: RotationSettings;
  dependents?: DependentsPort;
  notifier?: Notifier;
  rotators?: Rotator[];
  /** What the http rotator calls a tenant's provider with (the server passes its address-guarded fetch). */
  fetch?: typeof fetch;
  onError?: (err: unknown) => void;
}) {
  const settings = deps.settings ?? DEFAULT_ROTATION_SETTINGS;
  const onError = deps.onError ?? (() => {});
  const nodeId = randomUUID();
  const pending = createPendingVersions({ db: deps.db, keyring: deps.keyring, rows: deps.rows, audit: deps.audit, clock: deps.clock, maxValueBytes: deps.maxValueBytes });
  const rotators = createRotatorRegistry(deps.rotators ?? builtinRotators(deps.fetch ? { fetch: deps.fetch } : {}));
  let dependents = deps.dependents ?? noDependents;
  const engine = createRotationEngine({
    db: deps.db, clock: deps.clock, pending, rotators, audit: deps.audit, nodeId, leaseMs: settings.leaseMs, checkConcurrency: settings.checkConcurrency,
    stepTimeoutMs: settings.stepTimeoutMs,
    notifier: deps.notifier ?? silentNotifier, onError,
    // The port can be swapped after wiring (connectors are composed after rotation).
    dependents: { dependents: (...a) => dependents.dependents(...a), healthCheck: (...a) => dependents.healthCheck(...a) },
    resolve: async (ctx, name, environment) => (await deps.values.read(ctx, name, environment)).value,
  });
  const service = createRotationService({
    db: deps.db, clock: deps.clock, authz: deps.authz, secrets: deps.secrets, tenants: deps.tenants, values: deps.values,
    audit: deps.audit, rotators, engine, serverRollbackWindowMs: deps.rollbackWindowMs,
  });
  const leadership = createLeadership({ db: deps.db, dialect: deps.dialect, name: 'rotation-scheduler', owner: nodeId, leaseMs: settings.leaseMs, now: () => deps.clock.now() });
  const scheduler = createRotationScheduler({ db: deps.db, clock: deps.clock, leadership, service, engine, notifier: deps.notifier ?? silentNotifier, holdMs: settings.leaseMs, onError });
  return {
    nodeId, pending, engine, service, scheduler, settings,
    /** Plugs in the connectors' port once they are composed. */
    useDependents(port: DependentsPort): void {
      dependents = port;
    },
  };
}

export type RotationModule = ReturnType<typeof createRotationModule>;
