import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { call, login, newUser } from '../../../../test/helpers/users.ts';

/**
 * Each check a session lookup makes holds on its own, not only through the write that usually
 * comes with it: disabling a user revokes their sessions, and a session of a disabled user is dead
 * even where that revocation is missing (a row changed by hand, a write that raced).
 */
describeEachDialect('session lookup, check by check', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  const whoami = (token: string) => call(h, 'GET', '/v1/auth/whoami', { token });

  async function signIn(username: string): Promise<{ token: string; sessionId: string }> {
    const res = await login(h, { username });
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return { token: res.body.token, sessionId: res.body.sessionId };
  }

  test('a session of a user disabled without its revocation admits nothing', async () => {
    const { id, username } = await newUser(h, 'quiet-disable');
    const { token } = await signIn(username);
    assert.equal((await whoami(token)).status, 200);
    // Only the user row: the session itself stays unrevoked.
    await h.storage.db.updateTable('users').set({ disabled_at: h.clock.now() }).where('id', '=', id).execute();
    assert.equal((await whoami(token)).status, 401);
  });
});
