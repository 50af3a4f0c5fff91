import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { call, login, newUser } from '../../../../test/helpers/users.ts';

/** Logout (SPEC §7): a session ends only together with the event that says who ended it. */
describeEachDialect('logout', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  async function signIn(username: string): Promise<{ token: string; sessionId: string }> {
    const res = await login(h, { username });
    assert.equal(res.status, 200);
    return { token: res.body.token, sessionId: res.body.sessionId };
  }
  const whoami = (token: string) => call(h, 'GET', '/v1/auth/whoami', { token });
  const revokedAt = async (sessionId: string) =>
    (await h.storage.db.selectFrom('sessions').select('revoked_at').where('id', '=', sessionId).executeTakeFirstOrThrow()).revoked_at;
  const logouts = (userId: string) =>
    h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', 'auth.logout').where('actor_id', '=', userId).orderBy('seq').execute();

  test('logging out ends this session at once, leaves the user\'s other sessions alone, and records one event naming it', async () => {
    const { id, username } = await newUser(h, 'leaver');
    const mine = await signIn(username);
    const other = await signIn(username);

    const res = await call(h, 'POST', '/v1/auth/logout', { token: mine.token });
    assert.equal(res.status, 204);
    assert.equal((await whoami(mine.token)).status, 401, 'the session is over');
    assert.notEqual(await revokedAt(mine.sessionId), null);
    assert.equal((await whoami(other.token)).status, 200, 'another session of the same user goes on');

    const events = await logouts(id);
    assert.equal(events.length, 1);
    const [e] = events;
    assert.deepEqual([e!.tenant_id, e!.actor_type, e!.resource_type, e!.resource_id, e!.resource_name, e!.outcome],
      [h.ctx.tenantId, 'user', 'user', id, username, 'allowed']);
    assert.equal(JSON.parse(e!.context).credentialId, mine.sessionId, 'the event names the session that ended');
    assert.ok(!JSON.stringify(events).includes(mine.token), 'never the token');
  });

  test('with the audit log unwritable, logout answers AUDIT_UNAVAILABLE and the session goes on working', async () => {
    const { id, username } = await newUser(h, 'stayer');
    const session = await signIn(username);

    await sql`alter table audit_events rename to audit_events_gone`.execute(h.storage.db);
    let res;
    try {
      res = await call(h, 'POST', '/v1/auth/logout', { token: session.token });
    } finally {
      await sql`alter table audit_events_gone rename to audit_events`.execute(h.storage.db);
    }
    assert.deepEqual([res.status, res.body.error.code], [503, 'AUDIT_UNAVAILABLE']);
    assert.equal(await revokedAt(session.sessionId), null, 'the refused logout revoked nothing');
    assert.equal((await whoami(session.token)).status, 200, 'the session still works');
    assert.equal((await logouts(id)).length, 0);

    assert.equal((await call(h, 'POST', '/v1/auth/logout', { token: session.token })).status, 204, 'with the log back, logout works');
    assert.equal((await whoami(session.token)).status, 401);
    assert.equal((await logouts(id)).length, 1, 'one logout happened, and it has its event');
  });
});
