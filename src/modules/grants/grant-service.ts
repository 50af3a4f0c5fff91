import type { Kysely, Transaction } from 'kysely';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { isoTime as iso } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import type { Database, GrantsTable } from '../../storage/schema.ts';
import { isRole, type Role } from '../policy/actions.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import type { TenantContext } from '../shared/context.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import { NAME_PATTERN } from './matching.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';

export interface Grant {
  id: string;
  principalType: 'user' | 'machine';
  principalId: string;
  role: Role;
  environments: string[] | null;
  namePatterns: string[] | null;
  expiresAt: string | null;
  createdAt: string;
  createdBy: string;
  revokedAt: string | null;
  /** `revoked` once revoked (expired since or not); else `expired` from its expiry on, as decisions judge it; else `live`. */
  state: GrantState;
}

export type GrantState = 'live' | 'expired' | 'revoked';

/** Which grants a listing shows: live ones always; revoked and expired ones only when asked for. */
export interface ListGrantsOptions {
  principalId?: string;
  includeRevoked?: boolean;
  includeExpired?: boolean;
}

export interface CreateGrantInput {
  principalType: 'user' | 'machine';
  principalId: string;
  role: string;
  environments?: string[];
  namePatterns?: string[];
  expiresAt?: string;
}

function stateOf(row: GrantsTable, now: number): GrantState {
  if (row.revoked_at !== null) return 'revoked';
  return row.expires_at !== null && row.expires_at <= now ? 'expired' : 'live';
}

function toGrant(row: GrantsTable, now: number): Grant {
  return {
    id: row.id,
    principalType: row.principal_type as Grant['principalType'],
    principalId: row.principal_id,
    role: row.role as Role,
    environments: row.environments === null ? null : JSON.parse(row.environments),
    namePatterns: row.name_patterns === null ? null : JSON.parse(row.name_patterns),
    expiresAt: iso(row.expires_at),
    createdAt: iso(row.created_at)!,
    createdBy: row.created_by,
    revokedAt: iso(row.revoked_at),
    state: stateOf(row, now),
  };
}

