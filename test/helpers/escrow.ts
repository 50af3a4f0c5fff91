import type { Harness } from './harness.ts';
import { userContext } from './identities.ts';
import { newId } from '../../src/platform/ids.ts';
import type { TenantContext } from '../../src/modules/shared/context.ts';
import type { AccessPolicyDocument } from '../../src/modules/escrow/access-policy.ts';

/** A cast of people and one machine for escrow suites, with the roles their names say. */
export interface EscrowCast {
  builder: Person; alice: Person; bob: Person; carol: Person; dave: Person; frank: Person; oncall: Person; revealer: Person;
  /** A machine identity owned by alice (builder role). */
  runner: { id: string; ctx: () => TenantContext };
}
export interface Person { id: string; name: string; ctx: () => TenantContext; stale: () => TenantContext }

/**
 * The access policy the suites share:
 * - production reveals of STRIPE_*: 2 approvals from leads ∪ security (carol is in both), break-glass for oncall;
 * - staging reveals of anything: 1 approval from leads;
 * - VAULT_* production reveals: leads, then security (sequential);
 * - production rotations: 1 approval from leads;
 * - production use of PAY_* (by a machine): 1 approval from leads.
 */
export const ESCROW_POLICY: AccessPolicyDocument = {
  groups: { leads: ['alice', 'bob', 'carol', 'frank'], security: ['carol', 'dave'] },
  rules: [
    { id: 'vault-prod', secrets: ['VAULT_*'], environments: ['production'], actions: ['reveal'], steps: [{ groups: ['leads'], approvals: 1 }, { groups: ['security'], approvals: 1 }] },
    {
      id: 'prod-reveal', secrets: ['STRIPE_*'], environments: ['production'], actions: ['reveal'], steps: [{ groups: ['leads', 'security'], approvals: 2 }],
      maxDurationSeconds: 7200, requestExpirySeconds: 3600, breakGlass: { users: ['oncall'] },
    },
    { id: 'staging-reveal', environments: ['staging'], actions: ['reveal'], steps: [{ groups: ['leads'], approvals: 1 }] },
    { id: 'prod-rotate', environments: ['production'], actions: ['rotate'], steps: [{ groups: ['leads'], approvals: 1 }] },
    { id: 'prod-use', secrets: ['PAY_*'], environments: ['production'], actions: ['use'], steps: [{ groups: ['leads'], approvals: 1 }] },
  ],
};

async function person(h: Harness, name: string, role: string | null): Promise<Person> {
  const tenantId = h.ctx.tenantId;
  const fresh = await userContext(h, tenantId, name);
  if (role) await h.services.grants.create(h.ctx, { principalType: 'user', principalId: fresh.id, role });
  // The same person in a session whose second factor is an hour old.
  return { id: fresh.id, name, ctx: fresh.ctx, stale: () => ({ ...fresh.ctx(), actor: { ...fresh.ctx().actor, mfaAt: h.clock.now() - 3_600_000 } }) };
}

/** Creates the cast, the secrets (with values in staging and production) and applies ESCROW_POLICY. */
export async function setUpEscrow(h: Harness, secrets: string[]): Promise<EscrowCast> {
  const cast = {
    builder: await person(h, 'builder', 'builder'),
    alice: await person(h, 'alice', 'approver'),
    bob: await person(h, 'bob', 'approver'),
    carol: await person(h, 'carol', 'approver'),
    dave: await person(h, 'dave', 'approver'),
    frank: await person(h, 'frank', 'viewer'),
    oncall: await person(h, 'oncall', 'builder'),
    revealer: await person(h, 'revealer', 'revealer'),
  };
  const runnerId = newId();
  await h.storage.db.insertInto('machine_identities').values({
    id: runnerId, tenant_id: h.ctx.tenantId, name: 'alices-runner', kind: 'client_secret', client_id: `khc_${runnerId}`, client_secret_hash: 'x',
    oidc_issuer: null, oidc_jwks_url: null, oidc_audience: null, oidc_subject: null, oidc_claims: null, token_ttl_ms: 900_000,
    owner_user_id: cast.alice.id, created_at: h.clock.now(), disabled_at: null,
  }).execute();
  await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: runnerId, role: 'builder' });
  const runner = { id: runnerId, ctx: (): TenantContext => ({ tenantId: h.ctx.tenantId, requestId: 'test', actor: { type: 'machine', id: runnerId, name: 'alices-runner', homeTenantId: h.ctx.tenantId } }) };
  for (const name of secrets) {
    await h.services.secrets.create(h.ctx, { name, owner: 'payments', classification: 'confidential' });
    for (const env of ['staging', 'production']) {
      await h.services.values.write(h.ctx, name, env, { value: `${name.toLowerCase()}-${env}-v1-value` });
      await h.services.values.write(h.ctx, name, env, { value: `${name.toLowerCase()}-${env}-v2-value` });
    }
  }
  await h.services.escrow.accessPolicies.put(h.ctx, { document: ESCROW_POLICY, comment: 'escrow suite' });
  return { ...cast, runner };
}
