import type { Kysely } from 'kysely';
import { fail, isKeyholdError } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import { isUniqueViolation } from '../../storage/db-errors.ts';
import type { ConnectorsTable, Database, SecretsTable } from '../../storage/schema.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import { commitStaged, type StagedWrite } from '../audit/staged-write.ts';
import type { Action } from '../policy/actions.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import { secretResource, type SecretService } from '../secrets/secret-service.ts';
import type { ValueService } from '../secrets/value-service.ts';
import type { TenantContext } from '../shared/context.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import { createConnectorRepository, type ConnectorRow } from './connector-repository.ts';
import { assertConnectorName, governedBy, parseDefinition, TEMPLATE_SECRETS } from './definition.ts';
import type { Connector, ConnectorTypeName, CreateConnectorInput, Dependent, HealthResult, UpdateConnectorInput } from './model.ts';
import type { OutboundLimits } from './outbound.ts';
import { connectorTypes } from './types/index.ts';
import type { ConnectorType } from './types/connector-type.ts';

/** A connector ready to act: its type, typed settings and the resolved values of the slots asked for. Never leaves the process. */
export interface PreparedConnector {
  id: string;
  name: string;
  environment: string;
  type: ConnectorTypeName;
  kind: ConnectorType<any>;
  settings: Record<string, unknown>;
  slots: Record<string, string>;
  /** Secret names allowed in `{{ secrets.NAME }}` templates of proxied requests. */
  templateSecrets: string[];
  values: Record<string, string>;
}

const iso = (ms: number) => new Date(ms).toISOString();
const isPersonalOwner = (owner: string, usernames: Set<string>) => owner.startsWith('user:') || usernames.has(owner);

/**
 * Connectors (SPEC §1, §5): CRUD per (tenant, environment, name), health checks, and the lookups the
 * credential proxy, automations, inventory and rotation build on. Deciding where a credential may go
 * is `write` on every secret the connector governs; reading its definition is `list`; running it is `use`.
 */
