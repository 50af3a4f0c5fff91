import { after, before, mock, test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, type JsonWebKey } from 'node:crypto';
import { SignJWT, type JWTPayload } from 'jose';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';
import { startOidcProvider, type OidcProvider } from '../../../../test/fixtures/oidc-provider.ts';
import { JWT_BEARER_GRANT } from './types.ts';

interface Reply { status: number; body: any }

const AUDIENCE = 'https://keyhold.example';
const SUBJECT = 'repo:acme/app:ref:refs/heads/main';
const BOUND = { repository: 'acme/app', ref: 'refs/heads/main', run_attempt: 1 };
/** RFC 7523 §3.1: an assertion that is not valid is invalid_grant. */
const REFUSED = { status: 401, error: 'invalid_grant', code: 'INVALID_CREDENTIALS', message: 'invalid client credentials' };
const b64 = (v: unknown) => Buffer.from(JSON.stringify(v)).toString('base64url');

describeEachDialect('machine identities federated with an OIDC provider', (dialect) => {
  let h: Harness;
  let idp: OidcProvider;
  let clientId: string;
  let signWithWeakKey: ReturnType<OidcProvider['publishWeakRsaKey']>;

  async function call(method: string, url: string, opts: { token?: string; body?: unknown } = {}): Promise<Reply> {
    const token = opts.token ?? h.rootToken;
    const res = await h.app.inject({
      method: method as 'GET', url, headers: token === '' ? {} : { authorization: `Bearer ${token}` },
      ...(opts.body !== undefined ? { payload: opts.body as object } : {}),
    });
    return { status: res.statusCode, body: res.body === '' ? null : res.json() };
  }

  /** Each refusal case gets a fresh rate-limit window, so the table can be as long as it needs to be. */
  async function exchange(assertion: string, id = clientId): Promise<Reply> {
    h.clock.advance(60_001);
    return call('POST', '/v1/auth/token', { token: '', body: { grant_type: JWT_BEARER_GRANT, client_id: id, assertion } });
  }

  /** A JWT that satisfies every binding, signed now (by Keyhold's clock), with `overrides` applied. */
  const valid = (overrides: JWTPayload = {}) => idp.sign({ aud: AUDIENCE, sub: SUBJECT, ...BOUND, ...overrides }, h.clock.now());
  const refusal = (r: Reply) => ({ status: r.status, error: r.body?.error, code: r.body?.code, message: r.body?.error_description });

  async function createOidcMachine(name: string, oidc: Record<string, unknown>): Promise<{ id: string; clientId: string }> {
    const res = await call('POST', '/v1/machines', { body: { name, kind: 'oidc', oidc } });
    assert.equal(res.status, 201, JSON.stringify(res.body));
    assert.equal(res.body.clientSecret, undefined, 'an OIDC identity has no secret');
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: res.body.id, role: 'viewer' });
    return res.body;
  }

  before(async () => {
    h = await createHarness(dialect);
    idp = await startOidcProvider();
    signWithWeakKey = idp.publishWeakRsaKey();
    ({ clientId } = await createOidcMachine('github-deploy', { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, subject: SUBJECT, claims: BOUND }));
  });
  after(async () => {
    await idp.close();
    await h.close();
  });

  test('a JWT from the trusted provider that carries every bound claim exchanges for a working token', async () => {
    const res = await exchange(await valid());
    assert.equal(res.status, 200, JSON.stringify(res.body));
    assert.equal(res.body.expires_in, 900);
    assert.equal((await call('GET', '/v1/secrets', { token: res.body.access_token })).status, 200);
    const described = await call('GET', '/v1/machines');
    const m = described.body.items.find((x: { clientId: string }) => x.clientId === clientId);
    assert.deepEqual(m.oidc, { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, subject: SUBJECT, claims: BOUND, boundClaimsType: 'string', maxAgeSeconds: 3600 });
  });

  test('an issue time just inside the allowed clock skew is accepted', async () => {
    const at = h.clock.now() + 60_001;
    const jwt = await idp.sign({ aud: AUDIENCE, sub: SUBJECT, ...BOUND, iat: Math.floor(at / 1000) + 25 }, at);
    assert.equal((await exchange(jwt)).status, 200);
  });

  test('an expiry just inside the allowed clock skew is accepted', async () => {
    const at = h.clock.now() + 60_001;
    const jwt = await idp.sign({ aud: AUDIENCE, sub: SUBJECT, ...BOUND, exp: Math.floor(at / 1000) - 10 }, at);
    assert.equal((await exchange(jwt)).status, 200);
  });

  test('every way a JWT can be wrong gets the same 401', async () => {
    const now = () => Math.floor((h.clock.now() + 60_001) / 1000);
    const key = idp.current;
    const pem = createPublicKey({ key: key.publicJwk as JsonWebKey, format: 'jwk' }).export({ type: 'spki', format: 'pem' }) as string;
    const claims = { iss: idp.issuer, aud: AUDIENCE, sub: SUBJECT, ...BOUND };
    const forger = await idp.unpublishedKey();
    // [case, why the server's log says it was refused (so no case passes for the wrong reason), the JWT]
    const cases: Array<[string, string, () => Promise<string>]> = [
      ['wrong audience', 'aud: check_failed', () => valid({ aud: 'https://other.example' })],
      ['no audience', 'aud: missing', () => valid({ aud: undefined })],
      ['wrong issuer', 'iss: check_failed', () => valid({ iss: 'https://evil.example' })],
      ['wrong subject', 'bound subject mismatch', () => valid({ sub: 'repo:acme/app:ref:refs/heads/feature' })],
      ['missing bound claim', 'bound claim mismatch (repository)', () => valid({ repository: undefined })],
      ['wrong bound claim', 'bound claim mismatch (repository)', () => valid({ repository: 'acme/other' })],
      ['bound claim of the wrong JSON type', 'bound claim mismatch (run_attempt)', () => valid({ run_attempt: '1' })],
      ['expired', 'ERR_JWT_EXPIRED', () => idp.sign({ ...claims, exp: now() - 120 }, h.clock.now())],
      ['not yet valid', 'nbf: check_failed', () => idp.sign({ ...claims, nbf: now() + 120 }, h.clock.now())],
      ['issued in the future', 'iat: check_failed', () => idp.sign({ ...claims, iat: now() + 120, exp: now() + 600 }, h.clock.now())],
      ['no expiry', 'exp: missing', () => new SignJWT({ ...claims, iat: now() }).setProtectedHeader({ alg: 'RS256', kid: key.kid }).sign(key.privateKey)],
      ['alg none', 'ERR_JOSE_ALG_NOT_ALLOWED', async () => `${b64({ alg: 'none', typ: 'JWT' })}.${b64({ ...claims, iat: now(), exp: now() + 600 })}.`],
      ['HS256 keyed with the public key (algorithm confusion)', 'ERR_JOSE_ALG_NOT_ALLOWED', () =>
        new SignJWT({ ...claims, iat: now(), exp: now() + 600 }).setProtectedHeader({ alg: 'HS256', kid: key.kid }).sign(new TextEncoder().encode(pem))],
      ['signed by an unknown key', 'ERR_JWKS_NO_MATCHING_KEY', () => idp.sign(claims, h.clock.now(), forger)],
      ['signed by an unknown key under a published kid', 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED', () => idp.sign(claims, h.clock.now(), forger, { kid: key.kid })],
      ['signature bytes altered', 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED', async () => {
        const jwt = await valid();
        return jwt.slice(0, -4) + (jwt.endsWith('AAAA') ? 'BBBB' : 'AAAA');
      }],
      ['payload swapped under a valid signature', 'ERR_JWS_SIGNATURE_VERIFICATION_FAILED', async () => {
        const [head, , sig] = (await valid()).split('.');
        return `${head}.${b64({ ...claims, sub: 'repo:acme/app:ref:refs/heads/evil', iat: now(), exp: now() + 600 })}.${sig}`;
      }],
      ['not a JWT', 'ERR_JWS_INVALID', async () => 'not-a-jwt'],
      // RFC 7515 §4.1.11: a critical extension the verifier does not understand makes the JWS invalid.
      ['a critical header extension Keyhold does not know', 'ERR_JOSE_NOT_SUPPORTED', () =>
        new SignJWT({ ...claims, iat: now(), exp: now() + 600 }).setProtectedHeader({ alg: 'RS256', kid: key.kid, crit: ['x-bound-to'], 'x-bound-to': 'a' } as never)
          .sign(key.privateKey, { crit: { 'x-bound-to': true } })],
      ['ES256 naming the RS256 key (alg does not match the key)', 'ERR_JWKS_NO_MATCHING_KEY', async () =>
        idp.sign(claims, h.clock.now(), await idp.unpublishedKey('ES256'), { kid: key.kid })],
      // Keys come from the identity's JWKS URL only: a key or key URL the token names itself is ignored.
      ['the forger\'s key embedded in a jwk header', 'ERR_JWKS_NO_MATCHING_KEY', () =>
        new SignJWT({ ...claims, iat: now(), exp: now() + 600 }).setProtectedHeader({ alg: 'RS256', kid: forger.kid, jwk: forger.publicJwk }).sign(forger.privateKey)],
      ['the forger\'s key set named in jku and x5u headers', 'ERR_JWKS_NO_MATCHING_KEY', () =>
        new SignJWT({ ...claims, iat: now(), exp: now() + 600 })
          .setProtectedHeader({ alg: 'RS256', kid: forger.kid, jku: 'http://127.0.0.1:9/forged-jwks.json', x5u: 'http://127.0.0.1:9/forged.pem' }).sign(forger.privateKey)],
      // RFC 7518 §3.3: RSA keys of 2048 bits or more. Refused as the key it is, not blamed on the fetch.
      ['signed by a published RSA key under 2048 bits', 'key refused (RS256 requires key modulusLength to be 2048 bits or larger)', async () =>
        signWithWeakKey(claims, h.clock.now() + 60_001)],
      ['an audience list without the bound audience', 'aud: check_failed', () => valid({ aud: ['https://other.example', 'https://keyhold.example/'] })],
    ];
    for (const [what, reason, make] of cases) {
      const res = await exchange(await make());
      assert.deepEqual(refusal(res), REFUSED, what);
      assert.ok(h.logs.lines.at(-1)?.includes(reason), `${what}: refused for the wrong reason: ${h.logs.lines.at(-1)}`);
    }
    assert.equal((await exchange(await valid())).status, 200, 'and the binding still works');
  });

  test('the Keyhold token of a JWT that expires before the identity\'s token TTL ends when Keyhold would stop taking the JWT', async () => {
    const at = h.clock.now() + 60_001; // when exchange() verifies
    const jwt = await idp.sign({ aud: AUDIENCE, sub: SUBJECT, ...BOUND, exp: Math.floor(at / 1000) + 120 }, at);
    const res = await exchange(jwt);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    // The JWT's exp plus the 30 s of skew it was accepted with, not the identity's 900 s.
    assert.ok(res.body.expires_in >= 149 && res.body.expires_in <= 150, `expires_in ${res.body.expires_in}`);
    const token = res.body.access_token as string;
    h.clock.advance(148_000);
    assert.equal((await call('GET', '/v1/secrets', { token })).status, 200);
    h.clock.advance(2_001);
    assert.equal((await call('GET', '/v1/secrets', { token })).status, 401, 'the token outlived the JWT it was exchanged for');
  });

  test('the Keyhold token of a JWT with a distant exp ends when the identity\'s max age would stop Keyhold taking the JWT', async () => {
    const at = h.clock.now() + 60_001; // when exchange() verifies
    const iat = Math.floor(at / 1000) - 3_300; // 300 s of the hour's max age left
    const jwt = await idp.sign({ aud: AUDIENCE, sub: SUBJECT, ...BOUND, iat, exp: iat + 100 * 365 * 86_400 }, at);
    const res = await exchange(jwt);
    assert.equal(res.status, 200, JSON.stringify(res.body));
    // iat + max age + the 30 s of skew it was accepted with, not the identity's 900 s: by then the JWT itself is refused.
    assert.ok(res.body.expires_in >= 329 && res.body.expires_in <= 330, `expires_in ${res.body.expires_in}`);
    const token = res.body.access_token as string;
    h.clock.advance(328_000);
    assert.equal((await call('GET', '/v1/secrets', { token })).status, 200);
    assert.deepEqual(refusal(await exchange(jwt)), REFUSED, 'the JWT itself is no longer taken');
    assert.equal((await call('GET', '/v1/secrets', { token })).status, 401, 'the token outlived the JWT it was exchanged for');
  });

  test('the audit event of an exchange names the workload the JWT speaks for (its sub and jti), never the JWT', async () => {
    const lastGrant = async () => {
      const row = await h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', 'auth.token').where('outcome', '=', 'allowed').orderBy('seq', 'desc').executeTakeFirstOrThrow();
      return JSON.parse(row.context) as Record<string, string>;
    };
    assert.equal((await exchange(await valid({ jti: 'run-42-attempt-1' }))).status, 200);
    const context = await lastGrant();
    assert.deepEqual([context.jwtSubject, context.jwtId], [SUBJECT, 'run-42-attempt-1']);
    // Bound by claims alone, any subject of the repository may exchange: the event must say which. Long values are cut.
    const byRepo = await createOidcMachine('any-branch', { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, claims: { repository: 'acme/app' } });
    const longSub = `repo:acme/app:ref:refs/heads/${'b'.repeat(600)}`;
    assert.equal((await exchange(await valid({ sub: longSub, jti: undefined }), byRepo.clientId)).status, 200);
    const cut = await lastGrant();
    assert.equal(cut.jwtSubject, `${longSub.slice(0, 256)}…`);
    assert.equal(cut.jwtId, undefined);
  });

  test('a JWT is accepted for an hour after its iat unless the identity says otherwise, whatever its exp, and never without an iat', async () => {
    const secs = (ms: number) => Math.floor(ms / 1000);
    // exchange() moves the clock a minute on before it verifies, so these are signed a minute before "now".
    const farFuture = await idp.sign({ aud: AUDIENCE, sub: SUBJECT, ...BOUND, exp: secs(h.clock.now()) + 100 * 365 * 86_400 }, h.clock.now());
    assert.equal((await exchange(farFuture)).status, 200, 'a fresh JWT is good, even with an absurd exp');
    h.clock.advance(3_600_000);
    assert.deepEqual(refusal(await exchange(farFuture)), REFUSED, 'but not an hour after it was issued');
    assert.ok(h.logs.lines.at(-1)?.includes('iat: check_failed'), h.logs.lines.at(-1));

    const old = await idp.sign({ aud: AUDIENCE, sub: SUBJECT, ...BOUND, iat: secs(h.clock.now()) - 3_600, exp: secs(h.clock.now()) + 600 }, h.clock.now());
    assert.deepEqual(refusal(await exchange(old)), REFUSED, 'issued over an hour ago');
    const noIat = await idp.sign({ aud: AUDIENCE, sub: SUBJECT, ...BOUND, iat: undefined, exp: secs(h.clock.now()) + 600 }, h.clock.now());
    assert.deepEqual(refusal(await exchange(noIat)), REFUSED, 'no iat: its age cannot be known');
    assert.ok(h.logs.lines.at(-1)?.includes('iat: missing'), h.logs.lines.at(-1));

    // An IdP whose tokens live longer (EKS projects 24-hour service-account tokens) is trusted for as long as the admin says.
    const longLived = await createOidcMachine('eks-pod', { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, subject: SUBJECT, maxAgeSeconds: 86_400 });
    assert.equal((await call('GET', `/v1/machines/${longLived.id}`)).body.oidc.maxAgeSeconds, 86_400);
    assert.equal((await exchange(old, longLived.clientId)).status, 200);
    for (const maxAgeSeconds of [59, 86_401, 90.5]) {
      const res = await call('POST', '/v1/machines', { body: { name: 'bad-age', kind: 'oidc', oidc: { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, subject: SUBJECT, maxAgeSeconds } } });
      assert.deepEqual([res.status, res.body.error.code], [400, 'VALIDATION_FAILED'], String(maxAgeSeconds));
    }
  });

  test('an audience list naming the bound audience among others is accepted (RFC 7519 §4.1.3; Vault\'s bound_audiences does the same)', async () => {
    const res = await exchange(await valid({ aud: ['https://other.example', AUDIENCE] }));
    assert.equal(res.status, 200, JSON.stringify(res.body));
  });

  /** Exchanges each [label, claims, expected status] against one identity; a refusal must be for `reason`. */
  async function expectExchanges(id: string, reason: string, cases: Array<[string, JWTPayload, 200 | 401]>): Promise<void> {
    for (const [what, overrides, status] of cases) {
      const res = await exchange(await valid(overrides), id);
      assert.equal(res.status, status, `${what}: ${JSON.stringify(res.body)}`);
      if (status === 401) assert.ok(h.logs.lines.at(-1)?.includes(reason), `${what}: refused for the wrong reason: ${h.logs.lines.at(-1)}`);
    }
  }

  test('a glob-bound sub admits the branches it names and not a repository whose name merely starts the same', async () => {
    const glob = await createOidcMachine('gh-any-branch', {
      issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, boundClaimsType: 'glob', claims: { sub: 'repo:acme/app:ref:refs/heads/*' },
    });
    assert.equal((await call('GET', `/v1/machines/${glob.id}`)).body.oidc.boundClaimsType, 'glob');
    await expectExchanges(glob.clientId, 'bound claim mismatch (sub)', [
      ['main', { sub: 'repo:acme/app:ref:refs/heads/main' }, 200],
      ['a nested branch', { sub: 'repo:acme/app:ref:refs/heads/feature/x' }, 200],
      ['a sibling repository with the same prefix', { sub: 'repo:acme/app-evil:ref:refs/heads/main' }, 401],
      ['a repository of another owner', { sub: 'repo:acme-evil/app:ref:refs/heads/main' }, 401],
      ['a tag', { sub: 'repo:acme/app:ref:refs/tags/v1' }, 401],
      ['a pull request', { sub: 'repo:acme/app:pull_request' }, 401],
      ['another case', { sub: 'REPO:acme/app:ref:refs/heads/main' }, 401],
      ['the pattern put in front of something else', { sub: 'x:repo:acme/app:ref:refs/heads/main' }, 401],
      ['a sub that is a list of strings, one of which matches', { sub: ['repo:acme/app:ref:refs/heads/main'] as unknown as string }, 200],
    ]);
    // The same value under the default type is a literal, star and all.
    const literal = await createOidcMachine('gh-literal-star', { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, claims: { sub: 'repo:acme/app:ref:refs/heads/*' } });
    await expectExchanges(literal.clientId, 'bound claim mismatch (sub)', [
      ['main against a literal star', { sub: 'repo:acme/app:ref:refs/heads/main' }, 401],
      ['the star itself', { sub: 'repo:acme/app:ref:refs/heads/*' }, 200],
    ]);
  });

  test('a bound list admits any one of its values, and a list claim in the token matches by any element', async () => {
    const listed = await createOidcMachine('gh-release-branches', {
      issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, claims: { repository: 'acme/app', ref: ['refs/heads/main', 'refs/heads/release'], groups: 'deployers' },
    });
    await expectExchanges(listed.clientId, 'bound claim mismatch', [
      ['main', { groups: ['readers', 'deployers'] }, 200],
      ['release', { ref: 'refs/heads/release', groups: 'deployers' }, 200],
      ['a ref not listed', { ref: 'refs/heads/feature', groups: 'deployers' }, 401],
      ['a ref claim that lists an allowed value among others', { ref: ['refs/heads/feature', 'refs/heads/main'], groups: 'deployers' }, 200],
      ['groups without deployers', { groups: ['readers'] }, 401],
      ['an empty groups list', { groups: [] }, 401],
      ['groups missing', { groups: undefined }, 401],
    ]);
  });

  test('claims of another JSON type than bound match nothing, under either claims type', async () => {
    const stringly = await createOidcMachine('typed-string', {
      issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, claims: { repository: ['acme/app'], run_attempt: [1, 2] },
    });
    await expectExchanges(stringly.clientId, 'bound claim mismatch', [
      ['as bound', {}, 200],
      ['a number as a string', { run_attempt: '1' }, 401],
      ['a boolean', { run_attempt: true }, 401],
      ['an object holding the value', { repository: { name: 'acme/app' } }, 401],
      ['a list nested in a list', { repository: [['acme/app']] }, 401],
      ['null', { repository: null }, 401],
    ]);
    const globbed = await createOidcMachine('typed-glob', {
      issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, boundClaimsType: 'glob', claims: { repository: 'acme/*', run_attempt: '1*' },
    });
    await expectExchanges(globbed.clientId, 'bound claim mismatch', [
      ['a number against a pattern', {}, 401],
      ['a string that matches', { run_attempt: '12' }, 200],
      ['an object whose string form would match', { repository: { toString: 'acme/app' }, run_attempt: '1' }, 401],
    ]);
  });

  test('an identity saved before claim lists and globs compares each bound value whole, as it always did', async () => {
    const legacy = await createOidcMachine('legacy-claims', {
      issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, claims: { repository: 'acme/app', ref: ['refs/heads/main', 'refs/heads/release'] },
    });
    const legacyGlob = await createOidcMachine('legacy-glob-looking', {
      issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, claims: { ref: 'refs/heads/*' },
    });
    // What rows saved before migration 028 hold.
    await h.storage.db.updateTable('machine_identities').set({ oidc_bound_claims_type: null }).where('id', 'in', [legacy.id, legacyGlob.id]).execute();
    assert.equal((await call('GET', `/v1/machines/${legacy.id}`)).body.oidc.boundClaimsType, 'exact');
    await expectExchanges(legacy.clientId, 'bound claim mismatch (ref)', [
      ['the same list in the same order', { ref: ['refs/heads/main', 'refs/heads/release'] }, 200],
      ['one of the listed values', { ref: 'refs/heads/main' }, 401],
      ['the list in another order', { ref: ['refs/heads/release', 'refs/heads/main'] }, 401],
    ]);
    await expectExchanges(legacyGlob.clientId, 'bound claim mismatch (ref)', [
      ['a branch against a stored star', { ref: 'refs/heads/main' }, 401],
      ['a list holding the bound value', { ref: ['refs/heads/*'] }, 401],
    ]);
  });

  test('a bound claim named like an Object.prototype member must be in the token itself; a body binding __proto__ is refused and names it', async () => {
    const odd = await createOidcMachine('odd-claim-names', {
      issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, claims: { constructor: 'acme', toString: 'deploy' },
    });
    assert.deepEqual((await call('GET', `/v1/machines/${odd.id}`)).body.oidc.claims, { constructor: 'acme', toString: 'deploy' });
    await expectExchanges(odd.clientId, 'bound claim mismatch', [
      ['both claims', { constructor: 'acme', toString: 'deploy' }, 200],
      ['constructor missing (the inherited one is not a claim)', { toString: 'deploy' }, 401],
      ['another constructor', { constructor: 'other', toString: 'deploy' }, 401],
    ]);
    const before = (await call('GET', '/v1/machines')).body.items.length;
    const base = JSON.stringify({ issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE });
    for (const claims of ['{"__proto__":"acme"}', '{"repository":"acme/app","__proto__":{"admin":true}}']) {
      const res = await h.app.inject({
        method: 'POST', url: '/v1/machines', headers: { authorization: `Bearer ${h.rootToken}`, 'content-type': 'application/json' },
        payload: `{"name":"proto-claim","kind":"oidc","oidc":${base.slice(0, -1)},"claims":${claims}}}`,
      });
      assert.equal(res.statusCode, 400, claims);
      assert.match(res.json().error.message, /__proto__/, `the refusal says why: ${res.body}`);
    }
    assert.equal((await call('GET', '/v1/machines')).body.items.length, before, 'nothing was created');
  });

  test('bound claims that could match nothing or everything, or an unknown claims type, are refused when saved', async () => {
    const base = { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE };
    const bad: Array<[string, Record<string, unknown>]> = [
      ['an empty list', { claims: { ref: [] } }],
      ['too long a list', { claims: { ref: Array.from({ length: 65 }, (_, i) => `r${i}`) } }],
      ['an object value', { claims: { ref: { eq: 'main' } } }],
      ['a null value', { claims: { ref: null } }],
      ['a nested list', { claims: { ref: [['main']] } }],
      ['a glob of stars alone', { boundClaimsType: 'glob', claims: { sub: '**' } }],
      ['a number under glob', { boundClaimsType: 'glob', claims: { run_attempt: 1 } }],
      ['a regex claims type', { boundClaimsType: 'regex', claims: { sub: '.*' } }],
      ['the legacy type, which can be read but not chosen', { boundClaimsType: 'exact', claims: { sub: SUBJECT } }],
    ];
    for (const [what, extra] of bad) {
      const res = await call('POST', '/v1/machines', { body: { name: 'bad-claims', kind: 'oidc', oidc: { ...base, ...extra } } });
      assert.deepEqual([res.status, res.body.error?.code], [400, 'VALIDATION_FAILED'], what);
    }
  });

  test('a valid JWT is refused for a client-secret identity, an unknown client and a disabled identity', async () => {
    const secretKind = await call('POST', '/v1/machines', { body: { name: 'secret-kind', kind: 'client_secret' } });
    const disabled = await createOidcMachine('oidc-disabled', { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, subject: SUBJECT });
    assert.equal((await call('POST', `/v1/machines/${disabled.id}/disable`)).status, 200);
    for (const id of [secretKind.body.clientId, 'khc_' + 'C'.repeat(22), disabled.clientId]) {
      assert.deepEqual(refusal(await exchange(await valid(), id)), REFUSED, id);
    }
  });

  test('an unreachable JWKS is a refusal, not a server error', async () => {
    const down = await createOidcMachine('idp-down', { issuer: idp.issuer, jwksUrl: 'http://127.0.0.1:9/jwks.json', audience: AUDIENCE, subject: SUBJECT });
    assert.deepEqual(refusal(await exchange(await valid(), down.clientId)), REFUSED);
  });

  test('an identity bound by issuer and audience alone is refused when saved, and one stored before that admits no one', async () => {
    const unbound = await call('POST', '/v1/machines', { body: { name: 'any-repo', kind: 'oidc', oidc: { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE } } });
    assert.deepEqual([unbound.status, unbound.body.error.code], [400, 'VALIDATION_FAILED']);
    assert.match(unbound.body.error.message, /oidc\.subject or at least one oidc\.claims/);
    // A row saved by an older version, when a binding could omit both.
    const legacy = await createOidcMachine('legacy-unbound', { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, subject: SUBJECT });
    await h.storage.db.updateTable('machine_identities').set({ oidc_subject: null, oidc_claims: null }).where('id', '=', legacy.id).execute();
    const res = await exchange(await idp.sign({ aud: AUDIENCE, sub: 'repo:someone-else/any:ref:refs/heads/main' }, h.clock.now()), legacy.clientId);
    assert.deepEqual(refusal(res), REFUSED);
    assert.ok(h.logs.lines.at(-1)?.includes('binding names no subject or claim'), h.logs.lines.at(-1));
  });

  test('a JWKS URL on a cloud metadata address is refused when saved, and never fetched if one is stored', async () => {
    for (const jwksUrl of ['https://169.254.169.254/latest/meta-data/jwks', 'https://metadata.google.internal/jwks', 'https://[fe80::1]/jwks']) {
      const res = await call('POST', '/v1/machines', { body: { name: 'imds', kind: 'oidc', oidc: { issuer: idp.issuer, jwksUrl, audience: AUDIENCE, subject: SUBJECT } } });
      assert.deepEqual([res.status, res.body.error.code], [403, 'DESTINATION_FORBIDDEN'], jwksUrl);
    }
    const stored = await createOidcMachine('imds-stored', { issuer: idp.issuer, jwksUrl: idp.jwksUrl, audience: AUDIENCE, subject: SUBJECT });
    await h.storage.db.updateTable('machine_identities').set({ oidc_jwks_url: 'https://169.254.169.254/jwks' }).where('id', '=', stored.id).execute();
    assert.deepEqual(refusal(await exchange(await valid(), stored.clientId)), REFUSED);
    assert.ok(h.logs.lines.at(-1)?.includes('jwks fetch failed (ForbiddenDestinationError)'), h.logs.lines.at(-1));
  });

  test('when the provider rolls its key, a JWT under the new kid is accepted once the keys are refetched', async () => {
    assert.equal((await exchange(await valid())).status, 200);
    const oldJwt = await valid();
    const fetched = idp.fetches;
    await idp.rotate();
    const newJwt = await valid();
    // Within the cooldown after a fetch, unknown kids do not make Keyhold hammer the provider.
    for (let i = 0; i < 5; i++) assert.deepEqual(refusal(await exchange(newJwt)), REFUSED);
    assert.equal(idp.fetches, fetched, 'no refetch inside the cooldown');
    // jose times its cooldown with Date.now(); move only that past it (Keyhold's clock is separate).
    mock.timers.enable({ apis: ['Date'], now: Date.now() + 31_000 });
    try {
      const res = await exchange(newJwt);
      assert.equal(res.status, 200, JSON.stringify(res.body));
      assert.equal(idp.fetches, fetched + 1, 'the key set was fetched again, once');
      assert.deepEqual(refusal(await exchange(oldJwt)), REFUSED, 'the retired key no longer verifies');
    } finally {
      mock.timers.reset();
    }
  });
});
