import type { FastifyInstance, FastifyRequest } from 'fastify';
import { fail } from '../errors/index.ts';
import type { Authenticator, Principal } from '../modules/identity/principal.ts';
import type { TenantContext } from '../modules/shared/context.ts';
import type { TenantService } from '../modules/tenants/tenant-service.ts';
import type { SealManager } from '../modules/system/seal-manager.ts';

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

/**
 * Authenticates every route whose config asks for it, before the body is parsed. A sealed server
 * refuses everything but the sys endpoints. A tenant-scoped token naming another tenant gets
 * TENANT_NOT_FOUND: it must not learn whether that tenant exists.
 */
export function registerAuth(app: FastifyInstance, deps: { authenticator: Authenticator; tenants: TenantService; seal: SealManager }): void {
  app.decorateRequest('principal', null);
  app.decorateRequest('tenantContext', null);
  app.addHook('onRequest', async (request) => {
    const auth = request.routeOptions.config.auth ?? 'none';
    if (auth === 'none') return;
    if (deps.seal.isSealed()) fail('SEALED', 'the server is sealed; unseal it with the key shares');
    const token = bearer(request);
    const principal = token ? await deps.authenticator.authenticate(token) : null;
    if (!principal) fail('UNAUTHENTICATED', 'a valid token is required (Authorization: Bearer ...)');
    request.principal = principal;
    if (auth === 'root') {
      if (principal.type !== 'root') fail('FORBIDDEN', 'this operation needs the root token');
      return;
    }
    const header = request.headers[TENANT_HEADER];
    const requested = typeof header === 'string' && header.length > 0 ? header : null;
    let tenantId: string;
    if (principal.tenantId === null) {
      const tenant = await deps.tenants.findByName(requested ?? 'default');
      if (!tenant) fail('TENANT_NOT_FOUND', 'tenant not found');
      tenantId = tenant.id;
    } else {
      if (requested !== null) {
        const tenant = await deps.tenants.findByName(requested);
        if (!tenant || tenant.id !== principal.tenantId) fail('TENANT_NOT_FOUND', 'tenant not found');
      }
      tenantId = principal.tenantId;
    }
    request.tenantContext = {
      tenantId,
      actor: {
        type: principal.type, id: principal.id, name: principal.name, mfaAt: principal.mfaAt,
        credentialId: principal.credentialId, homeTenantId: principal.tenantId,
      },
      requestId: request.id,
      sourceIp: request.ip,
      ...(request.headers['user-agent'] ? { userAgent: String(request.headers['user-agent']).slice(0, 200) } : {}),
    };
  });
}
