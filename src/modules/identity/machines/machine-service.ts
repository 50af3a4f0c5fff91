import { auditFrom, type AuditLog } from '../../audit/audit-log.ts';
import type { Kysely } from 'kysely';
import { fail } from '../../../errors/index.ts';
import type { Clock } from '../../../platform/clock.ts';
import { newId } from '../../../platform/ids.ts';
import type { Executor } from '../../../storage/database.ts';
import { isUniqueViolation } from '../../../storage/db-errors.ts';
import type { Database, MachineIdentitiesTable } from '../../../storage/schema.ts';
import type { Authorizer } from '../../policy/authorizer.ts';
import type { TenantContext } from '../../shared/context.ts';
import { SECRET_NAME } from '../../shared/names.ts';
import { hashClientSecret, newClientId, newClientSecret } from './client-secret.ts';
import type { MachineRepository } from './machine-repository.ts';
import { toMachineIdentity } from './machine-row.ts';
import { parseOidcBinding } from './oidc-binding.ts';
import {
  MAX_TOKEN_TTL_SECONDS, MIN_TOKEN_TTL_SECONDS,
  type CreateMachineInput, type MachineIdentity, type MachineToken, type MachineWithSecret,
} from './types.ts';

const MAX_NAME_LENGTH = 128;

function assertMachineName(name: string): void {
  if (name.length === 0 || name.length > MAX_NAME_LENGTH || !SECRET_NAME.test(name)) {
    fail('INVALID_NAME', `machine identity names start with a letter or underscore, use letters, digits, _ . - and are at most ${MAX_NAME_LENGTH} characters`);
  }
}

function tokenTtlMs(seconds: number | undefined, defaultMs: number): number {
  if (seconds === undefined) return defaultMs;
  if (!Number.isInteger(seconds) || seconds < MIN_TOKEN_TTL_SECONDS || seconds > MAX_TOKEN_TTL_SECONDS) {
    fail('VALIDATION_FAILED', `tokenTtlSeconds must be a whole number from ${MIN_TOKEN_TTL_SECONDS} to ${MAX_TOKEN_TTL_SECONDS}`);
  }
  return seconds * 1000;
}

/**
 * Machine identities of a tenant, for its admins: create (a client secret shown once, or an OIDC
 * trust), list, get, disable (kills every live token at once), rotate the client secret (live
 * tokens stay valid; the old secret stops working), and revoke a single token.
 */
