import type { ProxyLimits } from './proxy-service.ts';

export { createProxyService, type ProxyService, type ProxyLimits } from './proxy-service.ts';
export { proxyRoutes } from './routes.ts';
export type { ProxyRequest, ProxyResponse, RunContext, TenantRedactorSource } from './types.ts';

/**
 * Default limits: 10 s to the response headers, 30 s in all, 1 MiB of response body, 1 MiB of request body, and
 * 128 KiB read past the response cut for masking (the hex form of a 64 KiB value, the default value size limit).
 */
export const DEFAULT_PROXY_LIMITS: ProxyLimits = { headersTimeoutMs: 10_000, totalTimeoutMs: 30_000, maxResponseBytes: 1_048_576, maxRequestBytes: 1_048_576, maskLookaheadBytes: 131_072 };

