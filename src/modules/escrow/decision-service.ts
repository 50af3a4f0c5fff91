import { fail } from '../../errors/index.ts';
import { newId } from '../../platform/ids.ts';
import { isUniqueViolation } from '../../storage/db-errors.ts';
import type { AccessRequestsTable } from '../../storage/schema.ts';
import { secretResource } from '../secrets/secret-service.ts';
import type { TenantContext } from '../shared/context.ts';
import { membersOf } from './access-policy.ts';
import { currentAccessPolicy } from './access-policy-service.ts';
import { groupRecipients, requestEvent, requesterRecipients, send } from './escrow-events.ts';
import { createRequestStore, ruleOf, secretRowsOf, secretsOf, usernameOf, pendingStep, waitingStep } from './request-store.ts';
import type { EscrowDeps, RequestService } from './request-service.ts';
import { createQuorum } from './quorum.ts';
import { assertPrintable, visibleLength } from '../shared/typed-text.ts';
import { MAX_COMMENT, type AccessRequest } from './types.ts';

/**
 * Approving and denying (SPEC §3, §4). Separation of duties is enforced here, not advised: the
 * requester (or the owner of the requesting machine) never decides their own request; each person
 * decides a request once, whatever groups they are in; an approver must be in a group of the step
 * the request waits for (steps run in order), hold `approve` on every secret, and have a fresh
 * second factor. Concurrent deciders are serialised on the request row, so the grant is created once.
 */