export function createMachineService(deps: {
  db: Kysely<Database>;
  repo: MachineRepository;
  clock: Clock;
  authz: Authorizer;
  tokens: { revoke(tokenId: string, tenantId: string | null, executor?: Executor): Promise<unknown>; revokeAllFor(principalId: string, executor?: Executor): Promise<void>; forgetToken(tokenId: string): void };
  defaultTokenTtlMs: number;
  audit: Pick<AuditLog, 'appendInTx'>;
}) {
  const { db, repo, clock, authz, tokens, audit } = deps;
  const machineEvent = (ctx: TenantContext, action: string, m: { id: string; name: string }, context: Record<string, string> = {}) => {
    const base = auditFrom(ctx);
    return [{ ...base, action, resource: { type: 'machine', id: m.id, name: m.name }, outcome: 'allowed' as const, context: { ...base.context, ...context } }];
  };
  const admin = (ctx: TenantContext) => authz.require(ctx, 'admin', { type: 'tenant' });

  async function load(ctx: TenantContext, id: string): Promise<MachineIdentitiesTable> {
    const row = await repo.find(ctx.tenantId, id);
    // Another tenant's identity is answered exactly like one that never existed.
    return row ?? fail('MACHINE_NOT_FOUND', 'no such machine identity in this tenant');
  }

  return {
    async create(ctx: TenantContext, input: CreateMachineInput): Promise<MachineWithSecret> {
      await admin(ctx);
      assertMachineName(input.name);
      const ttlMs = tokenTtlMs(input.tokenTtlSeconds, deps.defaultTokenTtlMs);
      if (input.kind === 'client_secret' && input.oidc !== undefined) fail('VALIDATION_FAILED', 'oidc applies only to identities of kind oidc');
      const binding = input.kind === 'oidc' ? parseOidcBinding(input.oidc) : null;
      if (input.ownerUserId !== undefined && !(await repo.enabledUserExists(ctx.tenantId, input.ownerUserId))) {
        fail('USER_NOT_FOUND', 'ownerUserId names no enabled user of this tenant');
      }
      const clientSecret = input.kind === 'client_secret' ? newClientSecret() : null;
      const row: MachineIdentitiesTable = {
        id: newId(),
        tenant_id: ctx.tenantId,
        name: input.name,
        kind: input.kind,
        client_id: newClientId(),
        client_secret_hash: clientSecret === null ? null : hashClientSecret(clientSecret),
        oidc_issuer: binding?.issuer ?? null,
        oidc_jwks_url: binding?.jwksUrl ?? null,
        oidc_audience: binding?.audience ?? null,
        oidc_subject: binding?.subject ?? null,
        oidc_claims: binding ? JSON.stringify(binding.claims) : null,
        oidc_max_age_ms: binding ? binding.maxAgeSeconds * 1000 : null,
        oidc_bound_claims_type: binding?.boundClaimsType ?? null,
        token_ttl_ms: ttlMs,
        owner_user_id: input.ownerUserId ?? null,
        created_at: clock.now(),
        disabled_at: null,
      };
      try {
        await db.transaction().execute(async (trx) => {
          await trx.insertInto('machine_identities').values(row).execute();
          await authz.bumpInTx(trx, ctx.tenantId);
          await audit.appendInTx(trx, machineEvent(ctx, 'machine.create', row, { kind: row.kind }));
        });
      } catch (err) {
        if (isUniqueViolation(err)) fail('MACHINE_EXISTS', `a machine identity named "${input.name}" already exists`);
        throw err;
      }
      await authz.invalidate(ctx.tenantId);
      return { ...toMachineIdentity(row), ...(clientSecret !== null ? { clientSecret } : {}) };
    },

    async list(ctx: TenantContext): Promise<{ items: MachineIdentity[] }> {
      await admin(ctx);
      return { items: (await repo.list(ctx.tenantId)).map(toMachineIdentity) };
    },

    async get(ctx: TenantContext, id: string): Promise<MachineIdentity> {
      await admin(ctx);
      return toMachineIdentity(await load(ctx, id));
    },

    /** Disables an identity and revokes its live tokens in the same transaction. Disabling twice is a no-op. */
    async disable(ctx: TenantContext, id: string): Promise<MachineIdentity> {
      await admin(ctx);
      const target = await load(ctx, id);
      const changed = await db.transaction().execute(async (trx) => {
        const done = await repo.disable(ctx.tenantId, id, clock.now(), trx);
        if (done) {
          await tokens.revokeAllFor(id, trx);
          await authz.bumpInTx(trx, ctx.tenantId);
          await audit.appendInTx(trx, machineEvent(ctx, 'machine.disable', target));
        }
        return done;
      });
      if (changed) {
        // Again after commit: drops any cache entry a lookup made from the not-yet-committed state.
        await tokens.revokeAllFor(id);
        await authz.invalidate(ctx.tenantId);
      }
      return toMachineIdentity(await load(ctx, id));
    },

    /** Issues a new client secret (shown once). Tokens already issued keep working until they expire. */
    async rotateSecret(ctx: TenantContext, id: string): Promise<MachineWithSecret> {
      await admin(ctx);
      const row = await load(ctx, id);
      if (row.kind !== 'client_secret') fail('VALIDATION_FAILED', 'this machine identity trusts an identity provider; it has no client secret to rotate');
      if (row.disabled_at !== null) fail('MACHINE_DISABLED', 'this machine identity is disabled');
      const clientSecret = newClientSecret();
      await db.transaction().execute(async (trx) => {
        if (!(await repo.setSecretHash(ctx.tenantId, id, hashClientSecret(clientSecret), trx))) fail('MACHINE_DISABLED', 'this machine identity is disabled');
        await audit.appendInTx(trx, machineEvent(ctx, 'machine.rotate-secret', row));
      });
      return { ...toMachineIdentity(row), clientSecret };
    },

    /** The identity's live access tokens, to find the one to revoke. */
    async liveTokens(ctx: TenantContext, id: string): Promise<{ items: MachineToken[] }> {
      await admin(ctx);
      await load(ctx, id);
      const rows = await repo.liveTokens(ctx.tenantId, id, clock.now());
      return { items: rows.map((t) => ({ id: t.id, createdAt: new Date(t.created_at).toISOString(), expiresAt: t.expires_at === null ? null : new Date(t.expires_at).toISOString() })) };
    },

    /** Revokes one access token of this tenant (root tokens are not tenant tokens and are not reachable here). */
    async revokeToken(ctx: TenantContext, tokenId: string): Promise<void> {
      await admin(ctx);
      await db.transaction().execute(async (trx) => {
        await tokens.revoke(tokenId, ctx.tenantId, trx);
        await audit.appendInTx(trx, [{ ...auditFrom(ctx), action: 'auth.token-revoke', resource: { type: 'token', id: tokenId, name: null }, outcome: 'allowed' }]);
      });
      // Again after commit: a lookup between the revoke and the commit may have cached the token as live.
      tokens.forgetToken(tokenId);
    },
  };
}

export type MachineService = ReturnType<typeof createMachineService>;
