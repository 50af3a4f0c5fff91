import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { runCli } from '../../../test/helpers/cli.ts';

/** generate-root and root-tokens in-process against a real Keyhold app: the way back from a lost or leaked root token. */

let h: Harness;
describe('keyhold generate-root', () => {
  before(async () => {
    h = await createHarness('sqlite');
  });
  after(() => h.close());

  const run = (argv: string[], opts: { stdin?: string; token?: string | null } = {}) =>
    runCli(h.app, argv, { token: opts.token === undefined ? h.rootToken : opts.token, ...(opts.stdin !== undefined ? { stdin: opts.stdin } : {}) });

  test('start, two holders give shares with no token, the starter decodes; the new token revokes the old one', async () => {
    const started = await run(['generate-root', 'start', '--json'], { token: null });
    assert.equal(started.code, 0, started.stderr);
    const { nonce, otp } = JSON.parse(started.stdout) as { nonce: string; otp: string };
    const human = await run(['generate-root', 'status'], { token: null });
    assert.match(human.stdout, new RegExp(`Nonce:\\s+${nonce}`));
    assert.match(human.stdout, /Progress:\s+0\/2/);

    const asArgument = await run(['generate-root', 'share', '--nonce', nonce, h.shares[0]!], { token: null });
    assert.equal(asArgument.code, 2, 'a share is never taken as an argument');
    const first = await run(['generate-root', 'share', '--nonce', nonce], { stdin: `${h.shares[0]}\n`, token: null });
    assert.match(first.stdout, /Share accepted: 1\/2/);
    const last = await run(['generate-root', 'share', '--nonce', nonce], { stdin: `${h.shares[1]}\n`, token: null });
    assert.equal(last.code, 0, last.stderr);
    const encoded = /^(khr1\.\S+)$/m.exec(last.stdout)![1]!;

    const wrongKey = await run(['generate-root', 'decode', encoded], { stdin: `${Buffer.alloc(32, 1).toString('base64url')}\n`, token: null });
    assert.equal(wrongKey.code, 2);
    assert.match(wrongKey.stderr, /INVALID_OTP/);
    const decoded = await run(['generate-root', 'decode', encoded], { stdin: `${otp}\n`, token: null });
    assert.equal(decoded.code, 0, decoded.stderr);
    const token = decoded.stdout.trim();
    assert.match(token, /^kh_\S+$/);

    const listed = await run(['root-tokens', 'list', '--json'], { token });
    const items = (JSON.parse(listed.stdout) as { items: Array<{ id: string; current: boolean }> }).items;
    const old = items.find((t) => !t.current)!;
    assert.equal((await run(['root-tokens', 'revoke', old.id], { token })).code, 0);
    assert.match((await run(['root-tokens', 'list'], { token })).stdout, /\(this token\)/);
    assert.equal((await run(['tenants', 'list'])).code, 1, 'the old root token is revoked');
    assert.equal((await run(['tenants', 'list'], { token })).code, 0);
    h.rootToken = token;
    assert.match((await run(['generate-root', 'status'], { token: null })).stdout, /No root token generation in progress/);
  });

  test('cancel ends an attempt; a wrong nonce is refused with its code', async () => {
    const { nonce } = JSON.parse((await run(['generate-root', 'start', '--json'], { token: null })).stdout) as { nonce: string };
    const wrong = await run(['generate-root', 'share', '--nonce', `${nonce}x`], { stdin: h.shares[0]!, token: null });
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /GENERATE_ROOT_NONCE_MISMATCH/);
    assert.equal((await run(['generate-root', 'cancel'], { token: null })).code, 0);
    const after = await run(['generate-root', 'share', '--nonce', nonce], { stdin: h.shares[0]!, token: null });
    assert.match(after.stderr, /GENERATE_ROOT_NOT_STARTED/);
  });
});
