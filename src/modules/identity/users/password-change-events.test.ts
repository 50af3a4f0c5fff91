import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import type { KyselyPlugin, OperationNode } from 'kysely';
import { call, newUser, PASSWORD, sessionFor } from '../../../../test/helpers/users.ts';

/** Password changes (SPEC §7: every deny is an event): each refusal the user caused is one denied event, never a password. */
describeEachDialect('password change events', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  const change = (token: string, current: string, next: string) => call(h, 'POST', '/v1/auth/password', { token, body: { current, new: next } });
  const events = (userId: string) => h.storage.db.selectFrom('audit_events').selectAll()
    .where('action', '=', 'auth.password-change').where('actor_id', '=', userId).orderBy('seq').execute();
  const hashOf = async (userId: string) =>
    (await h.storage.db.selectFrom('users').select('password_hash').where('id', '=', userId).executeTakeFirstOrThrow()).password_hash;

  /** No column of any event holds one of the passwords typed. */
  function assertNoPassword(rows: unknown[], typed: string[]): void {
    const text = JSON.stringify(rows);
    for (const p of typed) assert.ok(!text.includes(p), 'a password reached the audit log');
  }

  test('a change refused for a wrong current password is one denied event with reason INVALID_CREDENTIALS', async () => {
    const { id, username } = await newUser(h, 'pw-wrong');
    const token = await sessionFor(h, username);
    const before = await hashOf(id);
    const res = await change(token, 'not-the-password-1', 'brand-new-passphrase-42');
    assert.deepEqual([res.status, res.body.error.code], [401, 'INVALID_CREDENTIALS']);
    assert.equal(await hashOf(id), before, 'nothing changed');

    const rows = await events(id);
    assert.deepEqual(rows.map((e) => [e.outcome, e.reason]), [['denied', 'INVALID_CREDENTIALS']]);
    const [e] = rows;
    assert.deepEqual([e!.tenant_id, e!.actor_type, e!.resource_type, e!.resource_id, e!.resource_name],
      [h.ctx.tenantId, 'user', 'user', id, username]);
    assert.equal(JSON.parse(e!.context).requestId, res.headers['x-request-id']);
    assertNoPassword(rows, ['not-the-password-1', 'brand-new-passphrase-42', PASSWORD]);
  });

  test('guesses past the attempt budget are denied events with reason RATE_LIMITED, one per refusal', async () => {
    const { id, username } = await newUser(h, 'pw-guesser');
    const token = await sessionFor(h, username);
    const guesses = Array.from({ length: 6 }, (_, i) => `guess-number-${i}-xyz`);
    const codes: string[] = [];
    for (const guess of guesses) codes.push((await change(token, guess, 'brand-new-passphrase-42')).body.error.code);
    assert.deepEqual(codes, [...Array(5).fill('INVALID_CREDENTIALS'), 'RATE_LIMITED']);
    // Past the budget even the right password is refused, and that refusal is an event too.
    const right = await change(token, PASSWORD, 'brand-new-passphrase-42');
    assert.equal(right.body.error.code, 'RATE_LIMITED');

    const rows = await events(id);
    assert.deepEqual(rows.map((e) => [e.outcome, e.reason]),
      [...Array(5).fill(['denied', 'INVALID_CREDENTIALS']), ['denied', 'RATE_LIMITED'], ['denied', 'RATE_LIMITED']]);
    assertNoPassword(rows, [...guesses, 'brand-new-passphrase-42', PASSWORD]);
  });

  test('an accepted change is one allowed event; a weak new password is input validation and records nothing', async () => {
    const { id, username } = await newUser(h, 'pw-ok');
    const token = await sessionFor(h, username);
    const weak = await change(token, PASSWORD, 'password1234');
    assert.equal(weak.body.error.code, 'WEAK_PASSWORD');
    assert.equal((await events(id)).length, 0);
    assert.equal((await change(token, PASSWORD, 'brand-new-passphrase-42')).status, 200);
    const rows = await events(id);
    assert.deepEqual(rows.map((e) => [e.outcome, e.reason]), [['allowed', null]]);
    assertNoPassword(rows, ['password1234', 'brand-new-passphrase-42', PASSWORD]);
  });
});

/**
 * Two changes from one session, each past its password check before either writes: a barrier holds
 * each read of the password hash until both have read it (over HTTP, without it, one request may
 * start after the other committed and lose at the check instead, which is another test).
 */
describeEachDialect('password changes racing', (dialect) => {
  const barrier = hashReadBarrier(2);
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect, { plugins: [barrier] });
  });
  after(() => h.close());

  test('of two changes racing from one session, the loser is refused by the guarded write: one denied event and one allowed event', async () => {
    const { id, username } = await newUser(h, 'pw-race');
    const token = await sessionFor(h, username);
    const change = (next: string) => call(h, 'POST', '/v1/auth/password', { token, body: { current: PASSWORD, new: next } });
    barrier.arm();
    const [a, b] = await Promise.all([change('first-racer-passphrase-1'), change('second-racer-passphrase-2')]);
    assert.equal(barrier.met(), true, 'both read the old hash before either wrote');
    const replies = [a, b].sort((x, y) => x.status - y.status);
    assert.equal(replies[0]!.status, 200, 'one change wins');
    assert.deepEqual([replies[1]!.status, replies[1]!.body.error.code], [401, 'INVALID_CREDENTIALS']);
    assert.match(replies[1]!.body.error.message, /changed meanwhile/, 'the loser was refused by the guarded write, not the password check');

    const rows = await h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', 'auth.password-change').where('actor_id', '=', id).execute();
    assert.deepEqual(rows.map((e) => [e.outcome, e.reason]).sort(), [['allowed', null], ['denied', 'INVALID_CREDENTIALS']]);
    const text = JSON.stringify(rows);
    for (const p of ['first-racer-passphrase-1', 'second-racer-passphrase-2', PASSWORD]) assert.ok(!text.includes(p), 'a password reached the audit log');
  });
});

/** Once armed, holds each SELECT of `users.password_hash` after it returns until `n` of them have (or 5 s pass). */
function hashReadBarrier(n: number): KyselyPlugin & { arm(): void; met(): boolean } {
  const watched = new WeakSet<object>();
  let armed = false;
  let arrived = 0;
  let open!: () => void;
  let gate = Promise.resolve();
  const readsHash = (node: OperationNode): boolean => node.kind === 'SelectQueryNode' && JSON.stringify(node).includes('"password_hash"');
  return {
    arm() {
      armed = true;
      arrived = 0;
      gate = new Promise<void>((resolve) => (open = resolve));
    },
    met: () => arrived >= n,
    transformQuery({ node, queryId }) {
      if (armed && readsHash(node)) watched.add(queryId);
      return node;
    },
    async transformResult({ result, queryId }) {
      if (watched.has(queryId)) {
        if (++arrived >= n) {
          armed = false;
          open();
        }
        await Promise.race([gate, new Promise((resolve) => setTimeout(resolve, 5_000).unref())]);
      }
      return result;
    },
  };
}
