import type { Kysely } from 'kysely';
import type { Database } from '../../storage/schema.ts';
import type { TenantContext } from '../shared/context.ts';
import type { Action } from './actions.ts';

/** What an action is about: one secret (with the metadata policies may read), or the tenant itself. */
export type AuthzResource =
  | { type: 'secret'; id: string; name: string; classification: string; owner: string; tags: string[] }
  | { type: 'tenant' };

export type SecretResource = Extract<AuthzResource, { type: 'secret' }>;

/** What `require` says when an approved access request's grant, not a role, is what allows the action (audited with its id). */
export interface AuthzPermit {
  accessRequestId: string;
}

/**
 * The one gate every service calls before it acts. Throws FORBIDDEN, or STEP_UP_REQUIRED when only
 * a fresh second factor is missing. `environment` is the environment the action touches, if any.
 */
export interface Authorizer {
  require(ctx: TenantContext, action: Action, resource: AuthzResource, environment?: string): Promise<AuthzPermit | void>;
  /** Like require, but answers instead of throwing (used to filter lists). */
  allowed(ctx: TenantContext, action: Action, resource: AuthzResource, environment?: string): Promise<boolean>;
  /**
   * A remembered allow of exactly this request, if one still holds: what `require` would return,
   * without a promise. Undefined means "ask require" (which also decides and audits denials).
   */
  cachedAllow?(ctx: TenantContext, action: Action, resource: AuthzResource, environment?: string): { permit: AuthzPermit | undefined } | undefined;
  /**
   * Moves the tenant's authorization generation, inside the transaction that changes its grants,
   * identities or policies: the change and the signal that caches are stale commit together, so
   * no crash or failed write in between can leave another node trusting a revoked grant.
   */
  bumpInTx(trx: Kysely<Database>, tenantId: string): Promise<void>;
  /** Forgets this process's cached decisions and grants of a tenant; call once the change has committed (in a finally). */
  invalidate(tenantId: string): void;
}
