import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { sql } from 'kysely';

describeEachDialect('audit of sign-in and token exchange', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  const events = (action: string) => h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', action).orderBy('seq').execute();

  test('a failed login is a denied event that keeps the attempted username only as a keyed hash', async () => {
    const typed = 'correct-horse-typed-into-username';
    const res = await h.app.inject({ method: 'POST', url: '/v1/auth/login', payload: { tenant: 'default', username: typed, password: 'wrong-password-12' } });
    assert.equal(res.statusCode, 401);
    const [e] = await events('auth.login');
    assert.ok(e);
    assert.deepEqual([e.outcome, e.reason, e.actor_type], ['denied', 'INVALID_CREDENTIALS', 'anonymous']);
    assert.match(e.actor_id, /^hmac-sha256:[0-9a-f]{32}$/);
    assert.equal(JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute()).includes(typed), false);
    // The same attempt hashes the same way, so repeated guessing is visible without the text.
    await h.app.inject({ method: 'POST', url: '/v1/auth/login', payload: { tenant: 'default', username: typed, password: 'wrong-password-12' } });
    const both = await events('auth.login');
    assert.equal(both[1]!.actor_id, both[0]!.actor_id);
  });

  test('token exchanges are events: refused ones without the presented id or secret, issued ones with the token id', async () => {
    const root = { authorization: `Bearer ${h.rootToken}` };
    const bogus = 'khcs_pasted-secret-where-the-client-id-goes';
    const refused = await h.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { grant_type: 'client_credentials', client_id: bogus, client_secret: 'x' } });
    assert.equal(refused.statusCode, 401);
    const machine = (await h.app.inject({ method: 'POST', url: '/v1/machines', headers: root, payload: { name: 'runner', kind: 'client_secret' } })).json();
    const ok = await h.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { grant_type: 'client_credentials', client_id: machine.clientId, client_secret: machine.clientSecret } });
    assert.equal(ok.statusCode, 200);
    const all = await events('auth.token');
    assert.deepEqual(all.map((e) => [e.outcome, e.actor_type]), [['denied', 'anonymous'], ['allowed', 'machine']]);
    assert.equal(all[1]!.actor_id, machine.id);
    assert.ok(JSON.parse(all[1]!.context).tokenId);
    const text = JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute());
    for (const secret of [bogus, machine.clientSecret, ok.json().access_token]) assert.equal(text.includes(secret), false);
  });

  test('rotating a client secret and revoking a token commit with their events', async () => {
    const root = { authorization: `Bearer ${h.rootToken}` };
    const machine = (await h.app.inject({ method: 'POST', url: '/v1/machines', headers: root, payload: { name: 'rotating', kind: 'client_secret' } })).json();
    const token = (await h.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { grant_type: 'client_credentials', client_id: machine.clientId, client_secret: machine.clientSecret } })).json();
    const rotated = await h.app.inject({ method: 'POST', url: `/v1/machines/${machine.id}/rotate-secret`, headers: root });
    assert.equal(rotated.statusCode, 200);
    const tokenId = (await events('auth.token')).at(-1)!.context;
    const revoke = await h.app.inject({ method: 'DELETE', url: `/v1/auth/tokens/${JSON.parse(tokenId).tokenId}`, headers: root });
    assert.equal(revoke.statusCode, 204);
    assert.equal((await events('machine.rotate-secret')).length, 1);
    assert.equal((await events('auth.token-revoke')).length, 1);
    const after = await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: { authorization: `Bearer ${token.access_token}` } });
    assert.equal(after.statusCode, 401, 'the revoked token is refused at once');
    assert.equal(JSON.stringify(await h.storage.db.selectFrom('audit_events').selectAll().execute()).includes(rotated.json().clientSecret), false);
  });

  test('creating a tenant or an environment and root revoking a token are events, committed with the change', async () => {
    const root = { authorization: `Bearer ${h.rootToken}`, 'user-agent': 'ops-console/1' };
    const tenant = await h.app.inject({ method: 'POST', url: '/v1/tenants', headers: root, payload: { name: 'audited-born' } });
    assert.equal(tenant.statusCode, 201);
    const born = (await events('tenant.create')).at(-1); // after the default tenant's, which the server itself created
    assert.deepEqual([born!.tenant_id, born!.actor_type, born!.resource_type, born!.resource_id, born!.resource_name, born!.outcome],
      [tenant.json().id, 'root', 'tenant', tenant.json().id, 'audited-born', 'allowed'], 'the event belongs to the new tenant');
    assert.deepEqual(JSON.parse(born!.context), { requestId: tenant.headers['x-request-id'], sourceIp: '127.0.0.1', userAgent: 'ops-console/1', credentialId: JSON.parse(born!.context).credentialId });
    const first = (await events('tenant.create'))[0]!;
    assert.deepEqual([first.actor_type, first.resource_name], ['system', 'default'], 'init records the default tenant as the server\'s own act');
    const tenantEvents = (await events('tenant.create')).length;
    assert.equal((await h.app.inject({ method: 'POST', url: '/v1/tenants', headers: root, payload: { name: 'audited-born' } })).json().error.code, 'TENANT_EXISTS');
    assert.equal((await events('tenant.create')).length, tenantEvents, 'a refused creation records no creation');

    const env = await h.app.inject({ method: 'POST', url: '/v1/environments', headers: { ...root, 'x-keyhold-tenant': 'audited-born' }, payload: { name: 'qa' } });
    assert.equal(env.statusCode, 201);
    const made = (await events('environment.create')).at(-1);
    assert.deepEqual([made!.tenant_id, made!.resource_id, made!.resource_name, made!.environment], [tenant.json().id, env.json().id, 'qa', 'qa']);

    const machine = (await h.app.inject({ method: 'POST', url: '/v1/machines', headers: root, payload: { name: 'root-revoked', kind: 'client_secret' } })).json();
    const token = (await h.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { grant_type: 'client_credentials', client_id: machine.clientId, client_secret: machine.clientSecret } })).json();
    const tokenId = JSON.parse((await events('auth.token')).at(-1)!.context).tokenId as string;
    const revokesBefore = (await events('auth.token-revoke')).length;
    assert.equal((await h.app.inject({ method: 'DELETE', url: `/v1/tokens/${tokenId}`, headers: root })).statusCode, 204);
    const revoked = (await events('auth.token-revoke')).at(-1)!;
    assert.equal((await events('auth.token-revoke')).length, revokesBefore + 1);
    assert.deepEqual([revoked.tenant_id, revoked.actor_type, revoked.resource_id], [h.ctx.tenantId, 'root', tokenId], "in the token's tenant, where its auditors look");
    assert.equal((await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: { authorization: `Bearer ${token.access_token}` } })).statusCode, 401);
    assert.equal((await h.app.inject({ method: 'DELETE', url: `/v1/tokens/${tokenId}`, headers: root })).json().error.code, 'TOKEN_NOT_FOUND');
    assert.equal((await events('auth.token-revoke')).length, revokesBefore + 1, 'revoking a dead token records nothing');
  });

  test('with the audit log unwritable, no tenant, environment or revocation happens', async () => {
    const root = { authorization: `Bearer ${h.rootToken}` };
    const machine = (await h.app.inject({ method: 'POST', url: '/v1/machines', headers: root, payload: { name: 'kept-alive', kind: 'client_secret' } })).json();
    const token = (await h.app.inject({ method: 'POST', url: '/v1/auth/token', payload: { grant_type: 'client_credentials', client_id: machine.clientId, client_secret: machine.clientSecret } })).json();
    const tokenId = JSON.parse((await events('auth.token')).at(-1)!.context).tokenId as string;
    await sql`alter table audit_events rename to audit_events_gone`.execute(h.storage.db);
    try {
      const codes = [
        await h.app.inject({ method: 'POST', url: '/v1/tenants', headers: root, payload: { name: 'never-born' } }),
        await h.app.inject({ method: 'POST', url: '/v1/environments', headers: root, payload: { name: 'never-made' } }),
        await h.app.inject({ method: 'DELETE', url: `/v1/tokens/${tokenId}`, headers: root }),
      ].map((r) => [r.statusCode, r.json().error.code]);
      assert.deepEqual(codes, Array(3).fill([503, 'AUDIT_UNAVAILABLE']));
    } finally {
      await sql`alter table audit_events_gone rename to audit_events`.execute(h.storage.db);
    }
    assert.equal(await h.services.tenants.findByName('never-born'), null);
    assert.equal((await h.services.tenants.listEnvironments(h.ctx.tenantId)).some((e) => e.name === 'never-made'), false);
    assert.equal((await h.app.inject({ method: 'GET', url: '/v1/secrets', headers: { authorization: `Bearer ${token.access_token}` } })).statusCode, 200, 'the token still works');
  });
});
