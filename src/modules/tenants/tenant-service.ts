import type { Kysely, Transaction } from 'kysely';
import type { Keyring } from '../../crypto/keyring.ts';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import type { Database } from '../../storage/schema.ts';
import { isUniqueViolation } from '../../storage/db-errors.ts';
import { createKekRepository } from '../keys/kek-repository.ts';
import { assertSlug } from '../shared/names.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import { SYSTEM_ACTOR, type RequestContext, type TenantContext } from '../shared/context.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';

export const DEFAULT_ENVIRONMENTS = ['development', 'staging', 'production'] as const;

export interface Tenant {
  id: string;
  name: string;
  createdAt: string;
}

export interface Environment {
  id: string;
  name: string;
  createdAt: string;
}

/**
 * Tenants (the isolation boundary) and their environments. A tenant is born with its own KEK
 * (version 1, wrapped by the root key) and the default environments, in one transaction.
 * Lookups by name and id are cached: they sit on every request's path, and tenants are never renamed or removed.
 */
export function createTenantService(deps: { db: Kysely<Database>; keyring: Keyring; authz: Authorizer; clock: Clock; audit: Pick<AuditLog, 'appendInTx'> }) {
  const { db, keyring, authz, clock, audit } = deps;
  const byName = new Map<string, Tenant>();
  const byId = new Map<string, Tenant>();
  const envByName = new Map<string, Environment>();
  const envKey = (tenantId: string, name: string) => `${tenantId}\u0000${name}`;

  function toTenant(row: { id: string; name: string; created_at: number }): Tenant {
    return { id: row.id, name: row.name, createdAt: new Date(row.created_at).toISOString() };
  }

  return {
    /**
     * Creates a tenant with its KEK and default environments, and records who did (`by`; the server
     * itself when absent): inside `trx` when given, else in its own transaction. The event belongs to
     * the new tenant, so its auditors see its birth.
     */
    async create(name: string, opts: { trx?: Transaction<Database>; by?: RequestContext } = {}): Promise<Tenant> {
      const { trx, by = { actor: SYSTEM_ACTOR, requestId: 'system' } } = opts;
      assertSlug('tenant', name);
      const now = clock.now();
      const id = newId();
      const wrapped = keyring.newWrappedKek(id, 1);
      const run = <T>(fn: (t: Transaction<Database>) => Promise<T>) => (trx ? fn(trx) : db.transaction().execute(fn));
      try {
        await run(async (trx) => {
          await trx.insertInto('tenants').values({ id, name, created_at: now, kek_version: 1, kek_min_version: 1, policy_version: 0, authz_generation: 0 }).execute();
          await createKekRepository(trx).insertKek(id, 1, wrapped, now);
          await trx.insertInto('environments')
            .values(DEFAULT_ENVIRONMENTS.map((env) => ({ id: newId(), tenant_id: id, name: env, created_at: now })))
            .execute();
          await audit.appendInTx(trx, [{
            ...auditFrom({ ...by, tenantId: id }), action: 'tenant.create', resource: { type: 'tenant', id, name }, outcome: 'allowed',
          }]);
        });
      } catch (err) {
        if (isUniqueViolation(err)) fail('TENANT_EXISTS', `tenant "${name}" already exists`);
        throw err;
      }
      return toTenant({ id, name, created_at: now });
    },

    async list(): Promise<Tenant[]> {
      const rows = await db.selectFrom('tenants').select(['id', 'name', 'created_at']).orderBy('name').execute();
      return rows.map(toTenant);
    },

    /** Resolves a tenant by name; null when it does not exist. */
    async findByName(name: string): Promise<Tenant | null> {
      const cached = byName.get(name);
      if (cached) return cached;
      const row = await db.selectFrom('tenants').select(['id', 'name', 'created_at']).where('name', '=', name).executeTakeFirst();
      if (!row) return null;
      const tenant = toTenant(row);
      byName.set(name, tenant);
      return tenant;
    },

    /** Resolves a tenant by id; null when it does not exist. Cached like names: every request with a tenant header asks. */
    async findById(id: string): Promise<Tenant | null> {
      const cached = byId.get(id);
      if (cached) return cached;
      const row = await db.selectFrom('tenants').select(['id', 'name', 'created_at']).where('id', '=', id).executeTakeFirst();
      if (!row) return null;
      const tenant = toTenant(row);
      byId.set(id, tenant);
      return tenant;
    },

    async listEnvironments(tenantId: string): Promise<Environment[]> {
      const rows = await db.selectFrom('environments').select(['id', 'name', 'created_at'])
        .where('tenant_id', '=', tenantId).orderBy('created_at').orderBy('name').execute();
      return rows.map(toTenant);
    },

    async createEnvironment(ctx: TenantContext, name: string): Promise<Environment> {
      assertSlug('environment', name);
      await authz.require(ctx, 'admin', { type: 'tenant' });
      const row = { id: newId(), tenant_id: ctx.tenantId, name, created_at: clock.now() };
      try {
        await db.transaction().execute(async (trx) => {
          await trx.insertInto('environments').values(row).execute();
          await audit.appendInTx(trx, [{
            ...auditFrom(ctx), action: 'environment.create', resource: { type: 'environment', id: row.id, name }, environment: name, outcome: 'allowed',
          }]);
        });
      } catch (err) {
        if (isUniqueViolation(err)) fail('ENVIRONMENT_EXISTS', `environment "${name}" already exists`);
        throw err;
      }
      return toTenant(row);
    },

    /** The environment if this process already resolved it (the hot read path skips a promise). */
    cachedEnvironment(tenantId: string, name: string): Environment | undefined {
      return envByName.get(envKey(tenantId, name));
    },

    /** Resolves an environment of a tenant by name; ENVIRONMENT_NOT_FOUND otherwise. */
    async environment(tenantId: string, name: string): Promise<Environment> {
      const key = envKey(tenantId, name);
      const cached = envByName.get(key);
      if (cached) return cached;
      assertSlug('environment', name);
      const row = await db.selectFrom('environments').select(['id', 'name', 'created_at'])
        .where('tenant_id', '=', tenantId).where('name', '=', name).executeTakeFirst();
      if (!row) fail('ENVIRONMENT_NOT_FOUND', `environment "${name}" does not exist in this tenant`);
      const env = toTenant(row);
      envByName.set(key, env);
      return env;
    },
  };
}

export type TenantService = ReturnType<typeof createTenantService>;
