import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { call, freshIp, login, newUser, type Reply } from '../../../../test/helpers/users.ts';
import { hashToken } from '../../auth/token-service.ts';
import { DEFAULT_ATTEMPT_LIMITS } from './attempts.ts';

const WINDOW_MS = DEFAULT_ATTEMPT_LIMITS.account.windowMs;

function withoutRequestId(reply: Reply) {
  const { requestId, ...rest } = reply.body.error;
  assert.equal(typeof requestId, 'string');
  return { status: reply.status, error: rest };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

describeEachDialect('login', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a good password starts a session whose token is returned once and stored only as a hash', async () => {
    const { id, username } = await newUser(h, 'login');
    const res = await login(h, { username: username.toUpperCase() });
    assert.equal(res.status, 200);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.match(res.body.token, /^khs_[A-Za-z0-9_-]{43}$/);
    assert.deepEqual([res.body.userId, res.body.username, res.body.tenant, res.body.mfaAt], [id, username, 'default', null]);
    assert.equal(Date.parse(res.body.expiresAt), h.clock.now() + 12 * 3600_000);
    const rows = await h.storage.db.selectFrom('sessions').selectAll().where('user_id', '=', id).execute();
    assert.equal(rows.length, 1);
    assert.equal(rows[0]!.token_hash, hashToken(res.body.token));
    assert.ok(!JSON.stringify(rows).includes(res.body.token.slice(4)));
    const me = await call(h, 'GET', '/v1/auth/whoami', { token: res.body.token });
    assert.deepEqual([me.body.type, me.body.id], ['user', id]);
  });

  test('unknown tenant, unknown user, disabled user and wrong password get the same answer', async () => {
    const { username } = await newUser(h, 'enum');
    const gone = await newUser(h, 'enum-gone');
    await call(h, 'POST', `/v1/users/${gone.id}/disable`, { token: h.rootToken });
    const answers = [
      await login(h, { username, password: 'wrong-password-123' }),
      await login(h, { username: 'nobody-at-all' }),
      await login(h, { username, tenant: 'no-such-tenant' }),
      await login(h, { username: gone.username }),
      await login(h, { username, totp: '123456' }), // a user without TOTP: a code in the body is ignored
    ];
    const first = withoutRequestId(answers[0]!);
    assert.deepEqual(first, { status: 401, error: { code: 'INVALID_CREDENTIALS', message: 'the tenant, username, password or one-time code is wrong' } });
    for (const a of answers.slice(1, 4)) assert.deepEqual(withoutRequestId(a), first);
    assert.equal(answers[4]!.status, 200, 'users without TOTP ignore a code');
  });

  test('an unknown user takes as long to refuse as a wrong password', async () => {
    const known = [await newUser(h, 'timing'), await newUser(h, 'timing'), await newUser(h, 'timing')];
    const time = async (body: { username: string; password?: string }) => {
      const t = performance.now();
      const res = await login(h, body);
      assert.equal(res.status, 401);
      return performance.now() - t;
    };
    await time({ username: 'warm-up-unknown' });
    const wrong: number[] = [];
    const unknown: number[] = [];
    for (let i = 0; i < 9; i++) {
      wrong.push(await time({ username: known[i % 3]!.username, password: `wrong-password-${i}` }));
      unknown.push(await time({ username: `ghost-${i}` }));
    }
    const [w, u] = [median(wrong), median(unknown)];
    assert.ok(u > w / 3 && u < w * 3, `medians: wrong password ${w.toFixed(1)} ms, unknown user ${u.toFixed(1)} ms`);
  });

  test('an account is rate limited after five attempts from one address, with Retry-After, even for the right password, until the window passes', async () => {
    const { username } = await newUser(h, 'limited');
    const ip = freshIp();
    for (let i = 0; i < 5; i++) assert.equal((await login(h, { username, password: `wrong-password-${i}` }, ip)).status, 401);
    const refused = await login(h, { username }, ip);
    assert.deepEqual([refused.status, refused.body.error.code], [429, 'RATE_LIMITED']);
    assert.equal(Number(refused.headers['retry-after']), WINDOW_MS / 1000);
    // An unknown account is limited the same way, so the limit says nothing about existence.
    for (let i = 0; i < 5; i++) await login(h, { username: 'ghost-limited' }, ip);
    assert.equal((await login(h, { username: 'ghost-limited' }, ip)).status, 429);
    h.clock.advance(WINDOW_MS);
    assert.equal((await login(h, { username }, ip)).status, 200);
  });

  test('guessing from one address cannot lock the account owner out from another', async () => {
    const { username } = await newUser(h, 'not-locked-out');
    const attacker = freshIp();
    for (let i = 0; i < DEFAULT_ATTEMPT_LIMITS.account.limit; i++) {
      assert.equal((await login(h, { username, password: `guess-${i}` }, attacker)).status, 401, `guess ${i}`);
    }
    assert.equal((await login(h, { username, password: 'guess-more' }, attacker)).status, 429, 'the guesser is stopped');
    assert.equal((await login(h, { username }, freshIp())).status, 200, 'the owner, elsewhere, signs in');
  });

  test('guessing spread over many addresses meets the account total, which a success does not forgive', async () => {
    const { username } = await newUser(h, 'spread-guesses');
    const total = DEFAULT_ATTEMPT_LIMITS.accountTotal.limit;
    let spent = 0;
    for (let a = 0; spent < total - 1; a++) {
      const ip = freshIp();
      for (let i = 0; i < DEFAULT_ATTEMPT_LIMITS.account.limit - 1 && spent < total - 1; i++, spent++) {
        assert.equal((await login(h, { username, password: `guess-${a}-${i}` }, ip)).status, 401);
      }
    }
    assert.equal((await login(h, { username }, freshIp())).status, 200, 'the last attempt of the budget');
    const refused = await login(h, { username }, freshIp());
    assert.deepEqual([refused.status, refused.body.error.code], [429, 'RATE_LIMITED'], 'a success did not reset the total');
    h.clock.advance(DEFAULT_ATTEMPT_LIMITS.accountTotal.windowMs);
    assert.equal((await login(h, { username }, freshIp())).status, 200);
  });

  test('a successful login forgives the account its earlier failures', async () => {
    const { username } = await newUser(h, 'forgiven');
    for (let i = 0; i < 4; i++) await login(h, { username, password: `wrong-password-${i}` });
    assert.equal((await login(h, { username })).status, 200);
    for (let i = 0; i < 4; i++) assert.equal((await login(h, { username, password: `wrong-password-${i}` })).status, 401);
  });

  test('one address is rate limited across accounts, and others are not', async () => {
    const { username } = await newUser(h, 'ip-limited');
    const ip = freshIp();
    for (let i = 0; i < DEFAULT_ATTEMPT_LIMITS.ip.limit; i++) {
      assert.equal((await login(h, { username: `spray-${i}` }, ip)).status, 401, `attempt ${i}`);
    }
    const refused = await login(h, { username }, ip);
    assert.deepEqual([refused.status, refused.body.error.code], [429, 'RATE_LIMITED']);
    assert.ok(Number(refused.headers['retry-after']) > 0);
    assert.equal((await login(h, { username }, freshIp())).status, 200, 'another address is not affected');
    h.clock.advance(DEFAULT_ATTEMPT_LIMITS.ip.windowMs);
    assert.equal((await login(h, { username }, ip)).status, 200);
  });

  test('the addresses of one IPv6 /64 share one per-address budget (a host holds the whole /64)', async () => {
    const { username } = await newUser(h, 'v6-limited');
    // One machine on an ordinary IPv6 link can use any of 2^64 source addresses: counting each apart would be no limit.
    const within = (i: number) => `2001:db8:7:${(i % 2) === 0 ? '0' : '0000'}:${(i + 1).toString(16)}::1`;
    for (let i = 0; i < DEFAULT_ATTEMPT_LIMITS.ip.limit; i++) {
      assert.equal((await login(h, { username: `spray6-${i}` }, within(i))).status, 401, `attempt ${i}`);
    }
    const refused = await login(h, { username }, '2001:db8:7::ffff');
    assert.deepEqual([refused.status, refused.body.error?.code], [429, 'RATE_LIMITED'], 'a new address in the same /64 is refused');
    assert.equal((await login(h, { username }, '2001:db8:7:1::1')).status, 200, 'the next /64 is another network');
    // IPv4 clients of a dual-stack listener arrive as IPv4-mapped addresses: each is its own IPv4 address, not one /64.
    const v4 = freshIp();
    for (let i = 0; i < DEFAULT_ATTEMPT_LIMITS.ip.limit; i++) await login(h, { username: `spray4-${i}` }, `::ffff:${v4}`);
    assert.equal((await login(h, { username }, v4)).status, 429, 'a mapped address counts as the IPv4 address it carries');
    assert.equal((await login(h, { username }, `::ffff:${freshIp()}`)).status, 200, 'another mapped IPv4 address is not affected');
    h.clock.advance(DEFAULT_ATTEMPT_LIMITS.ip.windowMs);
  });

  test('login bodies are strict and bounded', async () => {
    const cases: Array<[unknown, string]> = [
      [{ tenant: 'default', username: 'a', password: 'x', admin: true }, 'UNKNOWN_FIELD'],
      [{ tenant: 'default', username: 'a' }, 'VALIDATION_FAILED'],
      [{ tenant: 'default', username: 'a', password: 'x'.repeat(1025) }, 'VALIDATION_FAILED'],
      [{ tenant: 'default', username: 'a'.repeat(65), password: 'x' }, 'VALIDATION_FAILED'],
    ];
    for (const [body, code] of cases) {
      const res = await call(h, 'POST', '/v1/auth/login', { body });
      assert.deepEqual([res.status, res.body.error.code], [400, code], JSON.stringify(body).slice(0, 80));
    }
  });
});
