import type { Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * Escrow (SPEC §4): versioned access policies (approval rules and approver groups in one JSON
 * document per version), access requests, one row per approver's decision, the grants approved
 * requests become, and the post-hoc reviews break-glass opens.
 */
export async function up(db: Kysely<unknown>, _dialect: DialectName): Promise<void> {
  await db.schema.createTable('access_policies')
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('version', 'integer', (c) => c.notNull())
    // The whole document (groups + rules) as JSON; the latest version is the one in force.
    .addColumn('document', 'text', (c) => c.notNull())
    .addColumn('comment', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('access_policies_pk', ['tenant_id', 'version'])
    .execute();

  await db.schema.createTable('access_requests')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    // 'user' or 'machine'
    .addColumn('requester_type', 'text', (c) => c.notNull())
    .addColumn('requester_id', 'text', (c) => c.notNull())
    // The person a requesting machine identity belongs to, recorded when the request is filed:
    // separation of duties counts them as the requester.
    .addColumn('requester_owner_id', 'text')
    .addColumn('action', 'text', (c) => c.notNull())
    .addColumn('environment', 'text', (c) => c.notNull())
    // JSON array of { id, name }.
    .addColumn('secrets', 'text', (c) => c.notNull())
    .addColumn('justification', 'text', (c) => c.notNull())
    // Requested lifetime of the grant; approvers may only shorten it.
    .addColumn('duration_ms', 'bigint', (c) => c.notNull())
    // pending | approved | denied | expired | cancelled
    .addColumn('state', 'text', (c) => c.notNull())
    // The rule (id, steps, limits) in force when the request was filed, as JSON.
    .addColumn('rule', 'text', (c) => c.notNull())
    .addColumn('policy_version', 'integer', (c) => c.notNull())
    .addColumn('break_glass', 'integer', (c) => c.notNull().defaultTo(0))
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    // An unanswered request expires at this time.
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('decided_at', 'bigint')
    .addColumn('decided_by', 'text')
    // Bumped on every change: approvers lock the row through it, so concurrent decisions serialise.
    .addColumn('revision', 'integer', (c) => c.notNull().defaultTo(1))
    .execute();
  await db.schema.createIndex('access_requests_tenant_state').on('access_requests').columns(['tenant_id', 'state']).execute();

  await db.schema.createTable('access_approvals')
    .addColumn('request_id', 'text', (c) => c.notNull().references('access_requests.id'))
    .addColumn('tenant_id', 'text', (c) => c.notNull())
    .addColumn('approver_id', 'text', (c) => c.notNull())
    // 'approve' or 'deny'
    .addColumn('decision', 'text', (c) => c.notNull())
    // The step (0-based) this approval counted towards.
    .addColumn('step', 'integer', (c) => c.notNull())
    .addColumn('comment', 'text', (c) => c.notNull())
    .addColumn('duration_ms', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    // One person counts once, however many groups they are in.
    .addPrimaryKeyConstraint('access_approvals_pk', ['request_id', 'approver_id'])
    .execute();

  await db.schema.createTable('access_grants')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('request_id', 'text', (c) => c.notNull().references('access_requests.id'))
    .addColumn('principal_type', 'text', (c) => c.notNull())
    .addColumn('principal_id', 'text', (c) => c.notNull())
    .addColumn('secret_id', 'text', (c) => c.notNull())
    .addColumn('secret_name', 'text', (c) => c.notNull())
    .addColumn('environment', 'text', (c) => c.notNull())
    .addColumn('action', 'text', (c) => c.notNull())
    // JSON array of the user ids whose approvals made this grant (separation of duties reads it).
    .addColumn('approvers', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .addColumn('revoked_by', 'text')
    // When the expiry was recorded in the audit trail (decisions never read it: they compare expires_at with now).
    .addColumn('expired_at', 'bigint')
    // A request becomes its grants exactly once.
    .addUniqueConstraint('access_grants_request_secret', ['request_id', 'secret_id'])
    .execute();
  await db.schema.createIndex('access_grants_tenant').on('access_grants').columns(['tenant_id', 'expires_at']).execute();

  await db.schema.createTable('access_reviews')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('request_id', 'text', (c) => c.notNull().unique().references('access_requests.id'))
    .addColumn('opened_at', 'bigint', (c) => c.notNull())
    .addColumn('reviewed_at', 'bigint')
    .addColumn('reviewed_by', 'text')
    // 'justified' or 'unjustified' once reviewed.
    .addColumn('outcome', 'text')
    .addColumn('comment', 'text')
    .execute();
  await db.schema.createIndex('access_reviews_tenant').on('access_reviews').columns(['tenant_id', 'reviewed_at']).execute();
}
