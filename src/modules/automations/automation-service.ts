import type { Kysely } from 'kysely';
import { constantTimeEqual, randomToken } from '../../crypto/bytes.ts';
import { fail, isKeyholdError } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import { isUniqueViolation } from '../../storage/db-errors.ts';
import type { AutomationsTable, Database } from '../../storage/schema.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import { commitStaged, type StagedWrite } from '../audit/staged-write.ts';
import { hashToken } from '../auth/token-service.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import { secretResource, type SecretService } from '../secrets/secret-service.ts';
import type { TenantContext } from '../shared/context.ts';
import { createAutomationRepository } from './automation-repository.ts';
import { createRunAsCheck } from './run-as.ts';
import type { Automation, AutomationDefinition } from './types.ts';
import { checkDefinition, checkShape, connectorsReferenced, secretsReferenced, type CredentialDetector } from './validate.ts';

export const WEBHOOK_TOKEN_PREFIX = 'whk_';
const TENANT = { type: 'tenant' } as const;
const iso = (ms: number) => new Date(ms).toISOString();

export function toAutomation(row: AutomationsTable): Automation {
  return {
    id: row.id, definition: JSON.parse(row.definition) as AutomationDefinition, revision: row.revision,
    createdAt: iso(row.created_at), createdBy: row.created_by, updatedAt: iso(row.updated_at),
  };
}

/** A connector as automations see it: where it lives and which secrets power it. */
export interface ConnectorSummary {
  name: string;
  environment: string;
  type: string;
  slots: Record<string, string>;
  personal: boolean;
}

/** What automations need of connectors (src/modules/connectors): the tenant's connectors. */
export interface ConnectorDirectory {
  list(ctx: TenantContext): Promise<ConnectorSummary[]>;
}

/** A connector an import is about to write (into `environment`): checked as if it were already there. */
export type IncomingConnector = Pick<ConnectorSummary, 'name' | 'environment' | 'slots'>;

/** What a save made: the automation and, for a new webhook trigger, its token (shown this once). */
export interface SavedAutomation {
  automation: Automation;
  webhookToken: string | null;
}

/** Told after every change (once it has committed), so triggers (schedules) follow the stored definitions. */
export type AutomationListener = (tenantId: string, automation: Automation | null, name: string) => void;

/**
 * Automation definitions: saved only when every reference resolves and no literal credential is in
 * them; versioned by revision (check-and-set); each change audited in its transaction.
 *
 * Authoring (save, delete, run by hand) needs `use` on every secret the definition references and on
 * the secrets behind its connectors, in every environment it may run in; a definition with script
 * steps also needs environment-wide `use` (a script can ask for any name its run identity may use).
 * It also needs the entitlement to act as the run identity (`runAs`): in every one of those
 * environments, every permission that identity holds there (see run-as.ts), so no author borrows
 * a machine's rights.
 */
