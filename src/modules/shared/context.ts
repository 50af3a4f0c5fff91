/** Who is acting. Every service call carries one, so audit and authorization never guess. */
export interface Actor {
  type: 'root' | 'token' | 'system';
  id: string;
  name: string;
}

/** The tenant-scoped context every tenant operation runs in; the HTTP and CLI layers build it. */
export interface TenantContext {
  tenantId: string;
  actor: Actor;
  requestId: string;
}

/** The actor for work the server does on its own (retention sweeps, scheduled jobs). */
export const SYSTEM_ACTOR: Actor = Object.freeze({ type: 'system', id: 'system', name: 'keyhold' });
