import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createHarness, type Harness } from '../helpers/harness.ts';
import { machineContext } from '../helpers/identities.ts';
import { codeOf } from '../helpers/rejects.ts';
import { PASSWORD } from '../helpers/users.ts';
import type { TenantContext } from '../../src/modules/shared/context.ts';

/**
 * Every call of user, machine, grant and policy administration asks for tenant-admin itself: a
 * member of the tenant with another role (here a builder machine, which has no step-up to miss)
 * is refused each one with FORBIDDEN, and nothing it asked for happens.
 */
describeEachDialect('tenant administration is for tenant admins only', (dialect) => {
  let h: Harness;
  let builder: TenantContext;
  before(async () => {
    h = await createHarness(dialect);
    builder = (await machineContext(h, 'just-a-builder', { role: 'builder' })).ctx();
  });
  after(() => h.close());

  test('each administration call is FORBIDDEN to a builder, and changes nothing', async () => {
    const s = h.services;
    const user = await s.users.create(h.ctx, { username: 'target-user', password: PASSWORD, email: 'target@example.com' });
    const machine = await s.machines.create(h.ctx, { name: 'target-machine', kind: 'client_secret' });
    const token = await s.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: machine.id, name: machine.name, ttlMs: 3_600_000 });
    const grant = await s.grants.create(h.ctx, { principalType: 'machine', principalId: machine.id, role: 'viewer' });
    const policy = 'permit (principal, action == Keyhold::Action::"list", resource) when { context.roles.contains("viewer") };';
    await s.policies.put(h.ctx, { text: policy });
    await s.policies.put(h.ctx, { text: '' });

    const calls: Array<[string, () => Promise<unknown>]> = [
      ['users.create', () => s.users.create(builder, { username: 'made-by-builder', password: PASSWORD })],
      ['users.list', () => s.users.list(builder)],
      ['users.get', () => s.users.get(builder, user.id)],
      ['users.setEmail', () => s.users.setEmail(builder, user.id, 'builder@example.com')],
      ['users.disable', () => s.users.disable(builder, user.id)],
      ['users.issueTotpTicket', () => s.users.issueTotpTicket(builder, user.id, { resetFactor: true })],
      ['machines.create', () => s.machines.create(builder, { name: 'made-by-builder', kind: 'client_secret' })],
      ['machines.list', () => s.machines.list(builder)],
      ['machines.get', () => s.machines.get(builder, machine.id)],
      ['machines.disable', () => s.machines.disable(builder, machine.id)],
      ['machines.rotateSecret', () => s.machines.rotateSecret(builder, machine.id)],
      ['machines.liveTokens', () => s.machines.liveTokens(builder, machine.id)],
      ['machines.revokeToken', () => s.machines.revokeToken(builder, token.id)],
      ['grants.create', () => s.grants.create(builder, { principalType: 'machine', principalId: builder.actor.id, role: 'tenant-admin' })],
      ['grants.list', () => s.grants.list(builder)],
      ['grants.revoke', () => s.grants.revoke(builder, grant.id)],
      ['policies.validate', () => s.policies.validate(builder, policy)],
      ['policies.current', () => s.policies.current(builder)],
      ['policies.get', () => s.policies.get(builder, 1)],
      ['policies.history', () => s.policies.history(builder)],
      ['policies.diff', () => s.policies.diff(builder, 1, 2)],
      ['policies.put', () => s.policies.put(builder, { text: 'permit (principal, action, resource);' })],
      ['policies.rollback', () => s.policies.rollback(builder, 1)],
    ];
    const answers: Record<string, string> = {};
    for (const [name, run] of calls) answers[name] = await codeOf(run());
    assert.deepEqual(answers, Object.fromEntries(calls.map(([name]) => [name, 'FORBIDDEN'])));

    const after = await s.users.get(h.ctx, user.id);
    assert.deepEqual([after.disabledAt, after.email], [null, 'target@example.com']);
    assert.equal((await s.users.list(h.ctx)).some((u) => u.username === 'made-by-builder'), false);
    assert.equal((await s.machines.get(h.ctx, machine.id)).disabledAt, null);
    assert.equal((await s.machines.list(h.ctx)).items.some((m) => m.name === 'made-by-builder'), false);
    assert.notEqual(await s.tokens.authenticate(token.token), null, 'the token lives on');
    const grants = await s.grants.list(h.ctx);
    assert.ok(grants.some((g) => g.id === grant.id && g.state === 'live'));
    assert.equal(grants.some((g) => g.principalId === builder.actor.id && g.role === 'tenant-admin'), false);
    assert.equal((await s.policies.current(h.ctx)).version, 2);
  });
});
