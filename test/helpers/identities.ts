import { createMachineRepository } from '../../src/modules/identity/machines/machine-repository.ts';
import { newId } from '../../src/platform/ids.ts';
import type { Executor } from '../../src/storage/database.ts';
import type { CreateGrantInput } from '../../src/modules/grants/grant-service.ts';
import type { Actor, TenantContext } from '../../src/modules/shared/context.ts';
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

/**
 * A machine identity of the harness's default tenant holding `grant` (a role, optionally narrowed or
 * expiring), and a context acting as it as a request with its token would: from loopback unless
 * `sourceIp` says otherwise, with `actor` fields (a run token's boundEnvironment, say) laid over it.
 */
export async function machineContext(h: Harness, name: string, grant: Omit<CreateGrantInput, 'principalType' | 'principalId'>) {
  const machine = await h.services.machines.create(h.ctx, { name, kind: 'client_secret' });
  const granted = await h.services.grants.create(h.ctx, { ...grant, principalType: 'machine', principalId: machine.id });
  const ctx = (opts: { sourceIp?: string; actor?: Partial<Actor> } = {}): TenantContext => ({
    tenantId: h.ctx.tenantId, requestId: `as-${name}`, sourceIp: opts.sourceIp ?? '127.0.0.1',
    actor: { type: 'machine', id: machine.id, name: machine.name, homeTenantId: h.ctx.tenantId, credentialId: `token-of-${name}`, ...opts.actor },
  });
  return { machine, grant: granted, ctx };
}

/** The unrevoked token rows of an identity, expired or not: what a revocation must leave empty. */
export function unrevokedTokens(h: Harness, principalId: string): Promise<Array<{ id: string }>> {
  return h.storage.db.selectFrom('tokens').select('id').where('principal_id', '=', principalId).where('revoked_at', 'is', null).execute();
}

/** The runner's run-identity lock, as the server wires it (the machine repository's `lockLive`). */
export function runAsLock(h: Harness): { lockLive(executor: Executor, machineId: string): Promise<boolean> } {
  const repo = createMachineRepository(h.storage.db, h.storage.dialect);
  return { lockLive: (executor, machineId) => repo.lockLive(executor, machineId, null) };
}
