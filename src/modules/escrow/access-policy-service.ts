import type { Kysely } from 'kysely';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import type { Executor } from '../../storage/database.ts';
import { isUniqueViolation } from '../../storage/db-errors.ts';
import type { AccessRequestsTable, Database } from '../../storage/schema.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import { lineDiff } from '../policy/diff.ts';
import type { TenantContext } from '../shared/context.ts';
import type { Notifier } from '../notifications/notifier.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import { groupRecipients, requesterRecipients, send } from './escrow-events.ts';
import { supersedePending } from './supersede.ts';
import { checkAccessPolicy, EMPTY_POLICY, environmentsIn, membersOf, usernamesIn, type AccessPolicyDocument } from './access-policy.ts';

export interface AccessPolicyVersion {
  version: number;
  document: AccessPolicyDocument;
  comment: string;
  createdAt: string;
  createdBy: string;
  active: boolean;
}

/** The access policy in force for a tenant (the latest version; version 0 = none, nothing needs approval). */
export async function currentAccessPolicy(db: Executor, tenantId: string): Promise<{ version: number; doc: AccessPolicyDocument }> {
  const row = await db.selectFrom('access_policies').select(['version', 'document']).where('tenant_id', '=', tenantId)
    .orderBy('version', 'desc').limit(1).executeTakeFirst();
  return row ? { version: row.version, doc: JSON.parse(row.document) as AccessPolicyDocument } : { version: 0, doc: EMPTY_POLICY };
}

/** The usernames in these approver groups of the tenant's access policy in force (whom a group's notification reaches). */
export async function approverGroupMembers(db: Executor, tenantId: string, groups: readonly string[]): Promise<string[]> {
  const { doc } = await currentAccessPolicy(db, tenantId);
  return [...membersOf(doc, groups)];
}

/**
 * Access policies as versioned documents, like tenant Cedar policies: a new version is checked
 * (shape, groups, satisfiable steps, known users and environments) before it is stored, and takes
 * effect at once; rollback re-applies an old document as a new version, so history only grows.
 */
