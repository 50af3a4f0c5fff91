import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { runCli } from '../../../test/helpers/cli.ts';

/** The machines and token commands in-process against a real Keyhold app (fetch answered by fastify's inject). */

let h: Harness;
const sent: Array<{ method: string; path: string; body: unknown }> = [];

describe('keyhold machines', () => {
  before(async () => {
    h = await createHarness('sqlite');
  });
  after(() => h.close());

  const run = (argv: string[], opts: { stdin?: string; token?: string } = {}) => runCli(h.app, argv, {
    token: opts.token ?? h.rootToken, ...(opts.stdin !== undefined ? { stdin: opts.stdin } : {}),
    onAnswered: (r) => sent.push({ method: r.method, path: r.path, body: r.body === undefined ? undefined : JSON.parse(r.body) }),
  });

  test('create prints the client secret once; token exchange reads it from stdin and prints a working token', async () => {
    const created = await run(['machines', 'create', 'ci-runner', '--ttl', '300', '--json']);
    assert.equal(created.code, 0, created.stderr);
    const m = JSON.parse(created.stdout) as { id: string; clientId: string; clientSecret: string; tokenTtlSeconds: number };
    assert.equal(m.tokenTtlSeconds, 300);
    const human = await run(['machines', 'create', 'ci-runner-2']);
    assert.match(human.stdout, /Client secret: khcs_\S+\n/);
    assert.match(human.stdout, /shown ONCE/);

    const exchanged = await run(['token', 'exchange', '--client-id', m.clientId], { stdin: `${m.clientSecret}\n`, token: '' });
    assert.equal(exchanged.code, 0, exchanged.stderr);
    assert.match(exchanged.stdout, /^kh_\S+\n$/, 'just the token on stdout, for $(...)');
    assert.match(exchanged.stderr, /valid for 300s/);
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: m.id, role: 'viewer' });
    assert.equal((await run(['secrets', 'list'], { token: exchanged.stdout.trim() })).code, 0);

    const wrong = await run(['token', 'exchange', '--client-id', m.clientId], { stdin: 'khcs_wrong', token: '' });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /INVALID_CREDENTIALS/);
    const asArgument = await run(['token', 'exchange', '--client-id', m.clientId, m.clientSecret]);
    assert.equal(asArgument.code, 2, 'a secret as an argument is refused before anything is sent');
  });

  test('an OIDC identity is created from flags, with string and JSON claims', async () => {
    sent.length = 0;
    const res = await run([
      'machines', 'create', 'gh-deploy', '--oidc-issuer', 'https://token.actions.githubusercontent.com',
      '--jwks-url', 'https://token.actions.githubusercontent.com/.well-known/jwks', '--audience', 'keyhold',
      '--subject', 'repo:acme/app:ref:refs/heads/main', '--claim', 'repository=acme/app', '--claim', 'run_attempt:=1', '--max-age', '86400', '--owner', 'nobody',
    ]);
    assert.equal(res.code, 1, 'the owner must be a user of the tenant');
    assert.match(res.stderr, /USER_NOT_FOUND/);
    assert.deepEqual(sent[0]!.body, {
      name: 'gh-deploy', kind: 'oidc', ownerUserId: 'nobody',
      oidc: {
        issuer: 'https://token.actions.githubusercontent.com', jwksUrl: 'https://token.actions.githubusercontent.com/.well-known/jwks',
        audience: 'keyhold', subject: 'repo:acme/app:ref:refs/heads/main', claims: { repository: 'acme/app', run_attempt: 1 }, maxAgeSeconds: 86_400,
      },
    });
    for (const argv of [
      ['machines', 'create', 'x', '--claim', 'a=b'],
      ['machines', 'create', 'x', '--oidc-issuer', 'https://i'],
      ['machines', 'create', 'x', '--oidc-issuer', 'https://i', '--jwks-url', 'https://i/j', '--audience', 'a', '--claim', 'novalue'],
      ['machines', 'create', 'x', '--oidc-issuer', 'https://i', '--jwks-url', 'https://i/j', '--audience', 'a'],
      ['machines', 'create', 'x', '--ttl', '5'],
      ['machines', 'create', 'x', '--oidc-issuer', 'https://i', '--jwks-url', 'https://i/j', '--audience', 'a', '--subject', 's', '--max-age', '30'],
      ['machines', 'create', 'x', '--max-age', '600'],
    ]) {
      assert.equal((await run(argv)).code, 2, argv.join(' '));
    }
  });

  test('an OIDC identity binds a glob claims type and lists of allowed values from flags; a repeated --claim adds a value', async () => {
    sent.length = 0;
    const oidc = ['--oidc-issuer', 'https://token.actions.githubusercontent.com', '--jwks-url', 'https://token.actions.githubusercontent.com/.well-known/jwks', '--audience', 'keyhold'];
    const res = await run([
      'machines', 'create', 'gh-branches', ...oidc, '--bound-claims-type', 'glob',
      '--claim', 'sub=repo:acme/app:ref:refs/heads/*', '--claim', 'sub=repo:acme/app:ref:refs/tags/v*', '--claim', 'environment:=["prod","staging"]', '--json',
    ]);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual((sent[0]!.body as { oidc: unknown }).oidc, {
      issuer: 'https://token.actions.githubusercontent.com', jwksUrl: 'https://token.actions.githubusercontent.com/.well-known/jwks', audience: 'keyhold',
      boundClaimsType: 'glob', claims: { sub: ['repo:acme/app:ref:refs/heads/*', 'repo:acme/app:ref:refs/tags/v*'], environment: ['prod', 'staging'] },
    });
    const m = JSON.parse(res.stdout) as { id: string };
    assert.match((await run(['machines', 'describe', m.id])).stdout, /Claims type:\s+glob/);
    for (const argv of [
      ['machines', 'create', 'x', ...oidc, '--claim', 'sub=a', '--bound-claims-type', 'regex'],
      ['machines', 'create', 'x', '--bound-claims-type', 'glob'],
    ]) {
      assert.equal((await run(argv)).code, 2, argv.join(' '));
    }
    const starsAlone = await run(['machines', 'create', 'x', ...oidc, '--bound-claims-type', 'glob', '--claim', 'sub=*']);
    assert.equal(starsAlone.code, 1);
    assert.match(starsAlone.stderr, /VALIDATION_FAILED/);
  });

  test('claim names that are Object.prototype members are sent as claims; __proto__ is refused before anything is sent', async () => {
    const oidc = ['--oidc-issuer', 'https://token.actions.githubusercontent.com', '--jwks-url', 'https://token.actions.githubusercontent.com/.well-known/jwks', '--audience', 'keyhold'];
    sent.length = 0;
    const res = await run([
      'machines', 'create', 'gh-odd-claims', ...oidc, '--claim', 'constructor=acme', '--claim', 'toString=x', '--claim', 'hasOwnProperty:=1',
      '--claim', 'valueOf=a', '--claim', 'valueOf=b', '--json',
    ]);
    assert.equal(res.code, 0, res.stderr);
    const claims = { constructor: 'acme', toString: 'x', hasOwnProperty: 1, valueOf: ['a', 'b'] };
    assert.deepEqual(JSON.parse(JSON.stringify((sent[0]!.body as { oidc: { claims: unknown } }).oidc.claims)), claims);
    assert.deepEqual(JSON.parse(JSON.stringify((JSON.parse(res.stdout) as { oidc: { claims: unknown } }).oidc.claims)), claims, 'and stored as sent');

    sent.length = 0;
    for (const claim of ['__proto__=x', '__proto__:={"polluted":true}', '__proto__:=null', '__proto__:=["a"]']) {
      const refused = await run(['machines', 'create', 'x', ...oidc, '--subject', 's', '--claim', claim]);
      assert.equal(refused.code, 2, claim);
      assert.match(refused.stderr, /--claim __proto__: Keyhold refuses a claim named __proto__/, claim);
    }
    assert.deepEqual(sent, [], 'nothing was sent');
    assert.equal(({} as { polluted?: unknown }).polluted, undefined);
  });

  test('list, describe, tokens, revoke, rotate-secret and disable', async () => {
    const m = JSON.parse((await run(['machines', 'create', 'lifecycle', '--json'])).stdout) as { id: string; clientId: string; clientSecret: string };
    const token = (await run(['token', 'exchange', '--client-id', m.clientId], { stdin: m.clientSecret, token: '' })).stdout.trim();
    const tokenId = (await h.services.authenticator.authenticate(token))!.credentialId;
    assert.match((await run(['machines', 'list'])).stdout, /lifecycle\s+\S+\s+client_secret\s+khc_\S+\s+900s\s+active/);
    assert.match((await run(['machines', 'describe', m.id])).stdout, /Client ID:\s+khc_/);
    assert.match((await run(['machines', 'tokens', m.id])).stdout, new RegExp(tokenId));
    assert.equal((await run(['token', 'revoke', tokenId])).code, 0);
    assert.match((await run(['machines', 'tokens', m.id])).stdout, /No live tokens/);
    const rotated = await run(['machines', 'rotate-secret', m.id]);
    assert.match(rotated.stdout, /Client secret: khcs_/);
    assert.doesNotMatch(rotated.stdout, new RegExp(m.clientSecret));
    assert.match((await run(['machines', 'disable', m.id])).stdout, /Disabled machine identity lifecycle/);
    assert.match((await run(['machines', 'list'])).stdout, /lifecycle.*disabled/);
    assert.match((await run(['machines', 'describe', 'no-such-id'])).stderr, /MACHINE_NOT_FOUND/);
  });
});
