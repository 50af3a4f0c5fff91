import { fail } from '../../errors/index.ts';
import { newId } from '../../platform/ids.ts';
import type { AccessRequestsTable, AccessReviewsTable } from '../../storage/schema.ts';
import { auditFrom } from '../audit/audit-log.ts';
import { secretResource } from '../secrets/secret-service.ts';
import type { TenantContext } from '../shared/context.ts';
import { groupRecipients, requestEvent, requesterRecipients, send } from './escrow-events.ts';
import { createRequestStore, secretRowsOf, secretsOf, usernameOf } from './request-store.ts';
import { checkTarget, type EscrowDeps, type RequestService } from './request-service.ts';
import { assertPrintable, visibleLength } from '../shared/typed-text.ts';
import { MAX_COMMENT, type AccessRequest, type BreakGlassReview, type FileRequestInput } from './types.ts';
import { isKeyholdError } from '../../errors/index.ts';
import { isoTime as iso } from '../../platform/clock.ts';

function toReview(review: AccessReviewsTable, request: AccessRequestsTable): BreakGlassReview {
  return {
    id: review.id, requestId: request.id, takenBy: `${request.requester_type}:${request.requester_id}`, secrets: secretsOf(request).map((s) => s.name),
    environment: request.environment, action: request.action, justification: request.justification, openedAt: iso(review.opened_at)!,
    state: review.reviewed_at === null ? 'open' : 'done', reviewedAt: iso(review.reviewed_at), reviewedBy: review.reviewed_by,
    outcome: review.outcome, comment: review.comment,
  };
}

/**
 * Break-glass (SPEC §4): a person the covering rule lists takes access at once, with a fresh second factor and a
 * justification. The grant is short (the rule's, default 1 h), the event is high severity, an
 * alert goes to every approver group, and a review by someone else stays open until done.
 */
