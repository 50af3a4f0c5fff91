import type { Executor } from '../../storage/database.ts';
import type { AuthzResource } from '../policy/authorizer.ts';
import { ESCROW_ACTIONS, matchRule, type AccessPolicyDocument } from './access-policy.ts';
import { currentAccessPolicy } from './access-policy-service.ts';

/** A live grant an approved (or break-glass) request became: exactly one secret, environment and action. */
export interface EscrowGrant {
  requestId: string;
  principalId: string;
  secretId: string;
  environment: string;
  action: string;
  expiresAt: number;
  /** User ids whose approvals made it, and the machine identities they own (empty for break-glass). */
  approvers: string[];
}

/**
 * What the authorizer keeps per tenant for escrow, loaded once per authorization generation (an
 * access policy change, an approval, a revocation or a break-glass bumps it) so the cached
 * decision path adds no query. Grants are indexed by secret; their expiry is checked at each decision.
 */
export interface EscrowAuthzState {
  doc: AccessPolicyDocument;
  grantsBySecret: Map<string, EscrowGrant[]>;
}

/** The Cedar context fields escrow contributes (schema.cedarschema documents them). */
export interface EscrowContext {
  approvalRequired: boolean;
  viaRequest: boolean;
  approvedRequest: boolean;
}

/**
 * Loads the access policy in force and every live escrow grant of a tenant: two indexed queries, and a
 * third when a live grant has approvers (the machine identities they own; creating one moves the generation).
 */
export async function loadEscrowState(db: Executor, tenantId: string, now: number): Promise<EscrowAuthzState> {
  const { doc } = await currentAccessPolicy(db, tenantId);
  const rows = await db.selectFrom('access_grants')
    .select(['request_id', 'principal_id', 'secret_id', 'environment', 'action', 'expires_at', 'approvers'])
    .where('tenant_id', '=', tenantId).where('revoked_at', 'is', null).where('expires_at', '>', now).execute();
  const approversOf = new Map(rows.map((r) => [r.request_id, JSON.parse(r.approvers) as string[]]));
  // A machine identity is its owner for separation of duties, as for self-approval: an approver's own machine
  // does not carry out what they approved either.
  const people = [...new Set([...approversOf.values()].flat())];
  const owned = people.length === 0 ? [] : await db.selectFrom('machine_identities').select(['id', 'owner_user_id'])
    .where('tenant_id', '=', tenantId).where('owner_user_id', 'in', people).execute();
  for (const [requestId, approvers] of approversOf) {
    approversOf.set(requestId, [...approvers, ...owned.filter((m) => approvers.includes(m.owner_user_id!)).map((m) => m.id)]);
  }
  const grantsBySecret = new Map<string, EscrowGrant[]>();
  for (const r of rows) {
    const grant: EscrowGrant = {
      requestId: r.request_id, principalId: r.principal_id, secretId: r.secret_id, environment: r.environment,
      action: r.action, expiresAt: r.expires_at, approvers: approversOf.get(r.request_id)!,
    };
    const list = grantsBySecret.get(r.secret_id);
    if (list) list.push(grant);
    else grantsBySecret.set(r.secret_id, [grant]);
  }
  return { doc, grantsBySecret };
}

const NONE: EscrowContext & { requestId: null } = Object.freeze({ approvalRequired: false, viaRequest: false, approvedRequest: false, requestId: null });

/**
 * The escrow part of one decision's context:
 * - `approvalRequired`: an access policy rule puts this action on this secret in this environment behind approval;
 * - `viaRequest`: the principal holds a live grant for exactly this secret, environment and action (and which request);
 * - `approvedRequest`: the principal (or a machine's owner) approved someone else's live grant for exactly this (separation of duties).
 * Root is outside escrow: it is the bootstrap credential, and could change the access policy anyway.
 */
export function escrowContext(state: EscrowAuthzState | null, q: {
  now: number; principalType: 'user' | 'machine' | 'root'; principalId: string; action: string; resource: AuthzResource; environment: string | undefined;
}): EscrowContext & { requestId: string | null } {
  if (!state || q.principalType === 'root' || q.resource.type !== 'secret' || q.environment === undefined) return NONE;
  if (!(ESCROW_ACTIONS as readonly string[]).includes(q.action)) return NONE;
  const approvalRequired = state.doc.rules.length > 0
    && matchRule(state.doc, { action: q.action, secretName: q.resource.name, classification: q.resource.classification, environment: q.environment }) !== null;
  let requestId: string | null = null;
  let approvedRequest = false;
  for (const g of state.grantsBySecret.get(q.resource.id) ?? []) {
    if (g.expiresAt <= q.now || g.environment !== q.environment || g.action !== q.action) continue;
    if (g.principalId === q.principalId) requestId ??= g.requestId;
    if (g.approvers.includes(q.principalId)) approvedRequest = true;
  }
  if (!approvalRequired && requestId === null && !approvedRequest) return NONE;
  return { approvalRequired, viaRequest: requestId !== null, approvedRequest, requestId };
}