/** Role grants: a built-in role bound to a user or machine of the tenant, optionally narrowed and expiring. */
export function createGrantService(deps: { db: Kysely<Database>; authz: Authorizer; tenants: TenantService; clock: Clock; audit: Pick<AuditLog, 'appendInTx'> }) {
  const { db, authz, tenants, clock, audit } = deps;
  const grantEvent = (ctx: TenantContext, action: string, g: GrantsTable) => {
    const base = auditFrom(ctx);
    return [{
      ...base, action, resource: { type: 'grant', id: g.id, name: g.role }, outcome: 'allowed' as const,
      context: { ...base.context, principal: `${g.principal_type}:${g.principal_id}`, role: g.role, environments: g.environments ?? '*', namePatterns: g.name_patterns ?? '*', expiresAt: g.expires_at === null ? '' : new Date(g.expires_at).toISOString() },
    }];
  };

  /**
   * Runs a grant change with the generation bump in the same transaction; drops this process's cache however it ends.
   * The bump (the tenant row's lock) comes first: the change appends to the audit log, whose head must be the last lock taken.
   */
  async function changeAuthz(tenantId: string, change: (trx: Transaction<Database>) => Promise<void>): Promise<void> {
    try {
      await db.transaction().execute(async (trx) => {
        await authz.bumpInTx(trx, tenantId);
        await change(trx);
      });
    } finally {
      authz.invalidate(tenantId);
    }
  }

  async function assertPrincipal(tenantId: string, type: 'user' | 'machine', id: string): Promise<void> {
    const row = type === 'user'
      ? await db.selectFrom('users').select('id').where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst()
      : await db.selectFrom('machine_identities').select('id').where('tenant_id', '=', tenantId).where('id', '=', id).executeTakeFirst();
    if (!row) fail(type === 'user' ? 'USER_NOT_FOUND' : 'MACHINE_NOT_FOUND', `no such ${type} in this tenant`);
  }

  return {
    async create(ctx: TenantContext, input: CreateGrantInput): Promise<Grant> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      if (!isRole(input.role)) fail('VALIDATION_FAILED', `unknown role "${input.role}"`);
      await assertPrincipal(ctx.tenantId, input.principalType, input.principalId);
      // Omitted means everywhere; an empty list would be read the same way, widening a grant meant to be narrow.
      if (input.environments?.length === 0) fail('VALIDATION_FAILED', 'environments must name at least one environment, or be omitted for all of them');
      if (input.namePatterns?.length === 0) fail('VALIDATION_FAILED', 'namePatterns must hold at least one pattern, or be omitted for every name');
      for (const env of input.environments ?? []) await tenants.environment(ctx.tenantId, env);
      for (const p of input.namePatterns ?? []) if (!NAME_PATTERN.test(p)) fail('VALIDATION_FAILED', `bad name pattern "${p}" (letters, digits, _ . - and *)`);
      const expiresAt = input.expiresAt === undefined ? null : Date.parse(input.expiresAt);
      if (expiresAt !== null && (Number.isNaN(expiresAt) || expiresAt <= clock.now())) fail('VALIDATION_FAILED', 'expiresAt must be a future ISO 8601 time');
      const row: GrantsTable = {
        id: newId(), tenant_id: ctx.tenantId, principal_type: input.principalType, principal_id: input.principalId, role: input.role,
        environments: input.environments?.length ? JSON.stringify([...new Set(input.environments)]) : null,
        name_patterns: input.namePatterns?.length ? JSON.stringify([...new Set(input.namePatterns)]) : null,
        expires_at: expiresAt, created_at: clock.now(), created_by: ctx.actor.id, revoked_at: null,
      };
      await changeAuthz(ctx.tenantId, async (trx) => {
        await trx.insertInto('grants').values(row).execute();
        await audit.appendInTx(trx, grantEvent(ctx, 'grant.create', row));
      });
      return toGrant(row, clock.now());
    },

    /** Live grants, plus revoked and expired ones on request; a grant expiring at `t` is expired from `t` on. */
    async list(ctx: TenantContext, opts: ListGrantsOptions = {}): Promise<Grant[]> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      const now = clock.now();
      let q = db.selectFrom('grants').selectAll().where('tenant_id', '=', ctx.tenantId);
      if (opts.principalId) q = q.where('principal_id', '=', opts.principalId);
      if (!opts.includeRevoked) q = q.where('revoked_at', 'is', null);
      // Revoked grants are shown (or not) as revoked, whatever their expiry: only unrevoked ones are filtered by it.
      if (!opts.includeExpired) q = q.where((eb) => eb.or([eb('revoked_at', 'is not', null), eb('expires_at', 'is', null), eb('expires_at', '>', now)]));
      return (await q.orderBy('created_at').execute()).map((row) => toGrant(row, now));
    },

    /** Revokes a live grant; an expired one has nothing left to stop and stays recorded as expired (GRANT_NOT_FOUND). */
    async revoke(ctx: TenantContext, id: string): Promise<Grant> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      await changeAuthz(ctx.tenantId, async (trx) => {
        const now = clock.now();
        const res = await trx.updateTable('grants').set({ revoked_at: now })
          .where('tenant_id', '=', ctx.tenantId).where('id', '=', id).where('revoked_at', 'is', null)
          .where((eb) => eb.or([eb('expires_at', 'is', null), eb('expires_at', '>', now)])).executeTakeFirst();
        if (Number(res.numUpdatedRows) === 0) fail('GRANT_NOT_FOUND', 'no live grant with that id in this tenant');
        const g = await trx.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirstOrThrow();
        await audit.appendInTx(trx, grantEvent(ctx, 'grant.revoke', g));
      });
      return toGrant((await db.selectFrom('grants').selectAll().where('id', '=', id).executeTakeFirst())!, clock.now());
    },
  };
}

export type GrantService = ReturnType<typeof createGrantService>;
