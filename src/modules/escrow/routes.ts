import type { FastifyInstance } from 'fastify';
import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { Type } from 'typebox';
import { tenantContextOf } from '../../http/auth.ts';
import { errorResponses, SecretName, Slug } from '../../http/schemas.ts';
import { AccessPolicySchema, ESCROW_ACTIONS, MAX_GRANT_SECONDS } from './access-policy.ts';
import type { EscrowModule } from './index.ts';
import { MAX_COMMENT, MAX_JUSTIFICATION, MAX_SECRETS_PER_REQUEST } from './types.ts';

const Nullable = <T extends Parameters<typeof Type.Union>[0][number]>(t: T) => Type.Union([t, Type.Null()]);
const Steps = Type.Array(Type.Object({ groups: Type.Array(Type.String()), approvals: Type.Integer() }));

const RequestSchema = Type.Object({
  id: Type.String(),
  requester: Type.Object({ type: Type.String(), id: Type.String(), ownerId: Nullable(Type.String()) }),
  action: Type.String(), environment: Type.String(),
  secrets: Type.Array(Type.Object({ id: Type.String(), name: Type.String() })),
  justification: Type.String(), durationSeconds: Type.Integer(), state: Type.String(), breakGlass: Type.Boolean(),
  rule: Type.Object({ id: Type.String(), policyVersion: Type.Integer(), steps: Steps }),
  waitingForStep: Nullable(Type.Integer()),
  approvals: Type.Array(Type.Object({
    approverId: Type.String(), decision: Type.String(), counts: Type.Boolean(), step: Type.Integer(), comment: Type.String(), durationSeconds: Nullable(Type.Integer()), createdAt: Type.String(),
  })),
  grant: Type.Object({ state: Type.String(), expiresAt: Nullable(Type.String()), revokedAt: Nullable(Type.String()) }),
  review: Nullable(Type.Object({ id: Type.String(), state: Type.String(), outcome: Nullable(Type.String()) })),
  createdAt: Type.String(), expiresAt: Type.String(), decidedAt: Nullable(Type.String()), decidedBy: Nullable(Type.String()),
});

const ReviewSchema = Type.Object({
  id: Type.String(), requestId: Type.String(), takenBy: Type.String(), secrets: Type.Array(Type.String()), environment: Type.String(),
  action: Type.String(), justification: Type.String(), openedAt: Type.String(), state: Type.String(), reviewedAt: Nullable(Type.String()),
  reviewedBy: Nullable(Type.String()), outcome: Nullable(Type.String()), comment: Nullable(Type.String()),
});

const PolicyVersionSchema = Type.Object({
  version: Type.Integer(), document: Type.Unknown(), comment: Type.String(), createdAt: Type.String(), createdBy: Type.String(), active: Type.Boolean(),
});

const FileBody = Type.Object({
  secrets: Type.Array(SecretName, { minItems: 1, maxItems: MAX_SECRETS_PER_REQUEST }),
  environment: Slug,
  action: Type.Union(ESCROW_ACTIONS.map((a) => Type.Literal(a))),
  justification: Type.String({ minLength: 1, maxLength: MAX_JUSTIFICATION }),
  durationSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_GRANT_SECONDS })),
}, { additionalProperties: false });

const IdParams = Type.Object({ id: Type.String({ minLength: 1, maxLength: 64 }) }, { additionalProperties: false });
const VersionParams = Type.Object({ version: Type.Integer({ minimum: 0, maximum: 2_147_483_647 }) }, { additionalProperties: false });
const Comment = Type.String({ maxLength: MAX_COMMENT });

