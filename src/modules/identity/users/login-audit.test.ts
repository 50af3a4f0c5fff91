import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { login, newUser } from '../../../../test/helpers/users.ts';

/** A login's session exists only together with its event (fail closed): no one is signed in unaudited. */
describeEachDialect('a login whose event cannot be written', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('is refused, and the session it started is revoked', async () => {
    const { id, username } = await newUser(h, 'unaudited');
    const audit = h.services.audit;
    const record = audit.record;
    audit.record = async (events) => {
      if (events.some((e) => e.action === 'auth.login' && e.outcome === 'allowed')) throw new Error('audit sink down');
      return record.call(audit, events);
    };
    let res;
    try {
      res = await login(h, { username });
    } finally {
      audit.record = record;
    }
    assert.ok(res.status >= 500, `refused (${res.status})`);
    assert.equal(res.body.token, undefined);
    const sessions = await h.storage.db.selectFrom('sessions').select(['revoked_at']).where('user_id', '=', id).execute();
    assert.equal(sessions.length, 1, 'the session was started before the event failed');
    assert.notEqual(sessions[0]!.revoked_at, null, 'and ended when it did');
  });
});
