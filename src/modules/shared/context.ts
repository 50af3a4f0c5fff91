/** Who is acting. Every service call carries one, so audit and authorization never guess. */
export interface Actor {
  type: 'root' | 'user' | 'machine' | 'system';
  id: string;
  name: string;
  /** Users: when a second factor was last verified in this session (step-up); null otherwise. */
  mfaAt?: number | null;
  /** The session or token behind the request, for audit and revocation. */
  credentialId?: string;
  /** The tenant the identity belongs to (null for root). Policies compare it with the resource's tenant. */
  homeTenantId?: string | null;
  /**
   * The one environment this actor may act in, when its credential is bound to one (an automation
   * run's token, or the runner acting for a run); absent means unbound. Enforced by the authorizer.
   */
  boundEnvironment?: string;
}

/** Who acts and from where: what every audited operation needs, tenant-scoped or not. */
export type RequestContext = Omit<TenantContext, 'tenantId'>;

/** The tenant-scoped context every tenant operation runs in; the HTTP and CLI layers build it. */
export interface TenantContext {
  tenantId: string;
  actor: Actor;
  requestId: string;
  /** Caller's address (policies may test it); loopback for in-process callers. */
  sourceIp?: string;
  userAgent?: string;
}

/** The actor for work the server does on its own (retention sweeps, scheduled jobs). */
export const SYSTEM_ACTOR: Actor = Object.freeze({ type: 'system', id: 'system', name: 'keyhold' });
