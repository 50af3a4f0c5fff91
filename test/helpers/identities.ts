import { createMachineRepository } from '../../src/modules/identity/machines/machine-repository.ts';
import { newId } from '../../src/platform/ids.ts';
import type { Executor } from '../../src/storage/database.ts';
import type { TenantContext } from '../../src/modules/shared/context.ts';
import type { Harness } from './harness.ts';

/** Inserts a bare user row (for authorization tests that do not exercise login) and returns a context acting as it. */
export async function userContext(h: Harness, tenantId: string, username: string, opts: { mfaAgoMs?: number | null } = {}): Promise<{ id: string; ctx: () => TenantContext }> {
  const id = newId();
  await h.storage.db.insertInto('users').values({
    id, tenant_id: tenantId, username, password_hash: '$argon2id$unused', totp_secret: null, totp_enabled: 1, totp_last_step: null,
    created_at: h.clock.now(), password_changed_at: h.clock.now(), disabled_at: null,
  }).execute();
  const mfaAgoMs = opts.mfaAgoMs === undefined ? 60_000 : opts.mfaAgoMs;
  return {
    id,
    ctx: () => ({
      tenantId, requestId: 'test', sourceIp: '127.0.0.1',
      actor: { type: 'user', id, name: username, homeTenantId: tenantId, mfaAt: mfaAgoMs === null ? null : h.clock.now() - mfaAgoMs },
    }),
  };
}

/** The runner's run-identity lock, as the server wires it (the machine repository's `lockLive`). */
export function runAsLock(h: Harness): { lockLive(executor: Executor, machineId: string): Promise<boolean> } {
  const repo = createMachineRepository(h.storage.db, h.storage.dialect);
  return { lockLive: (executor, machineId) => repo.lockLive(executor, machineId, null) };
}