export function createBreakGlassService(deps: EscrowDeps & { requests: Pick<RequestService, 'load'> }) {
  const { db, authz, clock, audit, notifier, requests } = deps;
  const store = createRequestStore();

  async function reviewPair(ctx: TenantContext, reviewId: string) {
    const review = await db.selectFrom('access_reviews').selectAll().where('tenant_id', '=', ctx.tenantId).where('id', '=', reviewId).executeTakeFirst();
    if (!review) fail('REVIEW_NOT_FOUND', 'no such break-glass review in this tenant');
    // Seeing the review means seeing its request (same visibility rules).
    const request = await requests.load(ctx, review.request_id).catch(() => fail('REVIEW_NOT_FOUND', 'no such break-glass review in this tenant'));
    return { review, request };
  }

  return {
    async breakGlass(ctx: TenantContext, input: FileRequestInput): Promise<AccessRequest> {
      const target = await checkTarget(deps, ctx, input);
      const username = await usernameOf(db, ctx.tenantId, ctx.actor);
      const allowed = target.rule.breakGlass;
      // A refused break-glass is itself worth an auditor's look.
      const refuse = async (reason: 'BREAK_GLASS_NOT_ALLOWED' | 'STEP_UP_REQUIRED', message: string): Promise<never> => {
        const base = auditFrom(ctx);
        await audit.record([{
          ...base, action: 'access-request.break-glass', outcome: 'denied', reason,
          resource: { type: 'access-request', id: null, name: target.secrets.map((s) => s.name).join(',') }, environment: target.environment,
          context: { ...base.context, requestedAction: target.action, justification: target.justification, severity: 'high', rule: target.rule.id },
        }]);
        return fail(reason, message);
      };
      if (!allowed || username === null || !allowed.users.includes(username)) return refuse('BREAK_GLASS_NOT_ALLOWED', `rule "${target.rule.id}" does not list you for break-glass`);
      // It stands in for the approvals, each of which needs a fresh second factor: a session alone (a stolen one, or one
      // that never gave a factor) must not take a `write` no step-up guards, or even a grant it cannot yet use.
      const mfaAt = ctx.actor.mfaAt ?? null;
      if (mfaAt === null || clock.now() - mfaAt > deps.stepUpWindowMs) return refuse('STEP_UP_REQUIRED', 'break-glass needs a second factor within the step-up window: POST /v1/auth/step-up');
      const durationMs = input.durationSeconds === undefined ? allowed.durationMs : input.durationSeconds * 1000;
      if (!Number.isInteger(durationMs) || durationMs < 1000 || durationMs > allowed.durationMs) {
        fail('VALIDATION_FAILED', `break-glass lasts at most ${allowed.durationMs / 1000} seconds under rule "${target.rule.id}"`);
      }
      const now = clock.now();
      const row: AccessRequestsTable = {
        id: newId(), tenant_id: ctx.tenantId, requester_type: 'user', requester_id: ctx.actor.id, requester_owner_id: null,
        action: target.action, environment: target.environment, secrets: JSON.stringify(target.secrets.map((s) => ({ id: s.id, name: s.name }))),
        justification: target.justification, duration_ms: durationMs, state: 'approved', rule: JSON.stringify(target.rule),
        policy_version: target.policyVersion, break_glass: 1, created_at: now, expires_at: now, decided_at: now, decided_by: ctx.actor.id, revision: 1,
      };
      await db.transaction().execute(async (trx) => {
        await trx.insertInto('access_requests').values(row).execute();
        await trx.insertInto('access_grants').values(target.secrets.map((s) => ({
          id: newId(), tenant_id: ctx.tenantId, request_id: row.id, principal_type: 'user', principal_id: ctx.actor.id, secret_id: s.id, secret_name: s.name,
          environment: target.environment, action: target.action, approvers: '[]', created_at: now, expires_at: now + durationMs,
          revoked_at: null, revoked_by: null, expired_at: null,
        }))).execute();
        await trx.insertInto('access_reviews').values({ id: newId(), tenant_id: ctx.tenantId, request_id: row.id, opened_at: now, reviewed_at: null, reviewed_by: null, outcome: null, comment: null }).execute();
        await authz.bumpInTx(trx, ctx.tenantId);
        await audit.appendInTx(trx, [requestEvent(ctx, 'access-request.break-glass', row, {
          severity: 'high', rule: target.rule.id, durationSeconds: String(durationMs / 1000), grantExpiresAt: new Date(now + durationMs).toISOString(),
        })]);
      });
      await authz.invalidate(ctx.tenantId);
      send(notifier, row, {
        type: 'escrow.break-glass', severity: 'alert', recipients: [...groupRecipients(row), ...requesterRecipients(row)],
        subject: `BREAK-GLASS: ${username} took ${row.action} of ${target.secrets.map((s) => s.name).join(', ')} in ${row.environment}; review required`,
      });
      return store.view(db, row, now);
    },

    /** Break-glass reviews the caller may see; `open` (default) until someone else has reviewed them. */
    async listReviews(ctx: TenantContext, opts: { state?: 'open' | 'done' | 'all' } = {}): Promise<{ items: BreakGlassReview[] }> {
      let q = db.selectFrom('access_reviews').selectAll().where('tenant_id', '=', ctx.tenantId);
      const state = opts.state ?? 'open';
      if (state === 'open') q = q.where('reviewed_at', 'is', null);
      if (state === 'done') q = q.where('reviewed_at', 'is not', null);
      const items: BreakGlassReview[] = [];
      for (const review of await q.orderBy('opened_at', 'desc').limit(500).execute()) {
        // A request the caller may not see is left out; any other failure (the database, an expiry
        // the log cannot record) fails the list rather than pass for "nothing to review".
        const request = await requests.load(ctx, review.request_id).catch((err: unknown) => {
          if (isKeyholdError(err) && err.code === 'REQUEST_NOT_FOUND') return null;
          throw err;
        });
        if (request) items.push(toReview(review, request));
      }
      return { items };
    },

    async showReview(ctx: TenantContext, id: string): Promise<BreakGlassReview> {
      const { review, request } = await reviewPair(ctx, id);
      return toReview(review, request);
    },

    /** Completes a review: someone other than the person who broke the glass, allowed to approve its secrets (fresh factor). */
    async review(ctx: TenantContext, id: string, input: { outcome: 'justified' | 'unjustified'; comment: string }): Promise<BreakGlassReview> {
      const typed = input.comment.trim();
      if (visibleLength(typed) === 0 || typed.length > MAX_COMMENT) fail('VALIDATION_FAILED', `a review needs a comment of 1 to ${MAX_COMMENT} characters, not all of them invisible`);
      assertPrintable('comment', typed);
      const comment = await deps.maskText(ctx.tenantId, typed);
      const { review, request } = await reviewPair(ctx, id);
      if (ctx.actor.id === request.requester_id) {
        // Like a refused self-approval: the taker trying to clear their own break-glass is worth an auditor's look.
        await audit.record([requestEvent(ctx, 'access-review.complete', request, { reviewId: review.id, reason: 'SELF_APPROVAL' }, 'denied')]);
        fail('SELF_APPROVAL', 'the person who broke the glass cannot review it');
      }
      // A review is a person's act with a second factor (the step-up policy binds people only): never a machine's,
      // which could be one the taker runs.
      if ((await usernameOf(db, ctx.tenantId, ctx.actor)) === null) fail('NOT_AN_APPROVER', 'only a person reviews a break-glass');
      for (const s of await secretRowsOf(db, request)) await authz.require(ctx, 'approve', secretResource(s), request.environment);
      const now = clock.now();
      await db.transaction().execute(async (trx) => {
        const res = await trx.updateTable('access_reviews').set({ reviewed_at: now, reviewed_by: ctx.actor.id, outcome: input.outcome, comment })
          .where('id', '=', review.id).where('reviewed_at', 'is', null).executeTakeFirst();
        if (Number(res.numUpdatedRows) === 0) fail('REVIEW_ALREADY_DONE', 'this break-glass review was already completed');
        await audit.appendInTx(trx, [requestEvent(ctx, 'access-review.complete', request, { reviewId: review.id, outcome: input.outcome, comment })]);
      });
      send(notifier, request, {
        type: 'escrow.review-done', recipients: [...groupRecipients(request), ...requesterRecipients(request)],
        subject: `Break-glass review done (${input.outcome}) for access request ${request.id}`, body: comment,
      });
      return toReview((await db.selectFrom('access_reviews').selectAll().where('id', '=', review.id).executeTakeFirstOrThrow()), request);
    },
  };
}

export type BreakGlassService = ReturnType<typeof createBreakGlassService>;