export function createAccessPolicyService(deps: {
  db: Kysely<Database>; authz: Authorizer; clock: Clock; tenants: Pick<TenantService, 'environment'>; audit: Pick<AuditLog, 'appendInTx'>;
  maskText(tenantId: string, text: string): Promise<string>;
  /** Requesters (and approvers) hear when a new policy supersedes a request still waiting. */
  notifier: Notifier;
}) {
  const { db, authz, clock, tenants, audit } = deps;
  const admin = (ctx: TenantContext) => authz.require(ctx, 'admin', { type: 'tenant' });

  async function load(tenantId: string, version: number, active: number): Promise<AccessPolicyVersion> {
    if (version === 0) return { version: 0, document: EMPTY_POLICY, comment: 'no access policy', createdAt: new Date(0).toISOString(), createdBy: 'keyhold', active: active === 0 };
    const row = await db.selectFrom('access_policies').selectAll().where('tenant_id', '=', tenantId).where('version', '=', version).executeTakeFirst();
    if (!row) fail('ACCESS_POLICY_VERSION_NOT_FOUND', `no access policy version ${version}`);
    return { version, document: JSON.parse(row.document), comment: row.comment, createdAt: new Date(row.created_at).toISOString(), createdBy: row.created_by, active: active === version };
  }

  async function check(tenantId: string, input: unknown): Promise<AccessPolicyDocument> {
    const checked = checkAccessPolicy(input);
    if (!checked.ok) fail('ACCESS_POLICY_INVALID', `the access policy is not valid: ${checked.errors.join('; ')}`);
    const names = usernamesIn(checked.doc);
    const known = names.length === 0 ? [] : await db.selectFrom('users').select('username').where('tenant_id', '=', tenantId).where('username', 'in', names).execute();
    const missing = names.filter((n) => !known.some((k) => k.username === n));
    if (missing.length > 0) fail('ACCESS_POLICY_INVALID', `the access policy names users this tenant does not have: ${missing.slice(0, 5).join(', ')}`);
    for (const env of environmentsIn(checked.doc)) {
      await tenants.environment(tenantId, env).catch(() => fail('ACCESS_POLICY_INVALID', `the access policy names an environment this tenant does not have: ${env}`));
    }
    return checked.doc;
  }

  async function apply(ctx: TenantContext, doc: AccessPolicyDocument, comment: string): Promise<AccessPolicyVersion> {
    let version = 0;
    let superseded: AccessRequestsTable[] = [];
    const now = clock.now();
    try {
      await db.transaction().execute(async (trx) => {
        version = (await currentAccessPolicy(trx, ctx.tenantId)).version + 1;
        await trx.insertInto('access_policies').values({
          tenant_id: ctx.tenantId, version, document: JSON.stringify(doc), comment, created_at: now, created_by: ctx.actor.id,
        }).execute();
        // Requests, then the tenant row, then the audit head (docs/architecture.md, "Lock order"): a decision
        // locks its request, then bumps the tenant's generation; a KEK rotation updates the tenant row, then
        // appends. Either other order here deadlocked one of them racing a policy change (PostgreSQL 40P01).
        const pending = await supersedePending(trx, ctx, doc, version, now);
        superseded = pending.rows;
        await authz.bumpInTx(trx, ctx.tenantId);
        const base = auditFrom(ctx);
        await audit.appendInTx(trx, [...pending.events, {
          ...base, action: 'access-policy.update', resource: { type: 'access-policy', id: ctx.tenantId, name: `version ${version}` }, outcome: 'allowed',
          context: { ...base.context, version: String(version), comment, rules: doc.rules.map((r) => r.id).join(','), groups: Object.keys(doc.groups).join(',') },
        }]);
      });
    } catch (err) {
      if (isUniqueViolation(err)) fail('CAS_MISMATCH', 'another access policy change landed first; fetch and try again');
      throw err;
    } finally {
      // Decisions read the rules: drop every cached one of this tenant, however the commit ended
      // (a commit whose answer was lost may still have landed; other nodes follow the generation).
      await authz.invalidate(ctx.tenantId);
    }
    for (const row of superseded) {
      send(deps.notifier, row, {
        type: 'escrow.request-superseded', recipients: [...requesterRecipients(row), ...groupRecipients(row)],
        subject: `Access request ${row.id} was superseded by access policy version ${version}: file it again if it is still needed`,
      });
    }
    return load(ctx.tenantId, version, version);
  }

  return {
    /** Dry run: would this document be accepted? */
    async validate(ctx: TenantContext, document: unknown): Promise<{ valid: boolean; errors: string[] }> {
      await admin(ctx);
      try {
        await check(ctx.tenantId, document);
        return { valid: true, errors: [] };
      } catch (err) {
        if ((err as { code?: string }).code === 'ACCESS_POLICY_INVALID') return { valid: false, errors: [(err as Error).message] };
        throw err;
      }
    },

    async current(ctx: TenantContext): Promise<AccessPolicyVersion> {
      await admin(ctx);
      const { version } = await currentAccessPolicy(db, ctx.tenantId);
      return load(ctx.tenantId, version, version);
    },

    async get(ctx: TenantContext, version: number): Promise<AccessPolicyVersion> {
      await admin(ctx);
      return load(ctx.tenantId, version, (await currentAccessPolicy(db, ctx.tenantId)).version);
    },

    async history(ctx: TenantContext): Promise<Omit<AccessPolicyVersion, 'document'>[]> {
      await admin(ctx);
      const rows = await db.selectFrom('access_policies').select(['version', 'comment', 'created_at', 'created_by'])
        .where('tenant_id', '=', ctx.tenantId).orderBy('version', 'desc').execute();
      const active = rows[0]?.version ?? 0;
      return rows.map((r) => ({ version: r.version, comment: r.comment, createdAt: new Date(r.created_at).toISOString(), createdBy: r.created_by, active: r.version === active }));
    },

    async put(ctx: TenantContext, input: { document: unknown; comment?: string }): Promise<AccessPolicyVersion> {
      await admin(ctx);
      return apply(ctx, await check(ctx.tenantId, input.document), await deps.maskText(ctx.tenantId, input.comment ?? ''));
    },

    /** Re-applies an older version as a new one (checked again: its users or environments may be gone). */
    async rollback(ctx: TenantContext, version: number): Promise<AccessPolicyVersion> {
      await admin(ctx);
      const old = await load(ctx.tenantId, version, -1);
      return apply(ctx, await check(ctx.tenantId, old.document), `rollback to version ${version}`);
    },

    async diff(ctx: TenantContext, from: number, to: number): Promise<{ from: number; to: number; diff: string }> {
      await admin(ctx);
      const [a, b] = [await load(ctx.tenantId, from, -1), await load(ctx.tenantId, to, -1)];
      return { from, to, diff: lineDiff(JSON.stringify(a.document, null, 2), JSON.stringify(b.document, null, 2)) };
    },
  };
}

export type AccessPolicyService = ReturnType<typeof createAccessPolicyService>;
