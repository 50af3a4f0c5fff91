import type { FastifyInstance, FastifyRequest, onRequestHookHandler } from 'fastify';
import { fail } from '../errors/index.ts';
import type { Authenticator, DeadCredential, Principal } from '../modules/identity/principal.ts';
import type { RequestContext, TenantContext } from '../modules/shared/context.ts';
import type { TenantService } from '../modules/tenants/tenant-service.ts';
import type { SealManager } from '../modules/system/seal-manager.ts';
import type { AuditInput, AuditLog } from '../modules/audit/audit-log.ts';
import type { RequestSource } from '../modules/identity/request-source.ts';

/** What a route needs: nothing, the root token, or a tenant context. */
export type RouteAuth = 'none' | 'root' | 'tenant';

declare module 'fastify' {
  interface FastifyContextConfig {
    auth?: RouteAuth;
  }
  interface FastifyRequest {
    principal: Principal | null;
    tenantContext: TenantContext | null;
  }
}

export const TENANT_HEADER = 'x-keyhold-tenant';

/** Refusals decided here, each a denied event: its action, and the message the caller gets. */
const REFUSALS = {
  UNAUTHENTICATED: { action: 'auth.refused', message: 'a valid token is required (Authorization: Bearer ...)' },
  FORBIDDEN: { action: 'authz.root', message: 'this operation needs the root token' },
  TENANT_NOT_FOUND: { action: 'auth.tenant', message: 'tenant not found' },
} as const;

function bearer(request: FastifyRequest): string | null {
  const header = request.headers.authorization;
  if (header && header.startsWith('Bearer ')) return header.slice(7).trim();
  const alt = request.headers['x-keyhold-token'];
  return typeof alt === 'string' ? alt : null;
}

/** The tenant context of a request, or the error that ends it. Only for routes with auth "tenant". */
export function tenantContextOf(request: FastifyRequest): TenantContext {
  return request.tenantContext ?? fail('UNAUTHENTICATED', 'authentication required');
}

/** Where a request comes from, for audit: also what login and token exchange, which have no actor yet, record. */
export function requestSourceOf(request: FastifyRequest): RequestSource {
  const userAgent = request.headers['user-agent'];
  return { requestId: request.id, sourceIp: request.ip, ...(userAgent ? { userAgent: String(userAgent).slice(0, 200) } : {}) };
}

/** Who acts in a request and from where, for audit: a tenant context without the tenant. */
function requestContext(request: FastifyRequest, principal: Principal): RequestContext {
  return {
    actor: {
      type: principal.type, id: principal.id, name: principal.name, mfaAt: principal.mfaAt,
      credentialId: principal.credentialId, homeTenantId: principal.tenantId,
      ...(principal.boundEnvironment !== undefined ? { boundEnvironment: principal.boundEnvironment } : {}),
    },
    ...requestSourceOf(request),
  };
}

/**
 * The root caller of a route with auth "root", for the events its operations record. The route's
 * hook has already refused (and recorded) any other caller; this only guards a misconfigured route.
 */
export function rootContextOf(request: FastifyRequest): RequestContext {
  const principal = request.principal;
  if (!principal || principal.type !== 'root') fail('FORBIDDEN', 'this operation needs the root token');
  return requestContext(request, principal);
}

/**
 * Authenticates every route whose config asks for it, before the body is parsed. A sealed server
 * refuses everything but the sys endpoints. A tenant-scoped token naming another tenant gets
 * TENANT_NOT_FOUND: it must not learn whether that tenant exists, not even from the time the answer takes.
 *
 * A callback hook, finished synchronously when the credential and its tenant are known from
 * memory (the steady state of a machine reading secrets): no promise per request for the answer
 * every request of a busy client gets.
 */
