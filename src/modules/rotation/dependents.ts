import type { TenantContext } from '../shared/context.ts';
import type { ConnectorCheck } from './types.ts';

/**
 * What rotation needs of connectors (a port; the connectors module provides the real one): which
 * connectors of an environment use a secret, and each one's health check run with a candidate value.
 */
export interface DependentsPort {
  dependents(ctx: TenantContext, secretName: string, environment: string): Promise<Array<{ connector: string; slot: string }>>;
  healthCheck(ctx: TenantContext, environment: string, connector: string, overrides: Record<string, string>): Promise<{ ok: boolean; latencyMs: number; detail: string }>;
}

/** For a server without connectors: nothing depends on anything. */
export const noDependents: DependentsPort = {
  dependents: async () => [],
  healthCheck: async () => ({ ok: true, latencyMs: 0, detail: 'no connector' }),
};

/** Adapts the connector service (`dependentsOf` across environments, `test` with slot overrides) to the port. */
export function dependentsFromConnectors(connectors: {
  dependentsOf(ctx: TenantContext, secretName: string): Promise<Array<{ environment: string; connector: string; slot: string }>>;
  test(ctx: TenantContext, environment: string, name: string, opts?: { overrides?: Record<string, string> }): Promise<{ ok: boolean; latencyMs: number; detail: string }>;
}): DependentsPort {
  return {
    async dependents(ctx, secretName, environment) {
      return (await connectors.dependentsOf(ctx, secretName)).filter((d) => d.environment === environment).map(({ connector, slot }) => ({ connector, slot }));
    },
    healthCheck: (ctx, environment, connector, overrides) => connectors.test(ctx, environment, connector, { overrides }),
  };
}

/**
 * Runs every dependent connector's health check with `value` in the secret's slots, at most
 * `concurrency` at a time. A check that throws counts as failed (its message, never a value).
 */
export async function checkDependents(port: DependentsPort, ctx: TenantContext, secretName: string, environment: string, value: string, opts: { concurrency: number; signal: AbortSignal }): Promise<ConnectorCheck[]> {
  const slotsOf = new Map<string, string[]>();
  for (const d of await port.dependents(ctx, secretName, environment)) slotsOf.set(d.connector, [...(slotsOf.get(d.connector) ?? []), d.slot]);
  const work = [...slotsOf.entries()];
  const results: ConnectorCheck[] = [];
  let next = 0;
  await Promise.all(Array.from({ length: Math.min(opts.concurrency, work.length) }, async () => {
    while (next < work.length && !opts.signal.aborted) {
      const [connector, slots] = work[next++]!;
      const started = performance.now();
      try {
        const r = await port.healthCheck(ctx, environment, connector, Object.fromEntries(slots.map((s) => [s, value])));
        results.push({ connector, slots, ok: r.ok, latencyMs: Math.round(r.latencyMs), detail: r.detail });
      } catch (err) {
        results.push({ connector, slots, ok: false, latencyMs: Math.round(performance.now() - started), detail: `health check failed: ${(err as Error).message}` });
      }
    }
  }));
  return results.sort((a, b) => a.connector.localeCompare(b.connector));
}
