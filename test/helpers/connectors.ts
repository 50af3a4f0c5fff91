import { createProxyService, DEFAULT_PROXY_LIMITS, type ProxyLimits } from '../../src/modules/proxy/index.ts';
import { createRedactor } from '../../src/modules/redaction/redactor.ts';
import type { TenantContext } from '../../src/modules/shared/context.ts';
import type { Harness } from './harness.ts';

/** The mask the fake tenant redactor writes, distinct from the proxy's own `[REDACTED]`, so a test can tell which layer masked. */
export const TENANT_MASK = '[MASKED]';

/** A stand-in for the tenant redactors: the redaction library over exactly the values the test says the tenant holds. */
export function fakeRedactors(known: () => Iterable<string>) {
  return {
    async forTenant(_tenantId: string) {
      return createRedactor(known(), { mask: TENANT_MASK });
    },
  };
}

/** A proxy over the harness's services with a fake tenant redactor and, optionally, tighter limits. */
export function proxyFor(h: Harness, known: () => Iterable<string>, limits: Partial<ProxyLimits> = {}, fetch: typeof globalThis.fetch = globalThis.fetch) {
  return createProxyService({
    connectors: h.services.connectors, values: h.services.values, audit: h.services.audit, identifiers: h.services.identifiers, clock: h.clock, fetch,
    redactors: fakeRedactors(known), limits: { ...DEFAULT_PROXY_LIMITS, ...limits },
  });
}

/** Creates a secret (if new) and writes a value in each given environment. */
export async function seed(h: Harness, ctx: TenantContext, name: string, values: Record<string, string>, owner = 'payments-team'): Promise<void> {
  await h.services.secrets.create(ctx, { name, owner }).catch((e: { code?: string }) => {
    if (e.code !== 'SECRET_EXISTS') throw e;
  });
  for (const [env, value] of Object.entries(values)) await h.services.values.write(ctx, name, env, { value });
}

/** Audit events of an action, oldest first, with their context parsed. */
export async function eventsOf(h: Harness, action: string) {
  const rows = await h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', action).orderBy('seq').execute();
  return rows.map((r) => ({ ...r, context: JSON.parse(r.context) as Record<string, string> }));
}

/** A loopback port nothing listens on. */
export async function closedPort(): Promise<number> {
  const { createServer } = await import('node:net');
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}
