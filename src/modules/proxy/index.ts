import type { ProxyLimits } from './proxy-service.ts';
import type { TenantRedactorSource } from './types.ts';

export { createProxyService, type ProxyService, type ProxyLimits } from './proxy-service.ts';
export { proxyRoutes } from './routes.ts';
export type { ProxyRequest, ProxyResponse, RunContext, TenantRedactorSource } from './types.ts';

/** Default limits: 10 s to the response headers, 30 s in all, 1 MiB of response body, 1 MiB of request body. */
export const DEFAULT_PROXY_LIMITS: ProxyLimits = { headersTimeoutMs: 10_000, totalTimeoutMs: 30_000, maxResponseBytes: 1_048_576, maxRequestBytes: 1_048_576 };

/**
 * Until the redaction module's TenantRedactors is wired in, tenant-wide masking is a no-op and only the
 * values of the call itself are masked (the proxy always does that). Replace at composition.
 */
export const callValuesOnlyRedaction: TenantRedactorSource = { forTenant: async () => ({ redact: (text: string) => text }) };