export function registerAuth(app: FastifyInstance, deps: {
  authenticator: Authenticator; tenants: TenantService; seal: SealManager;
  /** Refused requests are events too (SPEC §7): one per request, never the token or any part of it. */
  audit: Pick<AuditLog, 'record'>;
}): void {
  app.decorateRequest('principal', null);
  app.decorateRequest('tenantContext', null);

  /**
   * Records the refusal, then refuses. The resource is the route's pattern, not the URL (a probed
   * secret name stays out of the event). Exactly one event per refused request: a flood of bad
   * tokens costs the log one row each, batched by the group commit, and nothing else.
   */
  function refuse(request: FastifyRequest, code: keyof typeof REFUSALS, principal: Principal | null, context: Record<string, string>, dead: DeadCredential | null = null): Promise<never> {
    const event: AuditInput = {
      // A dead credential's refusal goes to its own tenant, where that tenant's auditors look.
      tenantId: principal?.tenantId ?? dead?.tenantId ?? null,
      actor: principal ? { type: principal.type, id: principal.id } : { type: 'anonymous', id: 'unknown' },
      action: REFUSALS[code].action,
      resource: { type: 'route', id: null, name: `${request.method} ${request.routeOptions.url ?? ''}` },
      outcome: 'denied', reason: code,
      context: {
        ...requestSourceOf(request),
        ...(principal ? { credentialId: principal.credentialId } : {}),
        ...(dead ? { credentialId: dead.credentialId, credentialState: dead.state } : {}), ...context,
      },
    };
    return deps.audit.record([event]).then(() => fail(code, REFUSALS[code].message));
  }

  /** Completes authentication; a promise only when something has to be looked up. */
  function authenticate(request: FastifyRequest, auth: 'root' | 'tenant'): void | Promise<void> {
    if (deps.seal.isSealed()) fail('SEALED', 'the server is sealed; unseal it with the key shares');
    const token = bearer(request);
    if (!token) return refuse(request, 'UNAUTHENTICATED', null, { credential: 'missing' });
    const known = deps.authenticator.cached(token);
    if (known) return admit(request, auth, known);
    return deps.authenticator.lookup(token).then((found) => {
      if (found !== null && 'principal' in found) return admit(request, auth, found.principal);
      // Unknown, expired and revoked tokens get one answer; the event also says which known credential
      // it was and why, if its row is still there (a revoked token in use is a leak in progress).
      return refuse(request, 'UNAUTHENTICATED', null, { credential: 'invalid' }, found?.dead ?? null);
    });
  }

  function admit(request: FastifyRequest, auth: 'root' | 'tenant', principal: Principal): void | Promise<void> {
    request.principal = principal;
    if (auth === 'root') {
      if (principal.type !== 'root') return refuse(request, 'FORBIDDEN', principal, {});
      return;
    }
    const header = request.headers[TENANT_HEADER];
    const requested = typeof header === 'string' && header.length > 0 ? header : null;
    if (principal.tenantId === null) {
      // No tenant is named with a NUL (PostgreSQL could not even look one up).
      if (requested?.includes('\u0000')) fail('TENANT_NOT_FOUND', 'tenant not found');
      return deps.tenants.findByName(requested ?? 'default').then((tenant) => {
        if (!tenant) fail('TENANT_NOT_FOUND', 'tenant not found');
        enter(request, principal, tenant.id);
      });
    }
    if (requested !== null) {
      // Compared with the token's own tenant, never looked up: a name this process holds in memory
      // would answer faster than an unknown one, and the timing would tell which tenants exist.
      const own = principal.tenantId;
      // A miss is a credential reaching for another tenant: recorded in its own, without the name it tried.
      return deps.tenants.findById(own).then((tenant) => {
        if (!tenant || tenant.name !== requested) return refuse(request, 'TENANT_NOT_FOUND', principal, {});
        enter(request, principal, own);
      });
    }
    enter(request, principal, principal.tenantId);
  }

  function enter(request: FastifyRequest, principal: Principal, tenantId: string): void {
    request.tenantContext = { tenantId, ...requestContext(request, principal) };
  }

  // Each route that asks for authentication gets the hook of its own kind when it is registered,
  // so a request neither reads its route options (fastify builds that object per access) nor
  // runs a hook it does not need.
  app.addHook('onRoute', (route) => {
    const auth = (route.config as { auth?: RouteAuth } | undefined)?.auth ?? 'none';
    if (auth === 'none') return;
    const hook: onRequestHookHandler = (request, _reply, done) => {
      let pending: void | Promise<void>;
      try {
        pending = authenticate(request, auth);
      } catch (err) {
        return done(err as Error);
      }
      if (pending) pending.then(() => done(), (err: Error) => done(err));
      else done();
    };
    const existing = route.onRequest;
    route.onRequest = existing === undefined ? [hook] : [hook, ...(Array.isArray(existing) ? existing : [existing])];
  });
}