export function createDecisionService(deps: EscrowDeps & { requests: Pick<RequestService, 'load'> }) {
  const { db, authz, clock, audit, notifier, requests } = deps;
  const store = createRequestStore();
  const quorum = createQuorum(deps);

  /** Everything that can be checked before the transaction; the step is checked again inside it. */
  async function precheck(ctx: TenantContext, id: string, comment: string): Promise<{ row: AccessRequestsTable; username: string }> {
    if (comment.length > MAX_COMMENT) fail('VALIDATION_FAILED', `comment is at most ${MAX_COMMENT} characters`);
    assertPrintable('comment', comment);
    const row = await requests.load(ctx, id);
    if (row.state === 'expired') fail('REQUEST_EXPIRED', 'the request expired unanswered; it can no longer be decided');
    if (row.state !== 'pending') fail('REQUEST_NOT_PENDING', `the request is already ${row.state}`);
    // A person decides; a machine they own is them too (its owner was recorded when it filed).
    if (ctx.actor.id === row.requester_id || ctx.actor.id === row.requester_owner_id) {
      await audit.record([requestEvent(ctx, 'access-request.decide', row, { reason: 'SELF_APPROVAL' }, 'denied')]);
      fail('SELF_APPROVAL', 'you cannot decide a request you filed, or one filed by a machine identity you own');
    }
    const username = await usernameOf(db, ctx.tenantId, ctx.actor);
    if (username === null) fail('NOT_AN_APPROVER', 'only people in an approver group decide requests');
    // `approve` on every secret, for this environment: the built-in step-up policy asks for a fresh factor.
    for (const s of await secretRowsOf(db, row)) await authz.require(ctx, 'approve', secretResource(s), row.environment);
    return { row, username };
  }

  async function decide(ctx: TenantContext, id: string, decision: 'approve' | 'deny', input: { comment: string; durationSeconds?: number }): Promise<AccessRequest> {
    const typed = input.comment.trim();
    const { row, username } = await precheck(ctx, id, typed);
    const comment = await deps.maskText(ctx.tenantId, typed);
    const doc = (await currentAccessPolicy(db, ctx.tenantId)).doc;
    const rule = ruleOf(row);
    // Decided before the transaction, as precheck is (the authorizer reads outside it); an approval racing in meanwhile was checked as it was made.
    const lapsed = await quorum.lapsed(ctx, row, { doc, except: ctx.actor.id });
    const now = clock.now();
    let outcome = 'recorded' as 'recorded' | 'approved' | 'denied';
    let durationMs = row.duration_ms;
    try {
      await db.transaction().execute(async (trx) => {
        if (!(await store.lockPending(trx, ctx.tenantId, id))) {
          const state = (await store.find(trx, ctx.tenantId, id)).state;
          fail(state === 'expired' ? 'REQUEST_EXPIRED' : 'REQUEST_NOT_PENDING', `the request is already ${state}`);
        }
        const fresh = await store.find(trx, ctx.tenantId, id);
        if (fresh.expires_at <= now) fail('REQUEST_EXPIRED', 'the request expired unanswered; it can no longer be decided');
        const all = await store.approvals(trx, id);
        if (all.some((a) => a.approver_id === ctx.actor.id)) fail('ALREADY_DECIDED', 'you already decided this request; one person counts once');
        const decisions = all.filter((a) => !lapsed.has(a.approver_id));
        const step = pendingStep(rule, decisions);
        const stepRule = rule.steps[step]!;
        if (!membersOf(doc, stepRule.groups).has(username)) {
          fail('NOT_AN_APPROVER', `the request waits for step ${step + 1} of ${rule.steps.length} (groups: ${stepRule.groups.join(', ')}), which you are not in`);
        }
        durationMs = fresh.duration_ms;
        if (input.durationSeconds !== undefined) {
          if (decision === 'deny') fail('VALIDATION_FAILED', 'durationSeconds applies to approvals only');
          const shortened = input.durationSeconds * 1000;
          if (!Number.isInteger(shortened) || shortened < 1000 || shortened > durationMs) fail('VALIDATION_FAILED', `approvers can only shorten the duration: 1 to ${durationMs / 1000} seconds`);
          durationMs = shortened;
        }
        await trx.insertInto('access_approvals').values({
          request_id: id, tenant_id: ctx.tenantId, approver_id: ctx.actor.id, decision, step, comment,
          duration_ms: input.durationSeconds === undefined ? null : durationMs, created_at: now, source_ip: ctx.sourceIp ?? null,
        }).execute();
        const events = [requestEvent(ctx, `access-request.${decision}`, fresh, { step: String(step + 1), comment, ...(input.durationSeconds !== undefined ? { durationSeconds: String(durationMs / 1000) } : {}) })];
        if (decision === 'deny') {
          outcome = 'denied';
          await store.setState(trx, id, 'denied', { at: now, by: ctx.actor.id });
          events.push(requestEvent(ctx, 'access-request.denied', fresh));
        } else if (waitingStep(rule, [...decisions, { decision, step }]) === -1) {
          outcome = 'approved';
          await store.setState(trx, id, 'approved', { at: now, by: ctx.actor.id }, durationMs);
          // Everyone who approved, lapsed or not, is kept from carrying out a rotation it allows (separation of duties).
          const approvers = [...all.filter((a) => a.decision === 'approve').map((a) => a.approver_id), ctx.actor.id];
          const expiresAt = now + durationMs;
          // One grant per secret, exactly as narrow as the request; the unique (request, secret) key makes it once.
          await trx.insertInto('access_grants').values(secretsOf(fresh).map((s) => ({
            id: newId(), tenant_id: ctx.tenantId, request_id: id, principal_type: fresh.requester_type, principal_id: fresh.requester_id,
            secret_id: s.id, secret_name: s.name, environment: fresh.environment, action: fresh.action, approvers: JSON.stringify(approvers),
            created_at: now, expires_at: expiresAt, revoked_at: null, revoked_by: null, expired_at: null,
          }))).execute();
          events.push(requestEvent(ctx, 'access-request.approved', fresh, { approvers: approvers.join(','), grantExpiresAt: new Date(expiresAt).toISOString() }));
          await authz.bumpInTx(trx, ctx.tenantId);
        } else if (durationMs !== fresh.duration_ms) {
          await store.setState(trx, id, 'pending', null, durationMs);
        }
        await audit.appendInTx(trx, events);
      });
    } catch (err) {
      // The primary key (request, approver) catches a second decision that raced the first.
      if (isUniqueViolation(err)) fail('ALREADY_DECIDED', 'you already decided this request; one person counts once');
      throw err;
    }
    if (outcome === 'approved') await authz.invalidate(ctx.tenantId);
    const names = secretsOf(row).map((s) => s.name).join(', ');
    if (outcome === 'approved') send(notifier, row, { type: 'escrow.request-approved', recipients: requesterRecipients(row), subject: `Approved: ${row.action} of ${names} in ${row.environment}` });
    else if (outcome === 'denied') send(notifier, row, { type: 'escrow.request-denied', recipients: requesterRecipients(row), subject: `Denied: ${row.action} of ${names} in ${row.environment}`, body: `Denied by ${username}: ${comment}` });
    else {
      const next = pendingStep(rule, (await store.approvals(db, id)).filter((a) => !lapsed.has(a.approver_id)));
      send(notifier, row, { type: 'escrow.approval-recorded', recipients: [...requesterRecipients(row), ...groupRecipients(row, next)], subject: `Approval recorded on ${row.action} of ${names}; waiting for step ${next + 1}` });
    }
    return store.view(db, await store.find(db, ctx.tenantId, id), clock.now(), lapsed);
  }

  return {
    /** Approves; the last approval the rule needs turns the request into its grants. Approvers may shorten the duration. */
    approve: (ctx: TenantContext, id: string, input: { comment?: string; durationSeconds?: number } = {}) =>
      decide(ctx, id, 'approve', { comment: input.comment ?? '', ...(input.durationSeconds !== undefined ? { durationSeconds: input.durationSeconds } : {}) }),

    /** Denies: one eligible approver's denial ends the request. A comment is required. */
    async deny(ctx: TenantContext, id: string, input: { comment: string }): Promise<AccessRequest> {
      if (visibleLength(input.comment) === 0) fail('VALIDATION_FAILED', 'a denial needs a comment saying why (one a reader can see)');
      return decide(ctx, id, 'deny', { comment: input.comment });
    },
  };
}

export type DecisionService = ReturnType<typeof createDecisionService>;
