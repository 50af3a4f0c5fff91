import type { Kysely } from 'kysely';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import type { Database } from '../../storage/schema.ts';
import { rolesFor, toLiveGrant, type LiveGrant } from '../grants/matching.ts';
import type { TenantContext } from '../shared/context.ts';
import type { Action } from './actions.ts';
import type { Authorizer, AuthzPermit, AuthzResource, SecretResource } from './authorizer.ts';
import type { DecisionRequest, PolicyEngine } from './engine.ts';
import { auditFrom, type AuditLog } from '../audit/audit-log.ts';
import type { IdentifierHasher } from '../audit/identifiers.ts';
import { escrowContext, loadEscrowState, type EscrowAuthzState } from '../escrow/escrow-authz.ts';
import { outsideBinding } from './environment-binding.ts';
import type { InvalidationBus } from '../invalidation/bus.ts';


/** How long a node trusts its copy of a tenant's authorization generation before re-reading it (other nodes' changes). */
const GENERATION_TTL_MS = 2_000;
const HOUR_MS = 3_600_000;
/** Bound on remembered allows per resource object (principals x actions x environments x addresses). */
const MAX_ALLOWS_PER_RESOURCE = 1_000;

interface RememberedAllow {
  permit: AuthzPermit | undefined;
  /** The entry holds until then (exclusive). */
  until: number;
}

/** What the authorizer holds per tenant, all of it valid for one authorization generation. */
interface TenantAuthzState {
  generation: number;
  checkedAt: number;
  grants: Map<string, LiveGrant[]>;
  escrow: EscrowAuthzState;
  allows: WeakMap<AuthzResource, Map<string, RememberedAllow>>;
}

/**
 * Every authorization decision: grants → roles for this environment and secret → Cedar (built-in
 * role policies + the tenant's own) → allow, FORBIDDEN, or STEP_UP_REQUIRED. Grants and the
 * tenant's installed policy set are cached per tenant and dropped on `invalidate` (this process,
 * at once; other nodes when its message reaches them) or when the tenant's generation in the
 * database moves (other nodes, within 2 s, whatever became of the message).
 * Every change moves the generation in its own transaction (`bumpInTx`). An actor bound to one
 * environment (a run's token) is refused outside it before any of that is consulted.
 */
