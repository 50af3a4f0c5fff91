import type { Kysely } from 'kysely';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import type { Database } from '../../storage/schema.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import { secretResource, type SecretService } from '../secrets/secret-service.ts';
import type { ValueService } from '../secrets/value-service.ts';
import { SECRET_NAME } from '../shared/names.ts';
import type { TenantContext } from '../shared/context.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import { createConnectorRepository, type ConnectorRow } from './connector-repository.ts';
import { connectorType } from './registry.ts';
import type { Connector, ConnectorType, ConnectorTypeName, HealthResult } from './types.ts';

export const CONNECTOR_NAME = /^[A-Za-z][A-Za-z0-9_.-]{0,63}$/;
const TENANT = { type: 'tenant' } as const;
const iso = (ms: number) => new Date(ms).toISOString();

export interface ConnectorInput {
  name: string;
  environment: string;
  type: string;
  settings: Record<string, unknown>;
  slots: Record<string, string>;
  owner: string;
}

/** A connector ready to act: its type, parsed settings and row. */
export interface LoadedConnector {
  row: ConnectorRow;
  type: ConnectorType<unknown>;
  settings: unknown;
  slots: Record<string, string>;
}

/** A person owns a secret when its owner is `user:<name>` or the username of a user of the tenant. */
function personalOwner(owner: string | undefined, usernames: Set<string>): boolean {
  return owner !== undefined && (owner.startsWith('user:') || usernames.has(owner));
}

/**
 * Connectors: where a credential may go is part of the connector, so creating, changing or
 * deleting one needs `write` on every secret it binds (old and new) in its environment; a builder
 * who may only `use` a secret cannot point it anywhere. Health checks need `use` on those secrets.
 */
