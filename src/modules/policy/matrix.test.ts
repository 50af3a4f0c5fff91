import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { newId } from '../../platform/ids.ts';
import type { TenantContext } from '../shared/context.ts';
import { ACTIONS, ROLES, SECRET_ACTIONS, type Action, type Role } from './actions.ts';
import type { AuthzResource } from './authorizer.ts';

type Cell = 'allow' | 'deny' | 'step-up';

/**
 * What each built-in role may do in its own tenant, for a person with a fresh second factor
 * ('allow'), or only with one ('step-up': allowed when fresh, STEP_UP_REQUIRED when stale).
 * Every role has every action spelled out: a new role or action without its cells fails below.
 */
const EXPECTED: Record<Role, Record<Action, Cell>> = {
  viewer: { list: 'allow', use: 'deny', reveal: 'deny', write: 'deny', rotate: 'deny', delete: 'deny', approve: 'deny', 'audit:read': 'deny', admin: 'deny', export: 'deny' },
  builder: { list: 'allow', use: 'allow', reveal: 'deny', write: 'deny', rotate: 'deny', delete: 'deny', approve: 'deny', 'audit:read': 'deny', admin: 'deny', export: 'deny' },
  revealer: { list: 'allow', use: 'allow', reveal: 'step-up', write: 'deny', rotate: 'deny', delete: 'deny', approve: 'deny', 'audit:read': 'deny', admin: 'deny', export: 'deny' },
  'secret-admin': { list: 'allow', use: 'deny', reveal: 'deny', write: 'allow', rotate: 'step-up', delete: 'allow', approve: 'deny', 'audit:read': 'deny', admin: 'deny', export: 'allow' },
  'rotation-operator': { list: 'allow', use: 'deny', reveal: 'deny', write: 'deny', rotate: 'step-up', delete: 'deny', approve: 'deny', 'audit:read': 'deny', admin: 'deny', export: 'deny' },
  approver: { list: 'allow', use: 'deny', reveal: 'deny', write: 'deny', rotate: 'deny', delete: 'deny', approve: 'step-up', 'audit:read': 'deny', admin: 'deny', export: 'deny' },
  auditor: { list: 'allow', use: 'deny', reveal: 'deny', write: 'deny', rotate: 'deny', delete: 'deny', approve: 'deny', 'audit:read': 'allow', admin: 'deny', export: 'deny' },
  'tenant-admin': { list: 'allow', use: 'deny', reveal: 'deny', write: 'deny', rotate: 'deny', delete: 'deny', approve: 'deny', 'audit:read': 'allow', admin: 'step-up', export: 'allow' },
};

/**
 * The same grants held by a machine: no second factor exists for it, so the step-up forbid (people
 * only) does not apply, but no machine ever has a value revealed: machines use, people reveal.
 */
function machineCell(role: Role, action: Action): 'allow' | 'deny' {
  if (action === 'reveal') return 'deny';
  return EXPECTED[role][action] === 'deny' ? 'deny' : 'allow';
}

test('the matrix has a cell for every built-in role and every action', () => {
  assert.deepEqual(Object.keys(EXPECTED).sort(), [...ROLES].sort());
  for (const role of ROLES) assert.deepEqual(Object.keys(EXPECTED[role]).sort(), [...ACTIONS].sort(), `cells of ${role}`);
});

