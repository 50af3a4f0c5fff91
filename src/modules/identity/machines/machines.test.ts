import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { newUser } from '../../../../test/helpers/users.ts';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { unrevokedTokens } from '../../../../test/helpers/identities.ts';
import { DEFAULT_EXCHANGE_LIMITS } from './token-exchange.ts';
import { CLIENT_CREDENTIALS_GRANT } from './types.ts';

interface Machine {
  id: string; name: string; kind: string; clientId: string; clientSecret?: string; tokenTtlSeconds: number;
  ownerUserId: string | null; disabledAt: string | null;
}
interface Reply { status: number; body: any; headers: Record<string, unknown> }

/** The one answer every failed exchange gets, whatever the cause. */
/** The token endpoint answers in RFC 6749 §5.2's shape, with the Keyhold code beside the OAuth one. */
const REFUSED = { status: 401, error: 'invalid_client', code: 'INVALID_CREDENTIALS', message: 'invalid client credentials' };

describeEachDialect('machine identities with client secrets', (dialect) => {
  let h: Harness;
  let ipCounter = 0;
  /** A fresh source address per exchange, so the per-address limit only bites where a test means it to. */
  const nextIp = () => `10.0.${Math.floor(++ipCounter / 250)}.${(ipCounter % 250) + 1}`;

  async function call(method: string, url: string, opts: { token?: string; body?: unknown; ip?: string; tenant?: string } = {}): Promise<Reply> {
    const headers: Record<string, string> = {};
    const token = opts.token === undefined ? h.rootToken : opts.token;
    if (token !== '') headers.authorization = `Bearer ${token}`;
    if (opts.tenant) headers['x-keyhold-tenant'] = opts.tenant;
    const res = await h.app.inject({
      method: method as 'GET', url, headers, ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
      remoteAddress: opts.ip ?? '127.0.0.1',
    });
    return { status: res.statusCode, body: res.body === '' ? null : res.json(), headers: res.headers };
  }

  const exchange = (clientId: string, clientSecret: string, ip = nextIp()) =>
    call('POST', '/v1/auth/token', { token: '', ip, body: { grant_type: CLIENT_CREDENTIALS_GRANT, client_id: clientId, client_secret: clientSecret } });

  const refusal = (r: Reply) => ({ status: r.status, error: r.body?.error, code: r.body?.code, message: r.body?.error_description });

  async function createMachine(name: string, extra: Record<string, unknown> = {}): Promise<Machine> {
    const res = await call('POST', '/v1/machines', { body: { name, kind: 'client_secret', ...extra } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    // The built-in policies let a machine do nothing without a grant; viewer is enough to list secrets.
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: res.body.id, role: 'viewer' });
    return res.body as Machine;
  }

  async function tokenFor(m: Machine, secret = m.clientSecret!): Promise<string> {
    const res = await exchange(m.clientId, secret);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    return res.body.access_token as string;
  }

  const listSecrets = (token: string) => call('GET', '/v1/secrets', { token });

  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  test('a client secret is shown once, stored only as a hash, and exchanges for a token that authenticates', async () => {
    const m = await createMachine('ci-deployer');
    assert.match(m.clientId, /^khc_/);
    assert.match(m.clientSecret!, /^khcs_[A-Za-z0-9_-]{43}$/);
    assert.equal(m.tokenTtlSeconds, 900, 'the default lifetime is 15 minutes');
    const described = await call('GET', `/v1/machines/${m.id}`);
    assert.equal(described.status, 200);
    assert.equal(described.body.clientSecret, undefined);
    assert.equal((await call('GET', '/v1/machines')).body.items.some((x: Machine) => 'clientSecret' in x), false);
    const row = await h.storage.db.selectFrom('machine_identities').selectAll().where('id', '=', m.id).executeTakeFirstOrThrow();
    assert.ok(row.client_secret_hash && !row.client_secret_hash.includes(m.clientSecret!.slice(5)));

    const res = await exchange(m.clientId, m.clientSecret!);
    assert.equal(res.status, 200);
    assert.equal(res.body.token_type, 'Bearer');
    assert.equal(res.body.expires_in, 900);
    assert.match(res.body.access_token, /^kh_/);
    assert.equal(res.headers['cache-control'], 'no-store');
    const listed = await listSecrets(res.body.access_token);
    assert.equal(listed.status, 200, JSON.stringify(listed.body));
    const principal = await h.services.authenticator.authenticate(res.body.access_token);
    assert.deepEqual([principal?.type, principal?.id, principal?.tenantId], ['machine', m.id, h.ctx.tenantId]);
  });

  test('a machine token stops working at the end of its lifetime', async () => {
    const m = await createMachine('short-lived', { tokenTtlSeconds: 120 });
    const token = await tokenFor(m);
    assert.equal((await listSecrets(token)).status, 200);
    h.clock.advance(119_000);
    assert.equal((await listSecrets(token)).status, 200, 'still valid (and now cached) one second before expiry');
    h.clock.advance(1_000);
    const expired = await listSecrets(token);
    assert.equal(expired.status, 401);
    assert.equal(expired.body.error.code, 'UNAUTHENTICATED');
  });

  test('wrong secret, unknown client, disabled identity and a secret for an OIDC identity all get the same 401', async () => {
    const m = await createMachine('refusals');
    const other = await createMachine('refusals-other');
    const disabled = await createMachine('refusals-disabled');
    assert.equal((await call('POST', `/v1/machines/${disabled.id}/disable`)).status, 200);
    const oidc = await call('POST', '/v1/machines', {
      body: { name: 'refusals-oidc', kind: 'oidc', oidc: { issuer: 'https://idp.example', jwksUrl: 'https://idp.example/jwks', audience: 'keyhold', subject: 'svc' } },
    });
    const cases: Array<[string, string, string]> = [
      ['wrong secret', m.clientId, 'khcs_' + 'A'.repeat(43)],
      ['another identity\'s secret', m.clientId, other.clientSecret!],
      ['unknown client', 'khc_' + 'B'.repeat(22), m.clientSecret!],
      ['not a client id at all', m.clientSecret!, m.clientSecret!],
      ['disabled identity, right secret', disabled.clientId, disabled.clientSecret!],
      ['an OIDC identity has no secret', oidc.body.clientId, m.clientSecret!],
      ['empty secret', m.clientId, ''],
    ];
    for (const [what, clientId, secret] of cases) {
      const res = await exchange(clientId, secret);
      assert.deepEqual(refusal(res), REFUSED, what);
    }
    assert.ok(!h.logs.text().includes(m.clientSecret!), 'a secret pasted as a client id is not logged');
  });

  test('rotating the secret: the old one is refused, the new one works, live tokens keep working', async () => {
    const m = await createMachine('rotating');
    const before = await tokenFor(m);
    const rotated = await call('POST', `/v1/machines/${m.id}/rotate-secret`);
    assert.equal(rotated.status, 200);
    assert.match(rotated.body.clientSecret, /^khcs_/);
    assert.notEqual(rotated.body.clientSecret, m.clientSecret);
    assert.equal(rotated.body.clientId, m.clientId, 'the client id stays');
    assert.deepEqual(refusal(await exchange(m.clientId, m.clientSecret!)), REFUSED);
    assert.equal((await listSecrets(await tokenFor(m, rotated.body.clientSecret))).status, 200);
    assert.equal((await listSecrets(before)).status, 200, 'a token issued before the rotation lives on');
  });

  test('disabling an identity kills its live tokens at once, cached ones included, and it cannot get new ones', async () => {
    const m = await createMachine('to-disable');
    const [t1, t2] = [await tokenFor(m), await tokenFor(m)];
    for (const t of [t1, t2]) assert.equal((await listSecrets(t)).status, 200, 'used once, so the lookup is cached');
    const disabled = await call('POST', `/v1/machines/${m.id}/disable`);
    assert.equal(disabled.status, 200);
    assert.ok(disabled.body.disabledAt);
    for (const t of [t1, t2]) assert.equal((await listSecrets(t)).status, 401);
    assert.deepEqual(refusal(await exchange(m.clientId, m.clientSecret!)), REFUSED);
    assert.equal((await call('GET', `/v1/machines/${m.id}/tokens`)).body.items.length, 0);
    const again = await call('POST', `/v1/machines/${m.id}/disable`);
    assert.deepEqual([again.status, again.body.disabledAt], [200, disabled.body.disabledAt], 'disabling twice changes nothing');
    assert.equal((await call('POST', `/v1/machines/${m.id}/rotate-secret`)).body.error.code, 'MACHINE_DISABLED');
  });

  test('exchanges racing a disable never leave a live token behind', async () => {
    for (let round = 0; round < 3; round++) {
      const m = await createMachine(`race-${round}`);
      const replies = await Promise.all([
        ...Array.from({ length: 5 }, () => exchange(m.clientId, m.clientSecret!)),
        call('POST', `/v1/machines/${m.id}/disable`),
        ...Array.from({ length: 4 }, () => exchange(m.clientId, m.clientSecret!)),
      ]);
      assert.ok(replies.every((r) => r.status < 500), JSON.stringify(replies.map((r) => r.status)));
      for (const r of replies) if (r.body?.access_token) assert.equal((await listSecrets(r.body.access_token)).status, 401, `round ${round}`);
      assert.equal((await unrevokedTokens(h, m.id)).length, 0, `round ${round}: every token the identity got is revoked`);
    }
  });

  test('an admin revokes one token by id; the identity\'s other tokens live on', async () => {
    const m = await createMachine('revoke-one');
    const [keep, drop] = [await tokenFor(m), await tokenFor(m)];
    for (const t of [keep, drop]) assert.equal((await listSecrets(t)).status, 200);
    const live = await call('GET', `/v1/machines/${m.id}/tokens`);
    assert.equal(live.body.items.length, 2);
    const dropId = (await h.services.authenticator.authenticate(drop))!.credentialId;
    assert.ok(live.body.items.some((t: { id: string }) => t.id === dropId));
    assert.equal((await call('DELETE', `/v1/auth/tokens/${dropId}`)).status, 204);
    assert.equal((await listSecrets(drop)).status, 401, 'revoked at once, even though its lookup was cached');
    assert.equal((await listSecrets(keep)).status, 200);
    assert.equal((await call('DELETE', `/v1/auth/tokens/${dropId}`)).body.error.code, 'TOKEN_NOT_FOUND');
    assert.equal((await call('DELETE', '/v1/auth/tokens/no-such-token')).body.error.code, 'TOKEN_NOT_FOUND');
  });

  test('another tenant\'s machine identities and tokens do not exist for a tenant', async () => {
    const m = await createMachine('isolated');
    const token = await tokenFor(m);
    const tokenId = (await h.services.authenticator.authenticate(token))!.credentialId;
    await h.services.tenants.create('acme');
    for (const [method, url] of [
      ['GET', `/v1/machines/${m.id}`], ['POST', `/v1/machines/${m.id}/disable`], ['POST', `/v1/machines/${m.id}/rotate-secret`],
      ['GET', `/v1/machines/${m.id}/tokens`],
    ] as const) {
      const res = await call(method, url, { tenant: 'acme' });
      assert.deepEqual([res.status, res.body.error.code], [404, 'MACHINE_NOT_FOUND'], `${method} ${url}`);
    }
    assert.equal((await call('GET', '/v1/machines', { tenant: 'acme' })).body.items.length, 0);
    assert.equal((await call('DELETE', `/v1/auth/tokens/${tokenId}`, { tenant: 'acme' })).body.error.code, 'TOKEN_NOT_FOUND');
    assert.equal((await call('GET', '/v1/secrets', { token, tenant: 'acme' })).body.error.code, 'TENANT_NOT_FOUND');
    assert.equal((await listSecrets(token)).status, 200, 'the token was not revoked by the other tenant\'s attempt');
  });

  test('a machine with only a viewer grant cannot administer machine identities or revoke tokens', async () => {
    const m = await createMachine('not-an-admin');
    const token = await tokenFor(m);
    for (const [method, url, body] of [
      ['POST', '/v1/machines', { name: 'sneaky', kind: 'client_secret' }], ['GET', '/v1/machines', undefined],
      ['POST', `/v1/machines/${m.id}/rotate-secret`, undefined], ['DELETE', '/v1/auth/tokens/anything', undefined],
    ] as const) {
      const res = await call(method, url, { token, body });
      assert.deepEqual([res.status, res.body.error.code], [403, 'FORBIDDEN'], `${method} ${url}`);
    }
  });

  test('bad input is refused with a clear code and nothing is created', async () => {
    const cases: Array<[unknown, number, string]> = [
      [{ name: 'x', kind: 'client_secret', extra: 1 }, 400, 'UNKNOWN_FIELD'],
      [{ name: 'x', kind: 'password' }, 400, 'VALIDATION_FAILED'],
      [{ name: 'has space', kind: 'client_secret' }, 400, 'INVALID_NAME'],
      [{ name: 'x', kind: 'client_secret', tokenTtlSeconds: 10 }, 400, 'VALIDATION_FAILED'],
      [{ name: 'x', kind: 'client_secret', oidc: { issuer: 'i', jwksUrl: 'https://a/b', audience: 'a' } }, 400, 'VALIDATION_FAILED'],
      [{ name: 'x', kind: 'oidc' }, 400, 'VALIDATION_FAILED'],
      [{ name: 'x', kind: 'oidc', oidc: { issuer: 'i', jwksUrl: 'http://idp.example/jwks', audience: 'a' } }, 400, 'VALIDATION_FAILED'],
      [{ name: 'x', kind: 'oidc', oidc: { issuer: 'i', jwksUrl: 'http://127.evil.example/jwks', audience: 'a' } }, 400, 'VALIDATION_FAILED'],
      [{ name: 'x', kind: 'oidc', oidc: { issuer: 'i', jwksUrl: 'https://u:p@idp.example/jwks', audience: 'a' } }, 400, 'VALIDATION_FAILED'],
      [{ name: 'x', kind: 'client_secret', ownerUserId: 'no-such-user' }, 404, 'USER_NOT_FOUND'],
    ];
    for (const [body, status, code] of cases) {
      const res = await call('POST', '/v1/machines', { body });
      assert.deepEqual([res.status, res.body.error.code], [status, code], JSON.stringify(body));
    }
    assert.equal((await call('GET', '/v1/machines')).body.items.some((m: Machine) => m.name === 'x'), false);
    // A disabled person answers for nothing: notices would reach no one, and they approve nothing.
    const gone = await newUser(h, 'gone');
    await h.services.users.disable(h.ctx, gone.id);
    const orphaned = await call('POST', '/v1/machines', { body: { name: 'x', kind: 'client_secret', ownerUserId: gone.id } });
    assert.deepEqual([orphaned.status, orphaned.body.error.code], [404, 'USER_NOT_FOUND']);
    await createMachine('dup');
    assert.equal((await call('POST', '/v1/machines', { body: { name: 'dup', kind: 'client_secret' } })).body.error.code, 'MACHINE_EXISTS');
    assert.equal((await call('GET', '/v1/machines/no-such-id')).body.error.code, 'MACHINE_NOT_FOUND');

    const bad: Array<[unknown, string, string]> = [
      [{ grant_type: 'client_credentials', client_id: 'khc_x' }, 'VALIDATION_FAILED', 'invalid_request'],
      [{ client_id: 'khc_x', client_secret: 's' }, 'VALIDATION_FAILED', 'invalid_request'],
      [{ grant_type: 'password', client_id: 'khc_x', client_secret: 's' }, 'VALIDATION_FAILED', 'unsupported_grant_type'],
      [{ grant_type: 'client_credentials', client_id: 'khc_x', client_secret: 's', assertion: 'a' }, 'VALIDATION_FAILED', 'invalid_request'],
      [{ grant_type: 'client_credentials', client_id: 'khc_x', client_secret: 's', scope: 'all' }, 'UNKNOWN_FIELD', 'invalid_request'],
    ];
    for (const [body, code, oauth] of bad) {
      const res = await call('POST', '/v1/auth/token', { token: '', body, ip: nextIp() });
      assert.deepEqual([res.status, res.body.code, res.body.error], [400, code, oauth], JSON.stringify(body));
      assert.match(res.body.request_id, /^[0-9a-f-]{36}$/);
    }
  });

  test('the token endpoint is rate limited per client id and per address, with Retry-After', async () => {
    const m = await createMachine('hammered');
    const guesser = nextIp();
    for (let i = 0; i < 10; i++) assert.equal((await exchange(m.clientId, 'khcs_wrong', guesser)).status, 401);
    const limited = await exchange(m.clientId, m.clientSecret!, guesser);
    assert.deepEqual([limited.status, limited.body.code, limited.body.error], [429, 'RATE_LIMITED', 'temporarily_unavailable'], 'even the right secret waits');
    assert.ok(Number(limited.headers['retry-after']) >= 1 && Number(limited.headers['retry-after']) <= 60);
    assert.equal((await exchange(m.clientId, m.clientSecret!)).status, 200, 'a guesser who knows the client id cannot stop the machine elsewhere');
    h.clock.advance(60_001);
    assert.equal((await exchange(m.clientId, m.clientSecret!, guesser)).status, 200);

    // Spread over addresses, the client id's total budget still holds (successes count too).
    for (let i = 0; i < DEFAULT_EXCHANGE_LIMITS.perClientTotal; i++) await exchange(m.clientId, 'khcs_wrong');
    assert.equal((await exchange(m.clientId, m.clientSecret!)).status, 429, 'the total across addresses');
    h.clock.advance(60_001);
    assert.equal((await exchange(m.clientId, m.clientSecret!)).status, 200);

    const ip = '192.0.2.7';
    for (let i = 0; i < 100; i++) await exchange(`khc_probe${i}`, 'khcs_x', ip);
    const byIp = await exchange(m.clientId, m.clientSecret!, ip);
    assert.equal(byIp.status, 429);
    assert.ok(byIp.headers['retry-after']);
    assert.equal((await exchange(m.clientId, m.clientSecret!)).status, 200, 'other addresses are unaffected');
    h.clock.advance(60_001);
  });

  test('the token endpoint counts the addresses of one IPv6 /64 as one address', async () => {
    const m = await createMachine('hammered-v6');
    for (let i = 0; i < 100; i++) await exchange(`khc_probe6-${i}`, 'khcs_x', `2001:db8:42::${(i + 1).toString(16)}`);
    const byNetwork = await exchange(m.clientId, m.clientSecret!, '2001:db8:42:0:ffff:ffff:ffff:fffe');
    assert.deepEqual([byNetwork.status, byNetwork.body.code], [429, 'RATE_LIMITED'], 'another address of the same /64 waits too');
    assert.equal((await exchange(m.clientId, m.clientSecret!, '2001:db8:42:1::1')).status, 200, 'the next /64 is another network');
    h.clock.advance(60_001);
  });

  test('a sealed server issues no tokens', async () => {
    const m = await createMachine('sealed-out');
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    try {
      const res = await exchange(m.clientId, m.clientSecret!);
      assert.deepEqual([res.status, res.body.code, res.body.error], [503, 'SEALED', 'temporarily_unavailable']);
    } finally {
      for (const share of h.shares.slice(0, 2)) await h.services.system.unseal(share);
    }
    assert.equal((await exchange(m.clientId, m.clientSecret!)).status, 200);
  });
});