export function createCedarAuthorizer(deps: {
  db: Kysely<Database>; engine: PolicyEngine; clock: Clock; stepUpWindowMs: number;
  /** Denials are audit events too (SPEC §7). */
  audit: Pick<AuditLog, 'record'>;
  /** A denied request for a secret that does not exist is audited with its name as a keyed HMAC (it may be sensitive). */
  identifiers: Pick<IdentifierHasher, 'hash'>;
  /** Other nodes: told of each `invalidate` here, and heard of theirs (SPEC §13). */
  peers?: Pick<InvalidationBus, 'publish' | 'subscribe'>;
}): Authorizer & {
  loadTenant(tenantId: string): Promise<void>;
} {
  const { db, engine, clock, stepUpWindowMs, audit, identifiers, peers } = deps;
  const tenants = new Map<string, TenantAuthzState>();

  /**
   * This process's `invalidate`s per tenant. A load that spans one may have read the generation
   * before the change committed: it decides only the request that made it, and is not kept.
   */
  const epochs = new Map<string, number>();
  /** Moves when everything is dropped at once (messages from other nodes may have been missed). */
  let resets = 0;

  function dropTenant(tenantId: string): void {
    epochs.set(tenantId, (epochs.get(tenantId) ?? 0) + 1);
    tenants.delete(tenantId);
  }

  peers?.subscribe({
    onMessage(m) {
      if (m.kind === 'authz') dropTenant(m.tenantId);
    },
    onGap() {
      resets++;
      tenants.clear();
    },
  });

  async function tenantState(tenantId: string): Promise<TenantAuthzState> {
    const now = clock.now();
    const cached = tenants.get(tenantId);
    if (cached && now - cached.checkedAt < GENERATION_TTL_MS) return cached;
    const epoch = epochs.get(tenantId) ?? 0;
    const reset = resets;
    const row = await db.selectFrom('tenants').select(['authz_generation', 'policy_version']).where('id', '=', tenantId).executeTakeFirst();
    if (!row) fail('TENANT_NOT_FOUND', 'tenant not found');
    const state = tenants.get(tenantId);
    if (state && state.generation === row.authz_generation && engine.installedGeneration(tenantId) === row.authz_generation) {
      state.checkedAt = now;
      return state;
    }
    const policies = await storedPolicies(tenantId, row.policy_version);
    // Access rules and live escrow grants change only with the generation: loaded here, never per decision.
    const escrow = await loadEscrowState(db, tenantId, now);
    const loaded: TenantAuthzState = { generation: row.authz_generation, checkedAt: now, grants: new Map(), escrow, allows: new WeakMap() };
    if ((epochs.get(tenantId) ?? 0) !== epoch || resets !== reset) {
      // A change in this process landed while this loaded, so the load may predate it. It still
      // serves this decision, which overlapped the change, but it is neither kept nor allowed to
      // replace a newer policy set: the next decision loads again.
      const installed = engine.installedGeneration(tenantId);
      if (installed === null || installed < row.authz_generation) engine.install(tenantId, row.authz_generation, policies);
      return loaded;
    }
    // No await from the check on: nothing this process commits can slip between it and the install.
    engine.install(tenantId, row.authz_generation, policies);
    tenants.set(tenantId, loaded);
    return loaded;
  }

  /** The tenant policy set of a version (0: none), as it was validated before it took effect. */
  async function storedPolicies(tenantId: string, version: number): Promise<Record<string, string>> {
    if (version === 0) return {};
    const p = await db.selectFrom('tenant_policies').select('text').where('tenant_id', '=', tenantId).where('version', '=', version).executeTakeFirst();
    const checked = engine.validate(p?.text ?? '', 'stored');
    // A stored set was validated before it took effect; if it no longer validates (a server upgrade changed the
    // schema), fail closed, saying how out: root is decided by the built-ins alone and can roll back or apply a fix.
    if (!checked.ok) fail('POLICY_UNUSABLE', `the tenant's policy version ${version} in force no longer validates on this server; every decision in the tenant is refused until root rolls it back or applies a fixed version (keyhold policy rollback|apply)`);
    return checked.policies;
  }

  async function grantsOf(state: TenantAuthzState, tenantId: string, principalId: string): Promise<LiveGrant[]> {
    let grants = state.grants.get(principalId);
    if (!grants) {
      grants = (await db.selectFrom('grants').select(['role', 'environments', 'name_patterns', 'expires_at', 'revoked_at'])
        .where('tenant_id', '=', tenantId).where('principal_id', '=', principalId).where('revoked_at', 'is', null).execute()).map(toLiveGrant);
      state.grants.set(principalId, grants);
    }
    return grants;
  }

  /**
   * The decision's inputs, all read from one tenant state (`state`, null for root): grants and
   * escrow of one generation, and the state an allow may be remembered in (see rememberAllow).
   */
  async function buildRequest(ctx: TenantContext, action: Action, resource: AuthzResource, environment: string | undefined): Promise<DecisionRequest & { accessRequestId: string | null; state: TenantAuthzState | null }> {
    const now = clock.now();
    const actor = ctx.actor;
    const type = actor.type === 'system' ? 'root' : actor.type;
    const state = type === 'root' ? null : await tenantState(ctx.tenantId);
    const roles = state === null ? [] : rolesFor(await grantsOf(state, ctx.tenantId, actor.id), {
      now,
      ...(environment !== undefined ? { environment } : {}),
      ...(resource.type === 'secret' ? { secretName: resource.name } : {}),
      listOnly: action === 'list',
    });
    const mfaAt = actor.mfaAt ?? null;
    const fresh = type === 'user' && mfaAt !== null && now - mfaAt <= stepUpWindowMs;
    const date = new Date(now);
    let { requestId: accessRequestId, ...escrow } = escrowContext(state?.escrow ?? null, {
      now, principalType: type, principalId: actor.id, action, resource, environment,
    });
    // An escrow grant holds only while its holder keeps the standing it needed to file the request:
    // allowed to list the secret. Someone whose roles were taken away loses what they were granted too.
    if (accessRequestId !== null && !engine.decide(await buildRequest(ctx, 'list', resource, undefined)).allowed) {
      accessRequestId = null;
      escrow = { ...escrow, viaRequest: false };
    }
    return {
      accessRequestId,
      state,
      tenantId: ctx.tenantId,
      // A principal without a known home tenant is treated as belonging to none: the boundary forbids everything.
      principal: { type, id: actor.id, name: actor.name, tenantId: type === 'root' ? ctx.tenantId : (actor.homeTenantId ?? '(none)') },
      action,
      resource,
      context: {
        environment: environment ?? '',
        classification: resource.type === 'secret' ? resource.classification : '',
        identityType: type,
        roles,
        mfaFresh: fresh,
        mfaAgeSeconds: mfaAt === null ? -1 : Math.max(0, Math.floor((now - mfaAt) / 1000)),
        hour: date.getUTCHours(),
        weekday: date.getUTCDay(),
        sourceIp: ctx.sourceIp ?? '127.0.0.1',
        ...escrow,
      },
    };
  }

  /**
   * Allows remembered per tenant state (so per authorization generation), per resource object
   * (read paths pass the same frozen view of a cached row on every read) and per everything else a
   * decision reads: principal, action, environment, source address. An entry ends before any
   * input that moves with time can change the answer: the next UTC hour (policies may read hour
   * and weekday), the principal's next grant expiry, the secret's next escrow grant expiry. People
   * with a verified second factor are never remembered (their context carries its age in seconds),
   * nor are resources that are not frozen (only those are known to stay the same object's meaning).
   * Denials are never remembered: each one is decided, and audited, afresh.
   */
  function allowKey(ctx: TenantContext, action: Action, resource: AuthzResource, environment: string | undefined): string | null {
    const a = ctx.actor;
    // Only a frozen resource is known not to change under the same identity (tags included).
    if ((a.mfaAt !== undefined && a.mfaAt !== null) || !Object.isFrozen(resource)) return null;
    if (resource.type === 'secret' && !Object.isFrozen(resource.tags)) return null;
    return `${action}\u0000${environment ?? ''}\u0000${a.type}\u0000${a.id}\u0000${a.homeTenantId ?? ''}\u0000${a.name}\u0000${ctx.sourceIp ?? ''}`;
  }

  function rememberedAllow(ctx: TenantContext, action: Action, resource: AuthzResource, environment: string | undefined): RememberedAllow | undefined {
    // Outside its binding nothing is remembered: `require` refuses and audits it.
    if (outsideBinding(ctx.actor, action, environment)) return undefined;
    const state = tenants.get(ctx.tenantId);
    if (!state) return undefined;
    const now = clock.now();
    if (now - state.checkedAt >= GENERATION_TTL_MS) return undefined;
    const key = allowKey(ctx, action, resource, environment);
    if (key === null) return undefined;
    const entry = state.allows.get(resource)?.get(key);
    return entry && now < entry.until ? entry : undefined;
  }

  /**
   * Remembers an allow in the state its inputs were read from, and only while that state is still
   * the tenant's: a grant revoked while the decision was in flight has invalidated it (or a newer
   * generation replaced it), and an allow decided from the old grants must not outlive them.
   */
  function rememberAllow(state: TenantAuthzState | null, ctx: TenantContext, action: Action, resource: AuthzResource, environment: string | undefined, permit: AuthzPermit | undefined): void {
    const key = allowKey(ctx, action, resource, environment);
    if (state === null || tenants.get(ctx.tenantId) !== state || key === null) return;
    const now = clock.now();
    let until = Math.floor(now / HOUR_MS) * HOUR_MS + HOUR_MS;
    for (const g of state.grants.get(ctx.actor.id) ?? []) if (g.expiresAt !== null && g.expiresAt > now) until = Math.min(until, g.expiresAt);
    if (resource.type === 'secret') {
      for (const g of state.escrow.grantsBySecret.get(resource.id) ?? []) if (g.expiresAt > now) until = Math.min(until, g.expiresAt);
    }
    let byKey = state.allows.get(resource);
    if (!byKey) state.allows.set(resource, (byKey = new Map()));
    if (byKey.size >= MAX_ALLOWS_PER_RESOURCE) byKey.delete(byKey.keys().next().value!);
    byKey.set(key, { permit, until });
  }

  /** Every denial is one `authz.<action>` event, with the code it answers and why (`context`). */
  async function recordDenial(ctx: TenantContext, action: Action, resource: AuthzResource, environment: string | undefined, code: string, context: Record<string, string>): Promise<void> {
    const base = auditFrom(ctx);
    await audit.record([{
      ...base, action: `authz.${action}`, outcome: 'denied', reason: code,
      resource: resource.type === 'secret' ? await deniedSecret(ctx.tenantId, resource) : { type: 'tenant', id: ctx.tenantId, name: null },
      environment: environment ?? null,
      context: { ...base.context, ...context },
    }]);
  }

  /** A bound actor outside its environment: audited like every denial, then FORBIDDEN (no role or policy is asked). */
  async function refuseOutsideBinding(ctx: TenantContext, action: Action, resource: AuthzResource, environment: string | undefined): Promise<never> {
    await recordDenial(ctx, action, resource, environment, 'FORBIDDEN', { policies: 'builtin:environment-binding', boundEnvironment: ctx.actor.boundEnvironment ?? '' });
    const where = environment === undefined ? 'outside any environment' : `in ${environment}`;
    return fail('FORBIDDEN', `this credential is bound to environment ${ctx.actor.boundEnvironment}: it cannot ${action} ${where}`);
  }

  /**
   * How a denial names a secret: as it is when it exists; a requested name that exists nowhere
   * (a refused create, a guess) may itself be sensitive, so only its keyed HMAC is kept.
   */
  async function deniedSecret(tenantId: string, resource: SecretResource): Promise<{ type: 'secret'; id: string | null; name: string }> {
    const row = await db.selectFrom('secrets').select('id').where('tenant_id', '=', tenantId).where('id', '=', resource.id).executeTakeFirst();
    return row ? { type: 'secret', id: resource.id, name: resource.name } : { type: 'secret', id: null, name: identifiers.hash(resource.name) };
  }

  async function allowed(ctx: TenantContext, action: Action, resource: AuthzResource, environment?: string): Promise<boolean> {
    if (outsideBinding(ctx.actor, action, environment)) return false;
    return engine.decide(await buildRequest(ctx, action, resource, environment)).allowed;
  }

  return {
    allowed,

    cachedAllow: rememberedAllow,

    async require(ctx, action, resource, environment): Promise<AuthzPermit | void> {
      const remembered = rememberedAllow(ctx, action, resource, environment);
      if (remembered) return remembered.permit;
      if (outsideBinding(ctx.actor, action, environment)) return refuseOutsideBinding(ctx, action, resource, environment);
      const { accessRequestId, state, ...request } = await buildRequest(ctx, action, resource, environment);
      const decision = engine.decide(request);
      if (decision.allowed) {
        const permit = accessRequestId === null ? undefined : { accessRequestId };
        rememberAllow(state, ctx, action, resource, environment, permit);
        return permit;
      }
      // Only say "step up" when a fresh second factor would actually make it allowed: judged as right
      // after one (age 0), so a tenant rule on the factor's age is not read with the stale age.
      const stepUp = decision.reasons.includes('builtin:step-up') && engine.decide({ ...request, context: { ...request.context, mfaFresh: true, mfaAgeSeconds: 0 } }).allowed;
      // Escrow's forbids have codes of their own, so the caller knows to file a request (or that duties are separated).
      const code = stepUp ? 'STEP_UP_REQUIRED'
        : decision.reasons.includes('builtin:approver-cannot-rotate') ? 'SEPARATION_OF_DUTIES'
          : decision.reasons.includes('builtin:approval-required') ? 'APPROVAL_REQUIRED' : 'FORBIDDEN';
      await recordDenial(ctx, action, resource, environment, code, { policies: decision.reasons.join(',') });
      if (stepUp) fail('STEP_UP_REQUIRED', `${action} needs a second factor within the step-up window: POST /v1/auth/step-up`);
      const what = resource.type === 'secret' ? `secret "${resource.name}"${environment ? ` in ${environment}` : ''}` : 'this tenant';
      if (code === 'SEPARATION_OF_DUTIES') fail(code, `you approved a live request to ${action} ${what}; someone else must carry it out`);
      if (code === 'APPROVAL_REQUIRED') fail(code, `an access policy requires an approved request to ${action} ${what}: file one (POST /v1/requests)`);
      fail('FORBIDDEN', `not allowed to ${action} ${what}`);
    },

    async bumpInTx(trx, tenantId) {
      await trx.updateTable('tenants').set((eb) => ({ authz_generation: eb('authz_generation', '+', 1) })).where('id', '=', tenantId).execute();
    },

    invalidate(tenantId) {
      dropTenant(tenantId);
      peers?.publish({ kind: 'authz', tenantId });
    },

    async loadTenant(tenantId) {
      await tenantState(tenantId);
    },
  };
}
