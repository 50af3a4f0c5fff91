import type { Kysely } from 'kysely';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import { newId } from '../../platform/ids.ts';
import type { Database, AccessRequestsTable, SecretsTable } from '../../storage/schema.ts';
import type { AuditLog } from '../audit/audit-log.ts';
import type { Notifier } from '../notifications/notifier.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import { secretResource, type SecretService } from '../secrets/secret-service.ts';
import { SYSTEM_ACTOR, type TenantContext } from '../shared/context.ts';
import type { TenantService } from '../tenants/tenant-service.ts';
import { ESCROW_ACTIONS, matchRule, membersOf, resolveRule, type EscrowAction, type ResolvedRule } from './access-policy.ts';
import { currentAccessPolicy } from './access-policy-service.ts';
import { groupRecipients, requestEvent, requesterRecipients, send } from './escrow-events.ts';
import { createQuorum } from './quorum.ts';
import { createRequestStore, ruleOf, secretRowsOf, usernameOf } from './request-store.ts';
import { assertPrintable, visibleLength } from '../shared/typed-text.ts';
import { MAX_JUSTIFICATION, MAX_SECRETS_PER_REQUEST, MIN_JUSTIFICATION, type AccessRequest, type FileRequestInput } from './types.ts';

export interface EscrowDeps {
  db: Kysely<Database>;
  authz: Authorizer;
  clock: Clock;
  tenants: Pick<TenantService, 'environment'>;
  secrets: Pick<SecretService, 'load' | 'authorize'>;
  audit: Pick<AuditLog, 'appendInTx' | 'record'>;
  notifier: Notifier;
  /** How recent a person's second factor must be for a step-up (break-glass asks for one, as approving does). */
  stepUpWindowMs: number;
  /**
   * The tenant's known values masked out of text people type (justifications, comments) before it is
   * stored, audited or sent: a value pasted there must not reach the trail, the API or a notification.
   */
  maskText(tenantId: string, text: string): Promise<string>;
}

/** What a request is for, checked: the secrets exist and the caller may see them, and the one rule that covers them all. */
export interface CheckedTarget {
  action: EscrowAction;
  environment: string;
  secrets: SecretsTable[];
  rule: ResolvedRule;
  policyVersion: number;
  justification: string;
}

/** Validates what a request (or a break-glass) asks for; shared by both. */
export async function checkTarget(deps: EscrowDeps, ctx: TenantContext, input: FileRequestInput): Promise<CheckedTarget> {
  if (ctx.actor.type !== 'user' && ctx.actor.type !== 'machine') fail('VALIDATION_FAILED', 'only users and machine identities file access requests (root is outside escrow)');
  if (!(ESCROW_ACTIONS as readonly string[]).includes(input.action)) fail('VALIDATION_FAILED', `action must be one of ${ESCROW_ACTIONS.join(', ')}`);
  const action = input.action as EscrowAction;
  // People read values by reveal, machines by use: a request for the other would grant nothing.
  if (action === 'reveal' && ctx.actor.type !== 'user') fail('VALIDATION_FAILED', 'machine identities use values; only a person can request reveal');
  if (action === 'use' && ctx.actor.type !== 'machine') fail('VALIDATION_FAILED', 'people read values by reveal; request reveal instead of use');
  const justification = input.justification.trim();
  if (visibleLength(justification) < MIN_JUSTIFICATION || justification.length > MAX_JUSTIFICATION) {
    fail('VALIDATION_FAILED', `justification must be ${MIN_JUSTIFICATION} to ${MAX_JUSTIFICATION} characters, at least ${MIN_JUSTIFICATION} of them visible`);
  }
  assertPrintable('justification', justification);
  const names = [...new Set(input.secrets)];
  if (names.length === 0 || names.length > MAX_SECRETS_PER_REQUEST) fail('VALIDATION_FAILED', `name 1 to ${MAX_SECRETS_PER_REQUEST} secrets`);
  await deps.tenants.environment(ctx.tenantId, input.environment);
  const { version, doc } = await currentAccessPolicy(deps.db, ctx.tenantId);
  const secrets: SecretsTable[] = [];
  let ruleId: string | null = null;
  let rule: ResolvedRule | null = null;
  for (const name of names) {
    const secret = await deps.secrets.load(ctx, name);
    // Only someone who may see a secret's name may ask for it; anyone else hears a miss.
    await deps.secrets.authorize(ctx, 'list', secretResource(secret));
    // A credential bound to one environment (a run's token) asks for nothing elsewhere: refused and audited as FORBIDDEN.
    if (ctx.actor.boundEnvironment !== undefined) await deps.authz.require(ctx, 'list', secretResource(secret), input.environment);
    const matched = matchRule(doc, { action, secretName: secret.name, classification: secret.classification, environment: input.environment });
    if (!matched) fail('NO_APPROVAL_RULE', `no access policy rule puts ${action} of "${name}" in ${input.environment} behind approval`);
    if (ruleId !== null && matched.id !== ruleId) fail('VALIDATION_FAILED', `"${name}" falls under rule "${matched.id}", the others under "${ruleId}": file one request per rule`);
    ruleId = matched.id;
    rule = resolveRule(matched);
    secrets.push(secret);
  }
  return { action, environment: input.environment, secrets, rule: rule!, policyVersion: version, justification: await deps.maskText(ctx.tenantId, justification) };
}

