import type { Kysely } from 'kysely';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import type { Executor } from '../../storage/database.ts';
import { isUniqueViolation } from '../../storage/db-errors.ts';
import type { Database } from '../../storage/schema.ts';
import type { TenantContext } from '../shared/context.ts';
import type { Authorizer } from './authorizer.ts';
import { lineDiff } from './diff.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import type { PolicyEngine } from './engine.ts';

export interface PolicyVersion {
  version: number;
  text: string;
  comment: string;
  createdAt: string;
  createdBy: string;
  active: boolean;
}

/**
 * A tenant's own Cedar policies, as versioned files. A new version is validated against the
 * schema (beside the built-ins) before it is stored; only then does it take effect. Rollback
 * re-applies an older text as a new version, so history only grows.
 */
export function createPolicyService(deps: {
  db: Kysely<Database>; engine: PolicyEngine; authz: Authorizer; clock: Clock; audit: Pick<AuditLog, 'appendInTx'>;
  /** The tenant's known values masked out of a version's comment (people type there; a pasted value must not be kept). */
  maskText(tenantId: string, text: string): Promise<string>;
}) {
  const { db, engine, authz, clock, audit } = deps;

  async function activeVersion(tenantId: string, executor: Executor = db): Promise<number> {
    return (await executor.selectFrom('tenants').select('policy_version').where('id', '=', tenantId).executeTakeFirstOrThrow()).policy_version;
  }

  async function load(tenantId: string, version: number, active: number): Promise<PolicyVersion> {
    if (version === 0) return { version: 0, text: '', comment: 'built-in policies only', createdAt: new Date(0).toISOString(), createdBy: 'keyhold', active: active === 0 };
    const row = await db.selectFrom('tenant_policies').selectAll().where('tenant_id', '=', tenantId).where('version', '=', version).executeTakeFirst();
    if (!row) fail('POLICY_VERSION_NOT_FOUND', `no policy version ${version}`);
    return { version, text: row.text, comment: row.comment, createdAt: new Date(row.created_at).toISOString(), createdBy: row.created_by, active: active === version };
  }

  function check(text: string): void {
    const result = engine.validate(text);
    if (!result.ok) fail('POLICY_INVALID', `the policy set does not validate: ${result.errors.slice(0, 5).join('; ')}`);
  }

  /** `cas`: the version the caller expects in force (0: built-ins only); another one there is CAS_MISMATCH. */
  async function apply(ctx: TenantContext, text: string, typed: string, cas?: number): Promise<PolicyVersion> {
    await authz.require(ctx, 'admin', { type: 'tenant' });
    check(text);
    const comment = await deps.maskText(ctx.tenantId, typed);
    const now = clock.now();
    let version = 0;
    try {
      await db.transaction().execute(async (trx) => {
        if (cas !== undefined && (await activeVersion(ctx.tenantId, trx)) !== cas) fail('CAS_MISMATCH', `the policy version in force is not ${cas}; fetch it and try again`);
        const last = await trx.selectFrom('tenant_policies').select((eb) => eb.fn.max('version').as('v')).where('tenant_id', '=', ctx.tenantId).executeTakeFirst();
        version = Number(last?.v ?? 0) + 1;
        await trx.insertInto('tenant_policies').values({ tenant_id: ctx.tenantId, version, text, comment, created_at: now, created_by: ctx.actor.id }).execute();
        // The check above read outside any lock: under PostgreSQL's read committed another editor can commit
        // after it, and max() above already sees that version. The version in force moves only from `cas`.
        const moved = await trx.updateTable('tenants').set({ policy_version: version }).where('id', '=', ctx.tenantId)
          .$if(cas !== undefined, (q) => q.where('policy_version', '=', cas!)).executeTakeFirst();
        if (Number(moved.numUpdatedRows) !== 1) fail('CAS_MISMATCH', `the policy version in force is not ${cas}; fetch it and try again`);
        // The tenant row is held from the update above; the audit head is the last lock (docs/architecture.md, "Lock order").
        await authz.bumpInTx(trx, ctx.tenantId);
        const base = auditFrom(ctx);
        await audit.appendInTx(trx, [{
          ...base, action: 'policy.update', resource: { type: 'policy', id: ctx.tenantId, name: `version ${version}` }, outcome: 'allowed',
          context: { ...base.context, version: String(version), comment },
        }]);
      });
    } catch (err) {
      if (isUniqueViolation(err)) fail('CAS_MISMATCH', 'another policy change landed first; fetch and try again');
      throw err;
    } finally {
      authz.invalidate(ctx.tenantId);
    }
    return load(ctx.tenantId, version, version);
  }

  return {
    /** Dry run: would this text take effect? */
    async validate(ctx: TenantContext, text: string): Promise<{ valid: boolean; errors: string[] }> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      const result = engine.validate(text);
      return result.ok ? { valid: true, errors: [] } : { valid: false, errors: result.errors };
    },

    async current(ctx: TenantContext): Promise<PolicyVersion> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      const active = await activeVersion(ctx.tenantId);
      return load(ctx.tenantId, active, active);
    },

    async get(ctx: TenantContext, version: number): Promise<PolicyVersion> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      return load(ctx.tenantId, version, await activeVersion(ctx.tenantId));
    },

    async history(ctx: TenantContext): Promise<Omit<PolicyVersion, 'text'>[]> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      const active = await activeVersion(ctx.tenantId);
      const rows = await db.selectFrom('tenant_policies').select(['version', 'comment', 'created_at', 'created_by'])
        .where('tenant_id', '=', ctx.tenantId).orderBy('version', 'desc').execute();
      return rows.map((r) => ({ version: r.version, comment: r.comment, createdAt: new Date(r.created_at).toISOString(), createdBy: r.created_by, active: r.version === active }));
    },

    put: (ctx: TenantContext, input: { text: string; comment?: string; cas?: number }) => apply(ctx, input.text, input.comment ?? '', input.cas),

    async rollback(ctx: TenantContext, version: number, cas?: number): Promise<PolicyVersion> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      const old = await load(ctx.tenantId, version, -1);
      return apply(ctx, old.text, `rollback to version ${version}`, cas);
    },

    async diff(ctx: TenantContext, from: number, to: number): Promise<{ from: number; to: number; diff: string }> {
      await authz.require(ctx, 'admin', { type: 'tenant' });
      const active = await activeVersion(ctx.tenantId);
      const [a, b] = [await load(ctx.tenantId, from, active), await load(ctx.tenantId, to, active)];
      return { from, to, diff: lineDiff(a.text, b.text) };
    },
  };
}

export type PolicyService = ReturnType<typeof createPolicyService>;
