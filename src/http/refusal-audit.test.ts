import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../test/helpers/harness.ts';
import { eventsOf } from '../../test/helpers/connectors.ts';
import { userContext } from '../../test/helpers/identities.ts';

/**
 * Refusals decided outside Cedar (no token, a bad one, a root-only route or audit read asked for by
 * someone else) are denied events like any other: who (as far as known), from where, which route,
 * why; never the token or any part of it.
 */
describeEachDialect('HTTP refusals are audited', (dialect) => {
  let h: Harness;
  let auditor: { token: string; id: string; machineId: string };
  let revoked: string;
  let revokedId: string;
  let expired: { token: string; id: string };
  before(async () => {
    h = await createHarness(dialect);
    const machine = await h.services.machines.create(h.ctx, { name: 'auditor-bot', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machine.id, role: 'auditor' });
    const issued = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: machine.id, name: 'auditor', ttlMs: 3_600_000 });
    auditor = { token: issued.token, id: issued.id, machineId: machine.id };
    const gone = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: machine.id, name: 'gone' });
    await h.services.tokens.revoke(gone.id, h.ctx.tenantId);
    revoked = gone.token;
    revokedId = gone.id;
    const old = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: machine.id, name: 'old', ttlMs: 1_000 });
    expired = { token: old.token, id: old.id };
  });
  after(() => h.close());

  test('a missing, junk or revoked token is one denied event per request, anonymous, without the token', async () => {
    const before = (await eventsOf(h, 'auth.refused')).length;
    const junk = 'kh_' + 'j'.repeat(40);
    const cases = [{}, { authorization: `Bearer ${junk}` }, { authorization: `Bearer ${revoked}` }];
    for (const headers of cases) {
      const res = await h.app.inject({ method: 'GET', url: '/v1/secrets/PROBED_NAME/values/production', headers: { ...headers, 'user-agent': 'probe/1.0' } });
      assert.deepEqual([res.statusCode, res.json().error.code], [401, 'UNAUTHENTICATED']);
    }
    const events = (await eventsOf(h, 'auth.refused')).slice(before);
    assert.equal(events.length, cases.length, 'exactly one event per refused request');
    for (const e of events) {
      assert.deepEqual([e.actor_type, e.actor_id, e.outcome, e.reason], ['anonymous', 'unknown', 'denied', 'UNAUTHENTICATED']);
      assert.equal(e.resource_name, 'GET /v1/secrets/:name/values/:env', 'the route, not the URL with the probed name');
      assert.deepEqual([e.context.sourceIp, e.context.userAgent, typeof e.context.requestId], ['127.0.0.1', 'probe/1.0', 'string']);
    }
    assert.deepEqual(events.map((e) => e.context.credential), ['missing', 'invalid', 'invalid']);
    // A token that exists but is revoked is named by its id, in its tenant: a revoked token in use is a leak to chase.
    assert.deepEqual(events.map((e) => [e.tenant_id, e.context.credentialId ?? null, e.context.credentialState ?? null]), [
      [null, null, null], [null, null, null], [h.ctx.tenantId, revokedId, 'revoked'],
    ]);
    const stored = JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute());
    for (const token of [junk, revoked, revoked.slice(-16), junk.slice(-16)]) assert.equal(stored.includes(token), false, 'no token, nor a piece of one');
  });

  test('an expired token is refused like any other, and its event says which token and that it expired', async () => {
    h.clock.advance(2_000);
    const res = await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: { authorization: `Bearer ${expired.token}` } });
    assert.deepEqual([res.statusCode, res.json().error.code], [401, 'UNAUTHENTICATED']);
    const e = (await eventsOf(h, 'auth.refused')).at(-1)!;
    assert.deepEqual([e.tenant_id, e.context.credentialId, e.context.credentialState], [h.ctx.tenantId, expired.id, 'expired']);
  });

  test('a logged-out session is named as revoked; a session whose user was disabled, as disabled', async () => {
    const ann = await userContext(h, h.ctx.tenantId, 'refused-ann');
    const out = await h.services.sessions.issue({ id: ann.id, tenantId: h.ctx.tenantId }, null);
    await h.services.sessions.revoke(out.id, ann.id);
    const kept = await h.services.sessions.issue({ id: ann.id, tenantId: h.ctx.tenantId }, null);
    await h.storage.db.updateTable('users').set({ disabled_at: h.clock.now() }).where('id', '=', ann.id).execute();
    for (const token of [out.token, kept.token]) {
      const res = await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: { authorization: `Bearer ${token}` } });
      assert.equal(res.statusCode, 401);
    }
    const events = (await eventsOf(h, 'auth.refused')).slice(-2);
    assert.deepEqual(events.map((e) => [e.context.credentialId, e.context.credentialState]), [[out.id, 'revoked'], [kept.id, 'disabled']]);
  });

  test('a tenant token on a root-only route is a denied authz.root event naming the caller and the route', async () => {
    const res = await h.app.inject({ method: 'POST', url: '/v1/tenants', headers: { authorization: `Bearer ${auditor.token}` }, payload: { name: 'evil' } });
    assert.deepEqual([res.statusCode, res.json().error.code], [403, 'FORBIDDEN']);
    const e = (await eventsOf(h, 'authz.root')).at(-1)!;
    assert.deepEqual([e.tenant_id, e.actor_type, e.actor_id, e.outcome, e.reason, e.resource_name, e.context.credentialId],
      [h.ctx.tenantId, 'machine', auditor.machineId, 'denied', 'FORBIDDEN', 'POST /v1/tenants', auditor.id]);
  });

  test("a tenant token naming another tenant is a denied auth.tenant event in its own tenant, without the name it tried", async () => {
    await h.services.tenants.create('victim');
    const before = (await eventsOf(h, 'auth.tenant')).length;
    for (const tenant of ['victim', 'no-such-tenant']) {
      const res = await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: { authorization: `Bearer ${auditor.token}`, 'x-keyhold-tenant': tenant } });
      assert.deepEqual([res.statusCode, res.json().error.code], [404, 'TENANT_NOT_FOUND'], tenant);
    }
    const events = (await eventsOf(h, 'auth.tenant')).slice(before);
    assert.deepEqual(events.map((e) => [e.tenant_id, e.actor_type, e.actor_id, e.outcome, e.reason, e.resource_name, e.context.credentialId]), [
      [h.ctx.tenantId, 'machine', auditor.machineId, 'denied', 'TENANT_NOT_FOUND', 'GET /v1/secrets', auditor.id],
      [h.ctx.tenantId, 'machine', auditor.machineId, 'denied', 'TENANT_NOT_FOUND', 'GET /v1/secrets', auditor.id],
    ], 'the same event whether the tenant exists or not');
    assert.ok(!JSON.stringify(events).includes('victim'), 'the name tried would tell its auditors nothing they need, and confirms nothing');
  });

  test('an auditor asking for every tenant, or for the checkpoint export, is refused and recorded', async () => {
    const headers = { authorization: `Bearer ${auditor.token}` };
    const before = (await eventsOf(h, 'authz.root')).length;
    assert.equal((await h.app.inject({ method: 'GET', url: '/v1/audit/events', headers })).statusCode, 200, 'its own tenant is fine');
    for (const url of ['/v1/audit/events?allTenants=true', '/v1/audit/checkpoints']) {
      const res = await h.app.inject({ method: 'GET', url, headers });
      assert.deepEqual([res.statusCode, res.json().error.code], [403, 'FORBIDDEN'], url);
    }
    const events = (await eventsOf(h, 'authz.root')).slice(before);
    assert.deepEqual(events.map((e) => [e.resource_type, e.resource_name, e.outcome, e.reason, e.actor_id]),
      [['audit', 'allTenants', 'denied', 'FORBIDDEN', auditor.machineId], ['audit', 'checkpoints', 'denied', 'FORBIDDEN', auditor.machineId]]);
  });
});
