import type { Notification, Notifier } from '../../src/modules/notifications/notifier.ts';
import { createRotationModule } from '../../src/modules/rotation/index.ts';
import type { DependentsPort } from '../../src/modules/rotation/dependents.ts';
import { builtinRotators } from '../../src/modules/rotation/rotators/registry.ts';
import type { Rotator } from '../../src/modules/rotation/rotators/types.ts';
import type { TenantContext } from '../../src/modules/shared/context.ts';
import type { TestContext } from 'node:test';
import type { DialectName } from '../../src/storage/database.ts';
import { createHarness, type Harness } from './harness.ts';

/** A notifier that keeps what it was asked to send. */
export function recordingNotifier(): Notifier & { sent: Notification[] } {
  const sent: Notification[] = [];
  return { sent, notify: async (n) => void sent.push(n) };
}

/**
 * A fake connectors port: `connectors` maps connector → slot → secret name; `check` decides each
 * health check from the connector and the values it was given (default: healthy).
 */
export function fakeDependents(opts: {
  connectors: Record<string, Record<string, string>>;
  check?: (connector: string, overrides: Record<string, string>) => Promise<{ ok: boolean; detail?: string }> | { ok: boolean; detail?: string };
}): DependentsPort & { calls: Array<{ connector: string; overrides: Record<string, string> }> } {
  const calls: Array<{ connector: string; overrides: Record<string, string> }> = [];
  return {
    calls,
    async dependents(_ctx: TenantContext, secretName: string) {
      return Object.entries(opts.connectors).flatMap(([connector, slots]) =>
        Object.entries(slots).filter(([, s]) => s === secretName).map(([slot]) => ({ connector, slot })));
    },
    async healthCheck(_ctx, _env, connector, overrides) {
      calls.push({ connector, overrides });
      const r: { ok: boolean; detail?: string } = opts.check ? await opts.check(connector, overrides) : { ok: true };
      return { ok: r.ok, latencyMs: 1, detail: r.detail ?? (r.ok ? 'healthy' : 'unhealthy') };
    },
  };
}

/** A rotation module over the harness's services, with test ports (a second call is "another node"). */
export function rotationFor(h: Harness, opts: { dependents?: DependentsPort; notifier?: Notifier; rotators?: Rotator[]; leaseMs?: number; stepTimeoutMs?: number } = {}) {
  const s = h.services;
  return createRotationModule({
    db: h.storage.db, dialect: h.storage.dialect, clock: h.clock, keyring: s.keyring, rows: s.rows,
    audit: s.audit, authz: s.authz, secrets: s.secrets, tenants: s.tenants, values: s.values,
    maxValueBytes: 65_536, rollbackWindowMs: 7 * 86_400_000,
    settings: { leaseMs: opts.leaseMs ?? 30_000, tickMs: 1000, checkConcurrency: 8, stepTimeoutMs: opts.stepTimeoutMs ?? 60_000 },
    ...(opts.dependents ? { dependents: opts.dependents } : {}),
    ...(opts.notifier ? { notifier: opts.notifier } : {}),
    rotators: [...builtinRotators(), ...(opts.rotators ?? [])],
  });
}

/** A rotator built from the random one with some calls replaced (a failing test step, a blocking apply...). */
export function scriptedRotator(type: string, overrides: Partial<Rotator>): Rotator & { restored: string[]; applied: string[] } {
  const restored: string[] = [];
  const applied: string[] = [];
  const base = builtinRotators().find((r) => r.type === 'random')!;
  return {
    ...base, type, restored, applied,
    validate: () => {},
    apply: async (rc, value) => {
      applied.push(value);
      await overrides.apply?.(rc, value);
    },
    restore: async (rc, value) => {
      restored.push(value);
      return overrides.restore ? overrides.restore(rc, value) : { ok: true, detail: 'restored' };
    },
    ...(overrides.test ? { test: overrides.test } : {}),
    ...(overrides.generate ? { generate: overrides.generate } : {}),
    ...(overrides.finalize ? { finalize: overrides.finalize } : {}),
    ...(overrides.discard ? { discard: overrides.discard } : {}),
  };
}

/**
 * A harness of its own for a scheduler test (the scheduler passes over every policy in the database), and `node` for
 * a rotation module whose scheduler is stopped before the harness closes (a leader's pinned connection would hold the
 * pool open).
 */
export async function schedulerHarness(dialect: DialectName, t: TestContext) {
  const h = await createHarness(dialect);
  const nodes: Array<ReturnType<typeof rotationFor>> = [];
  t.after(async () => {
    for (const n of nodes) await n.scheduler.stop();
    await h.close();
  });
  const node = (opts: Parameters<typeof rotationFor>[1] = {}) => {
    const n = rotationFor(h, opts);
    nodes.push(n);
    return n;
  };
  return { h, node };
}

/**
 * A source whose apply hangs until the test releases it (the step deadline, a minute by default, is never met):
 * `holding` names the secrets in it now. Make it before the harness: its after hook then releases the gate before the
 * harness stops its schedulers, so a failed assertion does not leave a pass, and the close, waiting on it.
 */
export function heldSource(t: TestContext) {
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const holding = new Set<string>();
  const rotator = scriptedRotator('held', {
    apply: async (rc) => {
      holding.add(rc.secretName);
      await gate;
      holding.delete(rc.secretName);
    },
  });
  t.after(() => release());
  return { rotator, holding, release };
}

/** Which of `names` have been rotated at least once in `environment` (their rotation history is not empty), in order. */
export async function rotatedOf(rot: ReturnType<typeof rotationFor>, ctx: TenantContext, environment: string, names: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const n of names) if ((await rot.service.history(ctx, n, environment)).length > 0) out.push(n);
  return out;
}