export function createAutomationService(deps: {
  db: Kysely<Database>;
  authz: Authorizer;
  secrets: Pick<SecretService, 'load' | 'authorize'>;
  connectors: ConnectorDirectory;
  detectCredentials: CredentialDetector;
  audit: Pick<AuditLog, 'appendInTx'>;
  clock: Clock;
}) {
  const { db, authz, secrets, connectors, detectCredentials, audit, clock } = deps;
  const repo = createAutomationRepository(db);
  const runAs = createRunAsCheck({ db, authz });
  const listeners: AutomationListener[] = [];

  /** Checks `list` before looking: a caller who may not list the tenant learns nothing about which names exist. */
  async function load(ctx: TenantContext, name: string): Promise<AutomationsTable> {
    await authz.require(ctx, 'list', TENANT);
    const row = await repo.find(ctx.tenantId, name);
    if (!row) fail('AUTOMATION_NOT_FOUND', `automation "${name.slice(0, 64)}" does not exist`);
    return row;
  }

  /** The permission check behind save, delete and manual runs (see the service comment). */
  async function requireAuthoring(ctx: TenantContext, def: AutomationDefinition, environments: readonly string[], incoming: readonly IncomingConnector[] = []): Promise<void> {
    await authoringOver(ctx, def, environments, await connectorsWith(ctx, incoming));
  }

  /** `requireAuthoring` over a connector list already read (a save reads it once for both its checks). */
  async function authoringOver(ctx: TenantContext, def: AutomationDefinition, environments: readonly string[], seen: readonly IncomingConnector[]): Promise<void> {
    const names = new Set(secretsReferenced(def));
    const used = new Set(connectorsReferenced(def));
    for (const c of seen) {
      if (used.has(c.name) && environments.includes(c.environment)) for (const n of Object.values(c.slots)) names.add(n);
    }
    const resources = await Promise.all([...names].map(async (n) => secretResource(await secrets.load(ctx, n))));
    for (const env of environments) {
      for (const resource of resources) await authz.require(ctx, 'use', resource, env);
      if (def.steps.some((s) => s.type === 'script')) await authz.require(ctx, 'use', TENANT, env);
    }
    await runAs.require(ctx, def.runAs, environments);
  }

  /** The connectors the caller sees, as they will be once `incoming` (an import's) replace those of the same environment and name. */
  async function connectorsWith(ctx: TenantContext, incoming: readonly IncomingConnector[]): Promise<IncomingConnector[]> {
    const replaced = (c: IncomingConnector) => incoming.some((i) => i.name === c.name && i.environment === c.environment);
    return [...(await connectors.list(ctx)).filter((c) => !replaced(c)), ...incoming];
  }

  /**
   * The tenant's secret names minus those the definition names that the caller may not even list:
   * such a name is refused as unknown, exactly like one that does not exist, so saving a definition
   * cannot probe which names exist (the authorizer audits each refusal).
   */
  async function secretsVisibleTo(ctx: TenantContext, def: AutomationDefinition, all: ReadonlySet<string>): Promise<Set<string>> {
    const visible = new Set(all);
    for (const name of secretsReferenced(def)) {
      if (!visible.has(name)) continue;
      try {
        await secrets.authorize(ctx, 'list', secretResource(await secrets.load(ctx, name)));
      } catch (err) {
        if (!isKeyholdError(err) || err.code !== 'SECRET_NOT_FOUND') throw err;
        visible.delete(name);
      }
    }
    return visible;
  }

  /** Every save-time check; `incoming` are connectors an import is about to write with it. */
  async function validated(ctx: TenantContext, def: AutomationDefinition, incoming: readonly IncomingConnector[] = []): Promise<void> {
    checkShape(def);
    const catalog = await repo.catalog(ctx.tenantId);
    const seen = await connectorsWith(ctx, incoming);
    checkDefinition(def, { ...catalog, secrets: await secretsVisibleTo(ctx, def, catalog.secrets), connectors: new Set(seen.map((c) => c.name)) }, detectCredentials);
    await authoringOver(ctx, def, def.environments, seen);
  }

  const event = (ctx: TenantContext, action: string, row: Pick<AutomationsTable, 'id' | 'name' | 'revision'>) => [{
    ...auditFrom(ctx), action, resource: { type: 'automation', id: row.id, name: row.name }, outcome: 'allowed' as const,
    context: { ...auditFrom(ctx).context, revision: String(row.revision) },
  }];

  const notify = (tenantId: string, automation: Automation | null, name: string) => {
    for (const l of listeners) l(tenantId, automation, name);
  };

  /** Every check of a create, then the create itself, staged for the caller's transaction (see StagedWrite). */
  async function prepareCreate(ctx: TenantContext, def: AutomationDefinition, opts: { incoming?: readonly IncomingConnector[] } = {}): Promise<StagedWrite<SavedAutomation>> {
    await validated(ctx, def, opts.incoming);
    const now = clock.now();
    const webhookToken = def.trigger.type === 'webhook' ? WEBHOOK_TOKEN_PREFIX + randomToken(32) : null;
    const row: AutomationsTable = {
      id: newId(), tenant_id: ctx.tenantId, name: def.name, definition: JSON.stringify(def), revision: 1,
      webhook_token_hash: webhookToken ? hashToken(webhookToken) : null, created_at: now, created_by: ctx.actor.id, updated_at: now,
    };
    const exists = () => fail('AUTOMATION_EXISTS', `automation "${def.name}" already exists`);
    return {
      async write(trx) {
        if (await repo.find(ctx.tenantId, def.name, trx)) exists();
        try {
          await repo.insert(row, trx);
        } catch (err) {
          // Created by a writer whose transaction committed after this one's read (PostgreSQL).
          if (isUniqueViolation(err)) exists();
          throw err;
        }
        return event(ctx, 'automation.create', row);
      },
      committed() {
        const automation = toAutomation(row);
        notify(ctx.tenantId, automation, def.name);
        return { automation, webhookToken };
      },
    };
  }

  /** Every check of an update (`revision` must still be current), then the update itself, staged for the caller's transaction. */
  async function prepareUpdate(ctx: TenantContext, name: string, def: AutomationDefinition, revision: number, opts: { incoming?: readonly IncomingConnector[] } = {}): Promise<StagedWrite<SavedAutomation>> {
    if (def.name !== name) fail('VALIDATION_FAILED', 'name: an automation cannot be renamed; create a new one');
    const current = await load(ctx, name);
    const stale = () => fail('CAS_MISMATCH', `automation "${name}" is not at revision ${revision}; reload it and try again`);
    // The authoring check below is of this revision, so only this revision may be replaced.
    if (current.revision !== revision) stale();
    const before = toAutomation(current).definition;
    await requireAuthoring(ctx, before, before.environments);
    await validated(ctx, def, opts.incoming);
    const now = clock.now();
    const becameWebhook = def.trigger.type === 'webhook' && current.webhook_token_hash === null;
    const webhookToken = becameWebhook ? WEBHOOK_TOKEN_PREFIX + randomToken(32) : null;
    const patch = { definition: JSON.stringify(def), updated_at: now, webhook_token_hash: def.trigger.type !== 'webhook' ? null : webhookToken ? hashToken(webhookToken) : current.webhook_token_hash };
    const next: AutomationsTable = { ...current, ...patch, revision: revision + 1 };
    return {
      async write(trx) {
        if (!(await repo.update(ctx.tenantId, current.id, revision, patch, trx))) stale();
        return event(ctx, 'automation.update', next);
      },
      committed() {
        // The row as this write left it: read back, it might already be a later writer's.
        const automation = toAutomation(next);
        notify(ctx.tenantId, automation, name);
        return { automation, webhookToken };
      },
    };
  }

  const service = {
    load,
    requireAuthoring,
    prepareCreate,
    prepareUpdate,

    onChange(listener: AutomationListener): void {
      listeners.push(listener);
    },

    /** Saves a new automation; a webhook trigger gets its token, shown this once. */
    async create(ctx: TenantContext, def: AutomationDefinition): Promise<SavedAutomation> {
      const [saved] = await commitStaged(db, audit, [await prepareCreate(ctx, def)]);
      return saved!;
    },

    /** Replaces a definition (same name) if `revision` is still current. */
    async update(ctx: TenantContext, name: string, def: AutomationDefinition, revision: number): Promise<SavedAutomation> {
      const [saved] = await commitStaged(db, audit, [await prepareUpdate(ctx, name, def, revision)]);
      return saved!;
    },

    async get(ctx: TenantContext, name: string): Promise<Automation> {
      return toAutomation(await load(ctx, name));
    },

    async list(ctx: TenantContext): Promise<Automation[]> {
      await authz.require(ctx, 'list', TENANT);
      return (await repo.list(ctx.tenantId)).map(toAutomation);
    },

    async remove(ctx: TenantContext, name: string): Promise<void> {
      const row = await load(ctx, name);
      const def = toAutomation(row).definition;
      await requireAuthoring(ctx, def, def.environments);
      await db.transaction().execute(async (trx) => {
        // Only the revision the authoring check saw: one saved meanwhile may act as a machine the caller could not.
        if (!(await repo.remove(ctx.tenantId, row.id, trx, row.revision))) {
          if (await repo.find(ctx.tenantId, name, trx)) fail('CAS_MISMATCH', `automation "${name}" changed meanwhile; try again`);
          fail('AUTOMATION_NOT_FOUND', `automation "${name}" does not exist`);
        }
        await audit.appendInTx(trx, event(ctx, 'automation.delete', row));
      });
      notify(ctx.tenantId, null, name);
    },

    /** A new webhook token (the old one stops working at once). */
    async rotateWebhookToken(ctx: TenantContext, name: string): Promise<{ automation: Automation; webhookToken: string }> {
      const row = await load(ctx, name);
      const def = toAutomation(row).definition;
      if (def.trigger.type !== 'webhook') fail('VALIDATION_FAILED', `automation "${name}" has no webhook trigger`);
      await requireAuthoring(ctx, def, def.environments);
      const webhookToken = WEBHOOK_TOKEN_PREFIX + randomToken(32);
      await db.transaction().execute(async (trx) => {
        const ok = await repo.update(ctx.tenantId, row.id, row.revision, { definition: row.definition, updated_at: clock.now(), webhook_token_hash: hashToken(webhookToken) }, trx);
        if (!ok) fail('CAS_MISMATCH', `automation "${name}" changed meanwhile; try again`);
        await audit.appendInTx(trx, event(ctx, 'automation.webhook_token', { ...row, revision: row.revision + 1 }));
      });
      return { automation: toAutomation((await repo.find(ctx.tenantId, name))!), webhookToken };
    },

    /** The automation a webhook call is for, if the token matches (constant time); null otherwise. */
    async byWebhook(automationId: string, token: string): Promise<AutomationsTable | null> {
      if (!token.startsWith(WEBHOOK_TOKEN_PREFIX) || token.length > 100 || automationId.length > 64) return null;
      const row = await db.selectFrom('automations').selectAll().where('id', '=', automationId).executeTakeFirst();
      const given = Buffer.from(hashToken(token));
      const stored = Buffer.from(row?.webhook_token_hash ?? '-'.repeat(given.length));
      return constantTimeEqual(given, stored) && row?.webhook_token_hash ? row : null;
    },
  };
  return service;
}

export type AutomationService = ReturnType<typeof createAutomationService>;