/** Escrow over HTTP: access policies, requests and their decisions, break-glass and its reviews. */
export function escrowRoutes(deps: { escrow: EscrowModule }) {
  const { accessPolicies, requests, decisions, breakGlass } = deps.escrow;
  return async function register(app: FastifyInstance): Promise<void> {
    const r = app.withTypeProvider<TypeBoxTypeProvider>();
    const tenant = { auth: 'tenant' as const };
    const policyBody = Type.Object({ document: AccessPolicySchema, comment: Type.Optional(Type.String({ maxLength: 500 })) }, { additionalProperties: false });

    r.get('/v1/access-policies', { config: tenant, schema: { tags: ['escrow'], summary: 'The access policy in force (approval rules and groups)', response: { 200: PolicyVersionSchema, ...errorResponses } } },
      (req) => accessPolicies.current(tenantContextOf(req)));
    r.put('/v1/access-policies', { config: tenant, schema: { tags: ['escrow'], summary: 'Replace the access policy (checked first; a new version)', body: policyBody, response: { 200: PolicyVersionSchema, ...errorResponses } } },
      (req) => accessPolicies.put(tenantContextOf(req), req.body));
    r.post('/v1/access-policies/validate', {
      config: tenant,
      schema: { tags: ['escrow'], summary: 'Dry run: would this access policy be accepted?', body: Type.Object({ document: Type.Unknown() }, { additionalProperties: false }), response: { 200: Type.Object({ valid: Type.Boolean(), errors: Type.Array(Type.String()) }), ...errorResponses } },
    }, (req) => accessPolicies.validate(tenantContextOf(req), req.body.document));
    r.get('/v1/access-policies/versions', { config: tenant, schema: { tags: ['escrow'], summary: 'Access policy versions', response: { 200: Type.Object({ items: Type.Array(Type.Omit(PolicyVersionSchema, ['document'])) }), ...errorResponses } } },
      async (req) => ({ items: await accessPolicies.history(tenantContextOf(req)) }));
    r.get('/v1/access-policies/versions/:version', { config: tenant, schema: { tags: ['escrow'], summary: 'One access policy version', params: VersionParams, response: { 200: PolicyVersionSchema, ...errorResponses } } },
      (req) => accessPolicies.get(tenantContextOf(req), req.params.version));
    r.get('/v1/access-policies/diff', {
      config: tenant,
      schema: {
        tags: ['escrow'], summary: 'Line diff between two access policy versions (0 = none)',
        querystring: Type.Object({ from: Type.Integer({ minimum: 0 }), to: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }),
        response: { 200: Type.Object({ from: Type.Integer(), to: Type.Integer(), diff: Type.String() }), ...errorResponses },
      },
    }, (req) => accessPolicies.diff(tenantContextOf(req), req.query.from, req.query.to));
    r.post('/v1/access-policies/rollback', {
      config: tenant,
      schema: { tags: ['escrow'], summary: 'Re-apply an older access policy as a new version', body: Type.Object({ version: Type.Integer({ minimum: 0 }) }, { additionalProperties: false }), response: { 200: PolicyVersionSchema, ...errorResponses } },
    }, (req) => accessPolicies.rollback(tenantContextOf(req), req.body.version));

    r.post('/v1/requests', { config: tenant, schema: { tags: ['escrow'], summary: 'File an access request', body: FileBody, response: { 201: RequestSchema, ...errorResponses } } },
      async (req, reply) => reply.code(201).send(await requests.file(tenantContextOf(req), req.body)));
    r.get('/v1/requests', {
      config: tenant,
      schema: {
        tags: ['escrow'], summary: 'Access requests: mine (default), my approval queue, or all I may see',
        querystring: Type.Object({
          scope: Type.Optional(Type.Union([Type.Literal('mine'), Type.Literal('queue'), Type.Literal('all')])),
          state: Type.Optional(Type.Union(['pending', 'approved', 'denied', 'expired', 'cancelled', 'superseded'].map((s) => Type.Literal(s)))),
          limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 500 })),
        }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(RequestSchema) }), ...errorResponses },
      },
    }, (req) => requests.list(tenantContextOf(req), req.query));
    r.get('/v1/requests/:id', { config: tenant, schema: { tags: ['escrow'], summary: 'One access request', params: IdParams, response: { 200: RequestSchema, ...errorResponses } } },
      (req) => requests.show(tenantContextOf(req), req.params.id));
    r.post('/v1/requests/:id/approve', {
      config: tenant,
      schema: {
        tags: ['escrow'], summary: 'Approve (fresh second factor; may shorten the duration)', params: IdParams,
        body: Type.Object({ comment: Type.Optional(Comment), durationSeconds: Type.Optional(Type.Integer({ minimum: 1, maximum: MAX_GRANT_SECONDS })) }, { additionalProperties: false }),
        response: { 200: RequestSchema, ...errorResponses },
      },
    }, (req) => decisions.approve(tenantContextOf(req), req.params.id, req.body));
    r.post('/v1/requests/:id/deny', {
      config: tenant,
      schema: { tags: ['escrow'], summary: 'Deny with a comment', params: IdParams, body: Type.Object({ comment: Type.String({ minLength: 1, maxLength: MAX_COMMENT }) }, { additionalProperties: false }), response: { 200: RequestSchema, ...errorResponses } },
    }, (req) => decisions.deny(tenantContextOf(req), req.params.id, req.body));
    r.post('/v1/requests/:id/cancel', { config: tenant, schema: { tags: ['escrow'], summary: 'Withdraw a pending request', params: IdParams, response: { 200: RequestSchema, ...errorResponses } } },
      (req) => requests.cancel(tenantContextOf(req), req.params.id));
    r.post('/v1/requests/:id/revoke', {
      config: tenant,
      schema: { tags: ['escrow'], summary: 'End the grant of an approved request early', params: IdParams, body: Type.Optional(Type.Object({ comment: Type.Optional(Comment) }, { additionalProperties: false })), response: { 200: RequestSchema, ...errorResponses } },
    }, (req) => requests.revoke(tenantContextOf(req), req.params.id, req.body ?? {}));

    r.post('/v1/break-glass', { config: tenant, schema: { tags: ['escrow'], summary: 'Take emergency access now (listed people only; reviewed after)', body: FileBody, response: { 201: RequestSchema, ...errorResponses } } },
      async (req, reply) => reply.code(201).send(await breakGlass.breakGlass(tenantContextOf(req), req.body)));
    r.get('/v1/reviews', {
      config: tenant,
      schema: {
        tags: ['escrow'], summary: 'Break-glass reviews (open by default)',
        querystring: Type.Object({ state: Type.Optional(Type.Union([Type.Literal('open'), Type.Literal('done'), Type.Literal('all')])) }, { additionalProperties: false }),
        response: { 200: Type.Object({ items: Type.Array(ReviewSchema) }), ...errorResponses },
      },
    }, (req) => breakGlass.listReviews(tenantContextOf(req), req.query));
    r.get('/v1/reviews/:id', { config: tenant, schema: { tags: ['escrow'], summary: 'One break-glass review', params: IdParams, response: { 200: ReviewSchema, ...errorResponses } } },
      (req) => breakGlass.showReview(tenantContextOf(req), req.params.id));
    r.post('/v1/reviews/:id', {
      config: tenant,
      schema: {
        tags: ['escrow'], summary: 'Complete a break-glass review (someone else; fresh second factor)', params: IdParams,
        body: Type.Object({ outcome: Type.Union([Type.Literal('justified'), Type.Literal('unjustified')]), comment: Type.String({ minLength: 1, maxLength: MAX_COMMENT }) }, { additionalProperties: false }),
        response: { 200: ReviewSchema, ...errorResponses },
      },
    }, (req) => breakGlass.review(tenantContextOf(req), req.params.id, req.body));
  };
}