describeEachDialect('authorization matrix: role × action × tenant × environment × MFA freshness', (dialect) => {
  let h: Harness;
  let otherTenant: string;
  const users = new Map<Role, string>();
  const secretOf = new Map<string, AuthzResource>();

  const machines = new Map<Role, string>();

  async function addMachine(tenantId: string, name: string): Promise<string> {
    const id = newId();
    await h.storage.db.insertInto('machine_identities').values({
      id, tenant_id: tenantId, name, kind: 'client_secret', client_id: `khc_${id}`, client_secret_hash: 'x',
      oidc_issuer: null, oidc_jwks_url: null, oidc_audience: null, oidc_subject: null, oidc_claims: null, token_ttl_ms: 900_000,
      owner_user_id: null, created_at: h.clock.now(), disabled_at: null,
    }).execute();
    return id;
  }

  async function addUser(tenantId: string, username: string): Promise<string> {
    const id = newId();
    await h.storage.db.insertInto('users').values({
      id, tenant_id: tenantId, username, password_hash: '$argon2id$unused', totp_secret: null, totp_enabled: 1, totp_last_step: null,
      created_at: h.clock.now(), password_changed_at: h.clock.now(), disabled_at: null,
    }).execute();
    return id;
  }

  before(async () => {
    h = await createHarness(dialect);
    otherTenant = (await h.services.tenants.create('other')).id;
    for (const [tenantId, label] of [[h.ctx.tenantId, 'own'], [otherTenant, 'other']] as const) {
      const meta = await h.services.secrets.create(h.contextFor(tenantId), { name: 'MATRIX_KEY', owner: 'ops', classification: 'confidential' });
      secretOf.set(label, { type: 'secret', id: meta.id, name: meta.name, classification: meta.classification, owner: meta.owner, tags: meta.tags });
    }
    for (const role of ROLES) {
      const id = await addUser(h.ctx.tenantId, `user-${role}`);
      users.set(role, id);
      await h.services.grants.create(h.ctx, { principalType: 'user', principalId: id, role });
      const machineId = await addMachine(h.ctx.tenantId, `machine-${role}`);
      machines.set(role, machineId);
      await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machineId, role });
    }
  });
  after(() => h.close());

  function ctxFor(role: Role, actingTenant: string, mfaFresh: boolean): TenantContext {
    return {
      tenantId: actingTenant,
      requestId: 'matrix',
      sourceIp: '127.0.0.1',
      actor: { type: 'user', id: users.get(role)!, name: role, homeTenantId: h.ctx.tenantId, mfaAt: mfaFresh ? h.clock.now() - 60_000 : h.clock.now() - 3_600_000 },
    };
  }

  for (const role of ROLES) {
    test(`${role}: every action, own and other tenant, development and production, MFA fresh and stale`, async () => {
      for (const action of ACTIONS) {
        for (const tenant of ['own', 'other'] as const) {
          for (const environment of ['development', 'production']) {
            for (const fresh of [true, false]) {
              const actingTenant = tenant === 'own' ? h.ctx.tenantId : otherTenant;
              const resource: AuthzResource = SECRET_ACTIONS.includes(action) ? secretOf.get(tenant)! : { type: 'tenant' };
              const env = SECRET_ACTIONS.includes(action) ? environment : undefined;
              const cell = EXPECTED[role][action];
              const expected = tenant === 'other' || cell === 'deny' ? 'FORBIDDEN' : cell === 'step-up' && !fresh ? 'STEP_UP_REQUIRED' : 'allowed';
              const outcome = await h.services.authz.require(ctxFor(role, actingTenant, fresh), action, resource, env)
                .then(() => 'allowed', (err: { code?: string }) => err.code ?? String(err));
              assert.equal(outcome, expected, `${role} ${action} ${tenant} ${environment} mfa=${fresh ? 'fresh' : 'stale'}`);
            }
          }
        }
      }
    });
  }

  for (const role of ROLES) {
    test(`a machine holding ${role}: every action, own and other tenant, development and production`, async () => {
      for (const action of ACTIONS) {
        for (const tenant of ['own', 'other'] as const) {
          for (const environment of ['development', 'production']) {
            const actingTenant = tenant === 'own' ? h.ctx.tenantId : otherTenant;
            const resource: AuthzResource = SECRET_ACTIONS.includes(action) ? secretOf.get(tenant)! : { type: 'tenant' };
            const env = SECRET_ACTIONS.includes(action) ? environment : undefined;
            const expected = tenant === 'other' || machineCell(role, action) === 'deny' ? 'FORBIDDEN' : 'allowed';
            const ctx: TenantContext = {
              tenantId: actingTenant, requestId: 'matrix', sourceIp: '127.0.0.1',
              actor: { type: 'machine', id: machines.get(role)!, name: `machine-${role}`, homeTenantId: h.ctx.tenantId },
            };
            const outcome = await h.services.authz.require(ctx, action, resource, env).then(() => 'allowed', (err: { code?: string }) => err.code ?? String(err));
            assert.equal(outcome, expected, `machine ${role} ${action} ${tenant} ${environment}`);
          }
        }
      }
    });
  }

  test('another tenant that permits everything still forbids every role of this tenant every action: the built-in boundary decides', async () => {
    // Decisions read the target tenant's policy set, so the permit goes there, not in the caller's tenant.
    await h.services.policies.put(h.contextFor(otherTenant), { text: 'permit (principal, action, resource);' });
    try {
      for (const role of ROLES) {
        for (const action of ACTIONS) {
          const resource: AuthzResource = SECRET_ACTIONS.includes(action) ? secretOf.get('other')! : { type: 'tenant' };
          const env = SECRET_ACTIONS.includes(action) ? 'production' : undefined;
          const outcome = await h.services.authz.require(ctxFor(role, otherTenant, true), action, resource, env)
            .then(() => 'allowed', (err: { code?: string }) => err.code ?? String(err));
          assert.equal(outcome, 'FORBIDDEN', `${role} ${action} in the other tenant`);
        }
      }
      const machineOutcome = await h.services.authz.allowed(
        { tenantId: otherTenant, requestId: 'm', actor: { type: 'machine', id: 'any-machine', name: 'runner', homeTenantId: h.ctx.tenantId } }, 'use', secretOf.get('other')!, 'production');
      assert.equal(machineOutcome, false, 'machines of this tenant too');
    } finally {
      await h.services.policies.put(h.contextFor(otherTenant), { text: '' });
    }
  });

  test('escrow: where an access policy requires approval, every role gets APPROVAL_REQUIRED for those actions there, and nothing else changes', async () => {
    const escrowActions: Action[] = ['reveal', 'use', 'write', 'rotate'];
    await h.services.escrow.accessPolicies.put(h.ctx, {
      document: { groups: { approvers: ['user-approver'] }, rules: [{ id: 'prod', environments: ['production'], actions: ['reveal', 'use', 'write', 'rotate'], steps: [{ groups: ['approvers'], approvals: 1 }] }] },
    });
    try {
      for (const role of ROLES) {
        for (const action of SECRET_ACTIONS) {
          for (const environment of ['development', 'production']) {
            const cell = EXPECTED[role][action];
            const expected = environment === 'production' && escrowActions.includes(action) ? 'APPROVAL_REQUIRED' : cell === 'deny' ? 'FORBIDDEN' : 'allowed';
            const outcome = await h.services.authz.require(ctxFor(role, h.ctx.tenantId, true), action, secretOf.get('own')!, environment)
              .then(() => 'allowed', (err: { code?: string }) => err.code ?? String(err));
            assert.equal(outcome, expected, `${role} ${action} ${environment}`);
          }
        }
      }
      assert.equal(await h.services.authz.allowed(h.ctx, 'reveal', secretOf.get('own')!, 'production'), true, 'root stays outside escrow');
      const other = await h.services.authz.require(ctxFor('revealer', otherTenant, true), 'reveal', secretOf.get('other')!, 'production').catch((e: { code: string }) => e.code);
      assert.equal(other, 'FORBIDDEN', 'another tenant is still just forbidden');
    } finally {
      await h.services.escrow.accessPolicies.put(h.ctx, { document: { groups: {}, rules: [] } });
    }
  });

  test('a builder machine can use but never reveal; a revealer machine cannot reveal either (machines use, people reveal)', async () => {
    const machineId = newId();
    await h.storage.db.insertInto('machine_identities').values({
      id: machineId, tenant_id: h.ctx.tenantId, name: 'runner', kind: 'client_secret', client_id: `khc_${machineId}`, client_secret_hash: 'x',
      oidc_issuer: null, oidc_jwks_url: null, oidc_audience: null, oidc_subject: null, oidc_claims: null, token_ttl_ms: 900_000,
      owner_user_id: null, created_at: h.clock.now(), disabled_at: null,
    }).execute();
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machineId, role: 'revealer' });
    const ctx: TenantContext = { tenantId: h.ctx.tenantId, requestId: 'm', actor: { type: 'machine', id: machineId, name: 'runner', homeTenantId: h.ctx.tenantId } };
    const secret = secretOf.get('own')!;
    assert.equal(await h.services.authz.allowed(ctx, 'use', secret, 'production'), true);
    assert.equal(await h.services.authz.allowed(ctx, 'reveal', secret, 'production'), false);
  });
});