export function createConnectorService(deps: {
  db: Kysely<Database>;
  authz: Authorizer;
  tenants: Pick<TenantService, 'environment'>;
  secrets: Pick<SecretService, 'load'>;
  values: Pick<ValueService, 'read'>;
  audit: Pick<AuditLog, 'appendInTx' | 'record'>;
  clock: Clock;
  fetch?: typeof fetch;
  healthTimeoutMs?: number;
}) {
  const { db, authz, tenants, secrets, values, audit, clock } = deps;
  const doFetch = deps.fetch ?? globalThis.fetch;
  const healthTimeoutMs = deps.healthTimeoutMs ?? 10_000;
  const repo = createConnectorRepository(db);

  function toConnector(row: ConnectorRow, personal: boolean): Connector {
    return {
      id: row.id, name: row.name, environment: row.environment, type: row.type as ConnectorTypeName,
      settings: JSON.parse(row.settings) as Record<string, unknown>, slots: JSON.parse(row.slots) as Record<string, string>,
      owner: row.owner, personal, createdAt: iso(row.created_at), updatedAt: iso(row.updated_at), createdBy: row.created_by, revision: row.revision,
    };
  }

  async function withPersonal(tenantId: string, rows: ConnectorRow[]): Promise<Connector[]> {
    const { owners, usernames } = await repo.owners(tenantId);
    return rows.map((r) => toConnector(r, Object.values(JSON.parse(r.slots) as Record<string, string>).some((s) => personalOwner(owners.get(s), usernames))));
  }

  /** Checks type, settings and slots; every required slot bound to an existing secret, no stray slot. */
  function checkInput(input: Pick<ConnectorInput, 'type' | 'settings' | 'slots'>): { type: ConnectorType<unknown>; settings: unknown } {
    const type = connectorType(input.type);
    const settings = type.parseSettings(input.settings);
    const required = type.requiredSlots(settings);
    for (const slot of required) if (!input.slots[slot]) fail('VALIDATION_FAILED', `slots.${slot} is required for a ${type.name} connector with these settings`);
    for (const [slot, secret] of Object.entries(input.slots)) {
      if (!required.includes(slot)) fail('VALIDATION_FAILED', `slots.${slot.slice(0, 64)} is not a slot of this connector (slots: ${required.join(', ') || 'none'})`);
      if (!SECRET_NAME.test(secret) || secret.length > 128) fail('VALIDATION_FAILED', `slots.${slot} must name a secret`);
    }
    return { type, settings };
  }

  async function requireWrite(ctx: TenantContext, environment: string, bindings: Array<[slot: string, secret: string]>): Promise<void> {
    for (const [slot, name] of bindings) {
      const secret = await secrets.load(ctx, name).catch((err: { code?: string }) => {
        if (err.code === 'SECRET_NOT_FOUND') fail('INVALID_REFERENCE', `slots.${slot}: unknown secret "${name}"`);
        throw err;
      });
      await authz.require(ctx, 'write', secretResource(secret), environment);
    }
  }

  async function find(ctx: TenantContext, environment: string, name: string): Promise<ConnectorRow> {
    const env = await tenants.environment(ctx.tenantId, environment);
    const row = name.length <= 64 ? await repo.find(ctx.tenantId, env.id, name) : undefined;
    if (!row) fail('CONNECTOR_NOT_FOUND', `connector "${name.slice(0, 64)}" does not exist in ${environment}`);
    return row;
  }

  const changeEvent = (ctx: TenantContext, action: string, row: Pick<ConnectorRow, 'id' | 'name' | 'revision'>, environment: string) => [{
    ...auditFrom(ctx), action, resource: { type: 'connector', id: row.id, name: row.name }, environment, outcome: 'allowed' as const,
    context: { ...auditFrom(ctx).context, revision: String(row.revision) },
  }];

  const service = {
    async create(ctx: TenantContext, input: ConnectorInput): Promise<Connector> {
      if (!CONNECTOR_NAME.test(input.name)) fail('INVALID_NAME', 'connector names start with a letter and use letters, digits, _ . - (at most 64)');
      checkInput(input);
      const env = await tenants.environment(ctx.tenantId, input.environment);
      await requireWrite(ctx, input.environment, Object.entries(input.slots));
      const now = clock.now();
      const row = {
        id: newId(), tenant_id: ctx.tenantId, environment_id: env.id, name: input.name, type: input.type, settings: JSON.stringify(input.settings),
        slots: JSON.stringify(input.slots), owner: input.owner, revision: 1, created_at: now, created_by: ctx.actor.id, updated_at: now,
      };
      await db.transaction().execute(async (trx) => {
        if (await repo.find(ctx.tenantId, env.id, input.name, trx)) fail('CONNECTOR_EXISTS', `connector "${input.name}" already exists in ${input.environment}`);
        await repo.insert(row, trx);
        await audit.appendInTx(trx, changeEvent(ctx, 'connector.create', row, input.environment));
      });
      return (await withPersonal(ctx.tenantId, [{ ...row, environment: input.environment }]))[0]!;
    },

    async update(ctx: TenantContext, environment: string, name: string, input: Pick<ConnectorInput, 'settings' | 'slots'> & { owner?: string; revision: number }): Promise<Connector> {
      const row = await find(ctx, environment, name);
      checkInput({ type: row.type, settings: input.settings, slots: input.slots });
      await requireWrite(ctx, environment, [...Object.entries(JSON.parse(row.slots) as Record<string, string>), ...Object.entries(input.slots)]);
      await db.transaction().execute(async (trx) => {
        const ok = await repo.update(ctx.tenantId, row.id, input.revision, { settings: JSON.stringify(input.settings), slots: JSON.stringify(input.slots), owner: input.owner ?? row.owner, updated_at: clock.now() }, trx);
        if (!ok) fail('CAS_MISMATCH', `connector "${name}" in ${environment} is not at revision ${input.revision}`);
        await audit.appendInTx(trx, changeEvent(ctx, 'connector.update', { ...row, revision: input.revision + 1 }, environment));
      });
      return (await withPersonal(ctx.tenantId, [(await repo.find(ctx.tenantId, row.environment_id, name))!]))[0]!;
    },

    async get(ctx: TenantContext, environment: string, name: string): Promise<Connector> {
      const row = await find(ctx, environment, name);
      await authz.require(ctx, 'list', TENANT);
      return (await withPersonal(ctx.tenantId, [row]))[0]!;
    },

    async list(ctx: TenantContext, opts: { environment?: string } = {}): Promise<Connector[]> {
      await authz.require(ctx, 'list', TENANT);
      const env = opts.environment ? await tenants.environment(ctx.tenantId, opts.environment) : null;
      return withPersonal(ctx.tenantId, await repo.list(ctx.tenantId, env?.id));
    },

    /** Every connector of a tenant, without an authorization check: for other services' own checks (automations). */
    async summaries(tenantId: string): Promise<Connector[]> {
      return withPersonal(tenantId, await repo.list(tenantId));
    },

    async remove(ctx: TenantContext, environment: string, name: string): Promise<void> {
      const row = await find(ctx, environment, name);
      await requireWrite(ctx, environment, Object.entries(JSON.parse(row.slots) as Record<string, string>));
      await db.transaction().execute(async (trx) => {
        if (!(await repo.remove(ctx.tenantId, row.id, trx))) fail('CONNECTOR_NOT_FOUND', `connector "${name}" does not exist in ${environment}`);
        await audit.appendInTx(trx, changeEvent(ctx, 'connector.delete', row, environment));
      });
    },

    /** A connector with its parsed settings, for the proxy (which authorizes each secret itself). */
    async load(ctx: TenantContext, environment: string, name: string): Promise<LoadedConnector> {
      const row = await find(ctx, environment, name);
      const type = connectorType(row.type);
      return { row, type, settings: type.parseSettings(JSON.parse(row.settings) as Record<string, unknown>), slots: JSON.parse(row.slots) as Record<string, string> };
    },

    /** The slot values, each read as a `use` (authorized and audited) in the connector's environment. */
    async credentials(ctx: TenantContext, connector: LoadedConnector, auditContext: Record<string, string>): Promise<Record<string, string>> {
      const out: Record<string, string> = {};
      for (const [slot, name] of Object.entries(connector.slots)) {
        out[slot] = (await values.read(ctx, name, connector.row.environment, { purpose: 'use', auditContext: { ...auditContext, connector: connector.row.name, slot } })).value;
      }
      return out;
    },

    /**
     * The health check, with the current values or with `overrides` for some slots (a rotation tests
     * its pending value this way). The outcome is an audit event; the detail never holds a value.
     */
    async test(ctx: TenantContext, environment: string, name: string, opts: { overrides?: Record<string, string> } = {}): Promise<HealthResult> {
      const connector = await service.load(ctx, environment, name);
      const needed = Object.fromEntries(Object.entries(connector.slots).filter(([slot]) => opts.overrides?.[slot] === undefined));
      const current = await service.credentials(ctx, { ...connector, slots: needed }, { purpose: 'health-check' });
      const credentials = { ...current, ...opts.overrides };
      const t0 = performance.now();
      let result: Omit<HealthResult, 'latencyMs'>;
      try {
        result = await connector.type.healthCheck(connector.settings, credentials, { timeoutMs: healthTimeoutMs, now: clock.now(), fetch: doFetch });
      } catch (err) {
        result = { ok: false, detail: `health check failed: ${(err as Error).name === 'TimeoutError' ? 'timed out' : (err as Error).message.slice(0, 200)}` };
      }
      for (const v of Object.values(credentials)) if (v.length >= 4) result.detail = result.detail.split(v).join('[REDACTED]');
      await audit.record([{
        ...auditFrom(ctx), action: 'connector.test', resource: { type: 'connector', id: connector.row.id, name }, environment,
        outcome: result.ok ? 'allowed' : 'failed', reason: result.ok ? null : 'HEALTH_CHECK_FAILED',
        context: { ...auditFrom(ctx).context, ...(opts.overrides ? { overrides: Object.keys(opts.overrides).join(',') } : {}) },
      }]);
      return { ...result, latencyMs: Math.round(performance.now() - t0) };
    },

    /** Which connectors, in which environments and slots, hold a secret. */
    async dependentsOf(ctx: TenantContext, secretName: string): Promise<Array<{ environment: string; connector: string; slot: string }>> {
      await authz.require(ctx, 'list', secretResource(await secrets.load(ctx, secretName)));
      return (await repo.list(ctx.tenantId)).flatMap((r) => Object.entries(JSON.parse(r.slots) as Record<string, string>)
        .filter(([, s]) => s === secretName).map(([slot]) => ({ environment: r.environment, connector: r.name, slot })));
    },
  };
  return service;
}

export type ConnectorService = ReturnType<typeof createConnectorService>;
