import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';

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
});