export function createConnectorService(deps: {
  db: Kysely<Database>;
  tenants: Pick<TenantService, 'environment'>;
  secrets: Pick<SecretService, 'load'>;
  values: Pick<ValueService, 'read'>;
  authz: Authorizer;
  audit: Pick<AuditLog, 'appendInTx' | 'record'>;
  clock: Clock;
  fetch: typeof fetch;
  /** Health checks' outbound limits (a type may lower the timeouts with its own setting). */
  limits: OutboundLimits;
  maxNameLength: number;
}) {
  const { db, tenants, secrets, values, authz, audit, clock, limits, maxNameLength } = deps;
  const repo = createConnectorRepository(db);

  async function secretRows(tenantId: string, names: string[]): Promise<Map<string, SecretsTable>> {
    if (names.length === 0) return new Map();
    const rows = await db.selectFrom('secrets').selectAll().where('tenant_id', '=', tenantId).where('name', 'in', names).execute();
    return new Map(rows.map((r) => [r.name, r]));
  }

  /** `action` on every named secret in the environment; a secret that no longer exists at all needs a tenant admin. */
  async function requireOnAll(ctx: TenantContext, action: Action, names: string[], environment: string): Promise<void> {
    const rows = await secretRows(ctx.tenantId, names);
    for (const name of names) {
      const row = rows.get(name);
      if (row) await authz.require(ctx, action, secretResource(row), environment);
      else await authz.require(ctx, 'admin', { type: 'tenant' });
    }
  }

  async function allowedOnAll(ctx: TenantContext, action: Action, names: string[], environment: string, rows: Map<string, SecretsTable>): Promise<boolean> {
    for (const name of names) {
      const row = rows.get(name);
      if (!(row ? await authz.allowed(ctx, action, secretResource(row), environment) : await authz.allowed(ctx, 'admin', { type: 'tenant' }))) return false;
    }
    return true;
  }

  /** Slot and template secrets must exist (not deleted) when a connector is saved: the error names the slot. */
  async function assertSecretsExist(ctx: TenantContext, slots: Record<string, string>, templates: string[]): Promise<void> {
    const named = [...Object.entries(slots), ...templates.map((t) => [`${TEMPLATE_SECRETS}`, t] as const)];
    for (const [slot, secret] of named) {
      try {
        await secrets.load(ctx, secret);
      } catch (err) {
        if (isKeyholdError(err) && err.code === 'SECRET_NOT_FOUND') fail('SLOT_UNRESOLVED', `slot "${slot}": secret "${secret}" does not exist in this tenant`);
        throw err;
      }
    }
  }

  async function toConnectors(tenantId: string, rows: ConnectorRow[], owners?: Map<string, SecretsTable>): Promise<Connector[]> {
    const names = [...new Set(rows.flatMap((r) => Object.values(JSON.parse(r.slots) as Record<string, string>)))];
    const secretOwners = owners ?? (await secretRows(tenantId, names));
    const candidates = [...new Set([...secretOwners.values()].map((s) => s.owner))];
    const usernames = await repo.usernames(tenantId, candidates);
    return rows.map((r) => {
      const slots = JSON.parse(r.slots) as Record<string, string>;
      return {
        id: r.id, name: r.name, environment: r.environment, type: r.type as ConnectorTypeName,
        settings: JSON.parse(r.settings) as Record<string, unknown>, slots, owner: r.owner,
        personal: Object.values(slots).some((name) => {
          const owner = secretOwners.get(name)?.owner;
          return owner !== undefined && isPersonalOwner(owner, usernames);
        }),
        createdAt: iso(r.created_at), updatedAt: iso(r.updated_at), createdBy: r.created_by, revision: r.revision,
      };
    });
  }

  async function load(ctx: TenantContext, environment: string, name: string): Promise<ConnectorRow> {
    assertConnectorName(name, maxNameLength);
    const env = await tenants.environment(ctx.tenantId, environment);
    const row = await repo.find(ctx.tenantId, env.id, name);
    if (!row) fail('CONNECTOR_NOT_FOUND', `connector "${name}" does not exist in ${environment}`);
    return row;
  }

  function event(ctx: TenantContext, action: string, row: Pick<ConnectorsTable, 'id' | 'name' | 'type' | 'slots' | 'owner'>, environment: string, extra: Record<string, string> = {}) {
    const base = auditFrom(ctx);
    const slots = Object.entries(JSON.parse(row.slots) as Record<string, string>).map(([s, n]) => `${s}=${n}`).join(',');
    return [{
      ...base, action, resource: { type: 'connector', id: row.id, name: row.name }, environment, outcome: 'allowed' as const,
      context: { ...base.context, type: row.type, slots, owner: row.owner, ...extra },
    }];
  }

  /** A connector's definition, typed, with no value resolved and no authorization yet (the proxy checks requests against it first). */
  async function definition(ctx: TenantContext, environment: string, name: string): Promise<PreparedConnector> {
    const row = await load(ctx, environment, name);
    const kind = connectorTypes[row.type as ConnectorTypeName];
    const { [TEMPLATE_SECRETS]: templates, ...own } = JSON.parse(row.settings) as Record<string, unknown>;
    return {
      id: row.id, name: row.name, environment: row.environment, type: row.type as ConnectorTypeName, kind,
      settings: kind.parseSettings(own) as Record<string, unknown>, slots: JSON.parse(row.slots) as Record<string, string>,
      templateSecrets: Array.isArray(templates) ? (templates as string[]) : [], values: {},
    };
  }

  /**
   * Resolves the values of `slots` (default: the type's required slots) in the connector's own environment,
   * each a `use` audited with the connector and `auditContext`; an override replaces a slot's value after the same `use` check.
   */
  async function resolve(ctx: TenantContext, c: PreparedConnector, opts: { overrides?: Record<string, string>; slots?: string[]; auditContext?: Record<string, string> } = {}): Promise<PreparedConnector> {
    const overrides = opts.overrides ?? {};
    for (const [slot, value] of Object.entries(overrides)) {
      if (c.slots[slot] === undefined) fail('SLOT_UNRESOLVED', `connector "${c.name}" has no slot "${/^[A-Za-z0-9_]{1,64}$/.test(slot) ? slot : '(unprintable)'}"`);
      if (typeof value !== 'string' || value.length === 0) fail('VALIDATION_FAILED', `the override for slot "${slot}" must be a non-empty string`);
    }
    const wanted = (opts.slots ?? c.kind.slots(c.settings).required).filter((s) => c.slots[s] !== undefined);
    const resolved: Record<string, string> = {};
    const context = { connector: c.name, ...opts.auditContext };
    await Promise.all(wanted.map(async (slot) => {
      if (overrides[slot] !== undefined) {
        await authz.require(ctx, 'use', secretResource(await secrets.load(ctx, c.slots[slot]!)), c.environment);
        resolved[slot] = overrides[slot];
      } else {
        resolved[slot] = (await values.read(ctx, c.slots[slot]!, c.environment, { purpose: 'use', auditContext: { ...context, slot } })).value;
      }
    }));
    return { ...c, values: resolved };
  }

  /** The checks of a create, without writing: the parsed definition for the environment. */
  async function checkCreate(ctx: TenantContext, environment: string, input: CreateConnectorInput) {
    assertConnectorName(input.name, maxNameLength);
    const env = await tenants.environment(ctx.tenantId, environment);
    const def = parseDefinition(input.type, input.settings, input.slots, maxNameLength);
    await assertSecretsExist(ctx, def.slots, def.governed.filter((n) => !Object.values(def.slots).includes(n)));
    await requireOnAll(ctx, 'write', def.governed, environment);
    return { env, def };
  }

  /** The checks of an update of `row`, without writing: write on what it governs now and on what it will govern. */
  async function checkUpdate(ctx: TenantContext, row: ConnectorRow, environment: string, patch: Pick<UpdateConnectorInput, 'settings' | 'slots'>) {
    const before = governedBy(JSON.parse(row.settings), JSON.parse(row.slots));
    await requireOnAll(ctx, 'write', before, environment);
    const def = parseDefinition(row.type, patch.settings ?? JSON.parse(row.settings), patch.slots ?? JSON.parse(row.slots), maxNameLength);
    await assertSecretsExist(ctx, def.slots, def.governed.filter((n) => !Object.values(def.slots).includes(n)));
    await requireOnAll(ctx, 'write', def.governed.filter((n) => !before.includes(n)), environment);
    return def;
  }

  /** A create, every check done, staged for the caller's transaction (see StagedWrite). */
  async function prepareCreate(ctx: TenantContext, environment: string, input: CreateConnectorInput): Promise<StagedWrite<Connector>> {
    const { env, def } = await checkCreate(ctx, environment, input);
    const now = clock.now();
    const row: ConnectorsTable = {
      id: newId(), tenant_id: ctx.tenantId, environment_id: env.id, name: input.name, type: def.type,
      settings: JSON.stringify(def.settings), slots: JSON.stringify(def.slots), owner: input.owner,
      created_at: now, created_by: ctx.actor.id, updated_at: now, revision: 1,
    };
    return {
      async write(trx) {
        try {
          await createConnectorRepository(trx).insert(row);
        } catch (err) {
          if (isUniqueViolation(err)) fail('CONNECTOR_EXISTS', `connector "${input.name}" already exists in ${environment}`);
          throw err;
        }
        return event(ctx, 'connector.create', row, environment);
      },
      async committed() {
        return (await toConnectors(ctx.tenantId, [{ ...row, environment }]))[0]!;
      },
    };
  }

  /** An update of `row` (at `patch.revision`, default the row's), every check done, staged for the caller's transaction. */
  async function prepareUpdate(ctx: TenantContext, row: ConnectorRow, environment: string, patch: UpdateConnectorInput): Promise<StagedWrite<Connector>> {
    const def = await checkUpdate(ctx, row, environment, patch);
    const expected = patch.revision ?? row.revision;
    const next: ConnectorsTable = {
      id: row.id, tenant_id: row.tenant_id, environment_id: row.environment_id, name: row.name, type: row.type,
      settings: JSON.stringify(def.settings), slots: JSON.stringify(def.slots), owner: patch.owner ?? row.owner,
      created_at: row.created_at, created_by: row.created_by, updated_at: clock.now(), revision: expected + 1,
    };
    const fields = (['settings', 'slots', 'owner'] as const).filter((f) => patch[f] !== undefined).join(',');
    return {
      async write(trx) {
        if (!(await createConnectorRepository(trx).update(next, expected))) {
          fail('CAS_MISMATCH', `connector "${row.name}" was changed by someone else (revision is no longer ${expected})`);
        }
        return event(ctx, 'connector.update', next, environment, { fields, revision: String(next.revision) });
      },
      async committed() {
        return (await toConnectors(ctx.tenantId, [{ ...next, environment: row.environment }]))[0]!;
      },
    };
  }

  /**
   * `use` on the slot secrets `resolve` would read, without reading a value: the proxy asks it before it looks at
   * a request, so a caller who may not use the connector learns nothing of it (its destination is in refusals).
   * A slot secret that is gone is left to `resolve` to report.
   */
  async function requireUse(ctx: TenantContext, c: PreparedConnector): Promise<void> {
    const wanted = c.kind.slots(c.settings).required.flatMap((s) => (c.slots[s] === undefined ? [] : [c.slots[s]]));
    const rows = await secretRows(ctx.tenantId, [...new Set(wanted)]);
    for (const row of rows.values()) await authz.require(ctx, 'use', secretResource(row), c.environment);
  }

  /** Definition and values in one step (health checks, the rotation's privileged PostgreSQL session). */
  async function prepare(ctx: TenantContext, environment: string, name: string, opts: Parameters<typeof resolve>[2] = {}): Promise<PreparedConnector> {
    return resolve(ctx, await definition(ctx, environment, name), opts);
  }

  return {
    definition,
    requireUse,
    resolve,
    prepare,

    async create(ctx: TenantContext, environment: string, input: CreateConnectorInput): Promise<Connector> {
      const [created] = await commitStaged(db, audit, [await prepareCreate(ctx, environment, input)]);
      return created!;
    },

    /**
     * Saving `input` staged for the caller's transaction, after every check its create or update would make (an
     * update when a connector of that name exists, seen by the caller or not; `CONNECTOR_EXISTS` unless `overwrite`):
     * an import checks its whole document first, then writes it in one transaction.
     */
    async prepareSave(ctx: TenantContext, environment: string, input: CreateConnectorInput, opts: { overwrite: boolean }): Promise<StagedWrite<Connector>> {
      assertConnectorName(input.name, maxNameLength);
      const env = await tenants.environment(ctx.tenantId, environment);
      const row = await repo.find(ctx.tenantId, env.id, input.name);
      if (!row) return prepareCreate(ctx, environment, input);
      if (!opts.overwrite) fail('CONNECTOR_EXISTS', `connector "${input.name}" already exists in ${environment} (import with overwrite to replace it)`);
      return prepareUpdate(ctx, row, environment, { settings: input.settings, slots: input.slots, owner: input.owner, revision: row.revision });
    },

    async get(ctx: TenantContext, environment: string, name: string): Promise<Connector> {
      const row = await load(ctx, environment, name);
      await requireOnAll(ctx, 'list', governedBy(JSON.parse(row.settings), JSON.parse(row.slots)), environment);
      return (await toConnectors(ctx.tenantId, [row]))[0]!;
    },

    /** Connectors of one environment (or all), filtered to those whose every governed secret the caller may list. */
    async list(ctx: TenantContext, environment?: string): Promise<Connector[]> {
      const envId = environment === undefined ? undefined : (await tenants.environment(ctx.tenantId, environment)).id;
      const rows = await repo.list(ctx.tenantId, envId);
      const governed = rows.map((r) => governedBy(JSON.parse(r.settings), JSON.parse(r.slots)));
      const secretsByName = await secretRows(ctx.tenantId, [...new Set(governed.flat())]);
      const visible: ConnectorRow[] = [];
      for (const [i, row] of rows.entries()) if (await allowedOnAll(ctx, 'list', governed[i]!, row.environment, secretsByName)) visible.push(row);
      return toConnectors(ctx.tenantId, visible, secretsByName);
    },

    /** Replaces settings and/or slots (validated as on create); `revision` guards against a concurrent change. */
    async update(ctx: TenantContext, environment: string, name: string, patch: UpdateConnectorInput): Promise<Connector> {
      const row = await load(ctx, environment, name);
      const [updated] = await commitStaged(db, audit, [await prepareUpdate(ctx, row, environment, patch)]);
      return updated!;
    },

    async remove(ctx: TenantContext, environment: string, name: string, opts: { revision?: number } = {}): Promise<Connector> {
      const row = await load(ctx, environment, name);
      await requireOnAll(ctx, 'write', governedBy(JSON.parse(row.settings), JSON.parse(row.slots)), environment);
      const expected = opts.revision ?? row.revision;
      const [gone] = await toConnectors(ctx.tenantId, [row]);
      await db.transaction().execute(async (trx) => {
        if (!(await createConnectorRepository(trx).remove(ctx.tenantId, row.id, expected))) {
          fail('CAS_MISMATCH', `connector "${name}" was changed by someone else (revision is no longer ${expected})`);
        }
        await audit.appendInTx(trx, event(ctx, 'connector.delete', row, environment));
      });
      return gone!;
    },

    /**
     * Runs the type's health check with the current values, or with `overrides` for some slots (rotation
     * passes a pending value). Needs `use` on the slot secrets. Failures are results, audited as `connector.test`.
     */
    async test(ctx: TenantContext, environment: string, name: string, opts: { overrides?: Record<string, string> } = {}): Promise<HealthResult> {
      const started = performance.now();
      let prepared: PreparedConnector;
      let outcome: Omit<HealthResult, 'latencyMs'>;
      const row = await load(ctx, environment, name);
      try {
        prepared = await prepare(ctx, environment, name, { ...(opts.overrides ? { overrides: opts.overrides } : {}), auditContext: { purpose: 'health-check' } });
        outcome = await prepared.kind.health(prepared.settings, prepared.values, { fetch: deps.fetch, limits, nowSeconds: () => Math.floor(clock.now() / 1000) });
      } catch (err) {
        if (!isKeyholdError(err)) throw err;
        if (err.code === 'UNSENDABLE_HEADER') outcome = { ok: false, reason: 'unsendable_header', detail: err.message };
        else if (['VALUE_NOT_SET', 'SECRET_NOT_FOUND', 'VERSION_DESTROYED'].includes(err.code)) outcome = { ok: false, reason: 'slot_unresolved', detail: err.message };
        else throw err;
      }
      const result: HealthResult = { ...outcome, latencyMs: Math.round(performance.now() - started) };
      const base = auditFrom(ctx);
      await audit.record([{
        ...base, action: 'connector.test', resource: { type: 'connector', id: row.id, name: row.name }, environment,
        outcome: result.ok ? 'allowed' : 'failed', reason: result.ok ? null : result.reason,
        context: { ...base.context, reason: result.reason, ...(result.status !== undefined ? { status: String(result.status) } : {}), ...(opts.overrides ? { overrides: Object.keys(opts.overrides).sort().join(',') } : {}) },
      }]);
      return result;
    },

    /** Every (environment, connector, slot) whose slot names this secret: what a change or rotation touches. Needs `list` on it. */
    async dependentsOf(ctx: TenantContext, secretName: string): Promise<Dependent[]> {
      const secret = await secrets.load(ctx, secretName);
      await authz.require(ctx, 'list', secretResource(secret));
      return repo.dependents(ctx.tenantId, secretName);
    },
  };
}

export type ConnectorService = ReturnType<typeof createConnectorService>;