/** Pending requests read at a time while filling an approver's queue. */
const QUEUE_PAGE = 500;

/** The audit and notification context for transitions the server makes on its own (expiry). */
const systemContext = (ctx: TenantContext): TenantContext => ({ tenantId: ctx.tenantId, actor: SYSTEM_ACTOR, requestId: ctx.requestId });

/**
 * Access requests (SPEC §4): file, list, show, cancel, and revoke the grant one became. Expiry is
 * applied whenever requests are read or acted on, so nothing waits for a sweeper.
 */
export function createRequestService(deps: EscrowDeps) {
  const { db, authz, clock, audit, notifier } = deps;
  const store = createRequestStore();
  const quorum = createQuorum(deps);
  /** The view of a request, its quorum judged as of now. */
  const viewOf = async (ctx: TenantContext, row: AccessRequestsTable, now: number) => store.view(db, row, now, await quorum.lapsed(ctx, row));

  /** Moves every due pending request of the tenant to expired, and records grants that ran out. */
  async function expireDue(ctx: TenantContext): Promise<void> {
    const now = clock.now();
    const sys = systemContext(ctx);
    const due = await db.selectFrom('access_requests').selectAll().where('tenant_id', '=', ctx.tenantId)
      .where('state', '=', 'pending').where('expires_at', '<=', now).limit(500).execute();
    for (const row of due) {
      const done = await db.transaction().execute(async (trx) => {
        if (!(await store.lockPending(trx, ctx.tenantId, row.id))) return false;
        await store.setState(trx, row.id, 'expired', { at: now, by: SYSTEM_ACTOR.id });
        await audit.appendInTx(trx, [requestEvent(sys, 'access-request.expire', row)]);
        return true;
      });
      if (done) send(notifier, row, { type: 'escrow.request-expired', recipients: requesterRecipients(row), subject: `Access request ${row.id} expired unanswered` });
    }
    const ended = await db.selectFrom('access_grants').select('request_id').distinct().where('tenant_id', '=', ctx.tenantId)
      .where('revoked_at', 'is', null).where('expired_at', 'is', null).where('expires_at', '<=', now).limit(500).execute();
    for (const { request_id } of ended) {
      const expired = await db.transaction().execute(async (trx) => {
        const res = await trx.updateTable('access_grants').set({ expired_at: now }).where('request_id', '=', request_id)
          .where('expired_at', 'is', null).where('revoked_at', 'is', null).where('expires_at', '<=', now).executeTakeFirst();
        if (Number(res.numUpdatedRows) === 0) return null;
        const row = await store.find(trx, ctx.tenantId, request_id);
        await audit.appendInTx(trx, [requestEvent(sys, 'access-grant.expire', row)]);
        return row;
      });
      // Every transition is an event and a notification (the requester learns the access ended).
      if (expired) send(notifier, expired, { type: 'escrow.grant-expired', recipients: requesterRecipients(expired), subject: `The grant of access request ${request_id} expired` });
    }
  }

  /** Requesters, their owners, approver-group members, auditors and admins see a request; anyone else gets REQUEST_NOT_FOUND. */
  async function visible(ctx: TenantContext, row: AccessRequestsTable): Promise<boolean> {
    if (ctx.actor.type === 'root' || ctx.actor.id === row.requester_id || ctx.actor.id === row.requester_owner_id) return true;
    const username = await usernameOf(db, ctx.tenantId, ctx.actor);
    if (username !== null && membersOf((await currentAccessPolicy(db, ctx.tenantId)).doc, ruleOf(row).steps.flatMap((s) => s.groups)).has(username)) return true;
    return (await authz.allowed(ctx, 'audit:read', { type: 'tenant' })) || authz.allowed(ctx, 'admin', { type: 'tenant' });
  }

  async function load(ctx: TenantContext, id: string): Promise<AccessRequestsTable> {
    await expireDue(ctx);
    const row = await store.find(db, ctx.tenantId, id);
    if (!(await visible(ctx, row))) fail('REQUEST_NOT_FOUND', 'no such access request in this tenant');
    return row;
  }

  /**
   * Up to `limit` pending requests, newest first, waiting for a step the caller is in, neither theirs nor decided by
   * them. Read a page at a time until enough are found: most pending requests of a tenant may be other groups'.
   */
  async function queueOf(ctx: TenantContext, limit: number): Promise<AccessRequest[]> {
    const username = await usernameOf(db, ctx.tenantId, ctx.actor);
    if (username === null) return [];
    const doc = (await currentAccessPolicy(db, ctx.tenantId)).doc;
    const now = clock.now();
    const items: AccessRequest[] = [];
    for (let offset = 0; ; offset += QUEUE_PAGE) {
      const rows = await db.selectFrom('access_requests').selectAll().where('tenant_id', '=', ctx.tenantId).where('state', '=', 'pending')
        .where('requester_id', '!=', ctx.actor.id)
        .where((eb) => eb.or([eb('requester_owner_id', 'is', null), eb('requester_owner_id', '!=', ctx.actor.id)]))
        .where((eb) => eb.not(eb.exists(eb.selectFrom('access_approvals').select('request_id')
          .whereRef('access_approvals.request_id', '=', 'access_requests.id').where('access_approvals.approver_id', '=', ctx.actor.id))))
        .orderBy('created_at', 'desc').orderBy('id').limit(QUEUE_PAGE).offset(offset).execute();
      for (const row of rows) {
        if (!membersOf(doc, ruleOf(row).steps.flatMap((s) => s.groups)).has(username)) continue;
        const view = await viewOf(ctx, row, now);
        if (view.waitingForStep === null || !membersOf(doc, view.rule.steps[view.waitingForStep - 1]!.groups).has(username)) continue;
        items.push(view);
        if (items.length === limit) return items;
      }
      if (rows.length < QUEUE_PAGE) return items;
    }
  }

  return {
    expireDue,
    load,

    /** Files a request; it waits for the approvals its rule asks for, or expires unanswered. */
    async file(ctx: TenantContext, input: FileRequestInput): Promise<AccessRequest> {
      const target = await checkTarget(deps, ctx, input);
      const maxMs = target.rule.maxDurationMs;
      const durationMs = input.durationSeconds === undefined ? Math.min(3_600_000, maxMs) : input.durationSeconds * 1000;
      if (!Number.isInteger(durationMs) || durationMs < 1000 || durationMs > maxMs) {
        fail('VALIDATION_FAILED', `durationSeconds must be 1 to ${maxMs / 1000} under rule "${target.rule.id}"`);
      }
      const owner = ctx.actor.type === 'machine'
        ? (await db.selectFrom('machine_identities').select('owner_user_id').where('tenant_id', '=', ctx.tenantId).where('id', '=', ctx.actor.id).executeTakeFirst())?.owner_user_id ?? null
        : null;
      const now = clock.now();
      const row: AccessRequestsTable = {
        id: newId(), tenant_id: ctx.tenantId, requester_type: ctx.actor.type, requester_id: ctx.actor.id, requester_owner_id: owner,
        action: target.action, environment: target.environment, secrets: JSON.stringify(target.secrets.map((s) => ({ id: s.id, name: s.name }))),
        justification: target.justification, duration_ms: durationMs, state: 'pending', rule: JSON.stringify(target.rule),
        policy_version: target.policyVersion, break_glass: 0, created_at: now, expires_at: now + target.rule.requestExpiryMs,
        decided_at: null, decided_by: null, revision: 1,
      };
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('access_requests').values(row).execute();
        await audit.appendInTx(trx, [requestEvent(ctx, 'access-request.file', row, { rule: target.rule.id, durationSeconds: String(durationMs / 1000) })]);
      });
      send(notifier, row, { type: 'escrow.request-filed', recipients: groupRecipients(row, 0), subject: `Approval wanted: ${row.action} of ${input.secrets.join(', ')} in ${row.environment}` });
      return store.view(db, row, now);
    },

    async show(ctx: TenantContext, id: string): Promise<AccessRequest> {
      return viewOf(ctx, await load(ctx, id), clock.now());
    },

    /**
     * Requests the caller may see: `mine` (filed by them or a machine they own), `queue` (pending,
     * waiting for a step whose groups they are in, not theirs, not yet decided by them), or `all`.
     */
    async list(ctx: TenantContext, opts: { scope?: 'mine' | 'queue' | 'all'; state?: string; limit?: number } = {}): Promise<{ items: AccessRequest[] }> {
      await expireDue(ctx);
      const scope = opts.scope ?? 'mine';
      const limit = Math.min(Math.max(opts.limit ?? 100, 1), 500);
      if (scope === 'queue') return { items: await queueOf(ctx, limit) };
      let q = db.selectFrom('access_requests').selectAll().where('tenant_id', '=', ctx.tenantId);
      if (scope === 'mine') q = q.where((eb) => eb.or([eb('requester_id', '=', ctx.actor.id), eb('requester_owner_id', '=', ctx.actor.id)]));
      if (opts.state) q = q.where('state', '=', opts.state);
      const rows = await q.orderBy('created_at', 'desc').limit(limit).execute();
      const now = clock.now();
      const items: AccessRequest[] = [];
      for (const row of rows) {
        if (scope === 'mine' || (await visible(ctx, row))) items.push(await viewOf(ctx, row, now));
      }
      return { items };
    },

    /** The requester withdraws a pending request. */
    async cancel(ctx: TenantContext, id: string): Promise<AccessRequest> {
      const row = await load(ctx, id);
      if (ctx.actor.id !== row.requester_id && ctx.actor.id !== row.requester_owner_id) await authz.require(ctx, 'admin', { type: 'tenant' });
      const now = clock.now();
      await db.transaction().execute(async (trx) => {
        if (!(await store.lockPending(trx, ctx.tenantId, id))) fail(row.state === 'expired' ? 'REQUEST_EXPIRED' : 'REQUEST_NOT_PENDING', `the request is ${(await store.find(trx, ctx.tenantId, id)).state}`);
        await store.setState(trx, id, 'cancelled', { at: now, by: ctx.actor.id });
        await audit.appendInTx(trx, [requestEvent(ctx, 'access-request.cancel', row)]);
      });
      send(notifier, row, { type: 'escrow.request-cancelled', recipients: groupRecipients(row), subject: `Access request ${id} was cancelled` });
      return store.view(db, await store.find(db, ctx.tenantId, id), now);
    },

    /** Ends an approved request's grant early: its requester, someone who may approve it, or an admin. */
    async revoke(ctx: TenantContext, id: string, opts: { comment?: string } = {}): Promise<AccessRequest> {
      const row = await load(ctx, id);
      const own = ctx.actor.id === row.requester_id || ctx.actor.id === row.requester_owner_id;
      if (!own && !(await authz.allowed(ctx, 'admin', { type: 'tenant' }))) {
        for (const s of await secretRowsOf(db, row)) await authz.require(ctx, 'approve', secretResource(s), row.environment);
      }
      if (opts.comment) assertPrintable('comment', opts.comment);
      const comment = opts.comment ? await deps.maskText(ctx.tenantId, opts.comment) : '';
      const now = clock.now();
      try {
        await db.transaction().execute(async (trx) => {
          const res = await trx.updateTable('access_grants').set({ revoked_at: now, revoked_by: ctx.actor.id })
            .where('tenant_id', '=', ctx.tenantId).where('request_id', '=', id).where('revoked_at', 'is', null).where('expires_at', '>', now).executeTakeFirst();
          if (Number(res.numUpdatedRows) === 0) fail('REQUEST_NOT_ACTIVE', 'this request has no live grant to revoke');
          await authz.bumpInTx(trx, ctx.tenantId);
          await audit.appendInTx(trx, [requestEvent(ctx, 'access-grant.revoke', row, comment ? { comment } : {})]);
        });
      } finally {
        // However the commit ended: one whose answer was lost may still have revoked the grant.
        await authz.invalidate(ctx.tenantId);
      }
      send(notifier, row, { type: 'escrow.grant-revoked', recipients: requesterRecipients(row), subject: `The grant of access request ${id} was revoked` });
      return store.view(db, row, now);
    },
  };
}

export type RequestService = ReturnType<typeof createRequestService>;
