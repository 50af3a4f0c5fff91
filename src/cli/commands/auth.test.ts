import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { runCli } from '../../../test/helpers/cli.ts';
import { codeAt, nextStep } from '../../../test/helpers/users.ts';

/** The login, totp and users commands in-process, against the real HTTP app (fetch is routed to app.inject). */

let h: Harness;
describe('keyhold auth and users', () => {
  before(async () => {
    h = await createHarness('sqlite');
  });
  after(() => h.close());

  async function keyhold(argv: string[], opts: { stdin?: string; token?: string } = {}) {
    let requests = 0;
    const r = await runCli(h.app, argv, {
      token: opts.token ?? null, env: { KEYHOLD_ADDR: 'https://keyhold.test' }, onAnswered: () => requests++,
      ...(opts.stdin !== undefined ? { stdin: opts.stdin } : {}),
    });
    return { ...r, requests };
  }

  const PASSWORD = 'ochre-lantern-summit-4';

  test('a person is created, signs in, enrols TOTP, steps up, and is disabled, all from the CLI', async () => {
    const root = h.rootToken;
    const created = await keyhold(['users', 'create', 'grace'], { stdin: `${PASSWORD}\n`, token: root });
    assert.equal(created.code, 0, created.stderr);
    assert.match(created.stdout, /^Created user grace \(/);

    const signedIn = await keyhold(['login', '--username', 'grace'], { stdin: `${PASSWORD}\n` });
    assert.equal(signedIn.code, 0, signedIn.stderr);
    const token = signedIn.stdout.trim();
    assert.match(token, /^khs_/);
    assert.match(signedIn.stderr, /Signed in as grace in default/);

    const me = await keyhold(['whoami', '--json'], { token });
    assert.deepEqual([JSON.parse(me.stdout).type, JSON.parse(me.stdout).name], ['user', 'grace']);

    const refused = await keyhold(['totp', 'enroll'], { token, stdin: '\n' });
    assert.equal(refused.code, 1, 'a password alone does not enrol a first factor');
    assert.match(refused.stderr, /^error: TOTP_TICKET_INVALID: /);
    const issued = await keyhold(['users', 'totp-ticket', 'grace'], { token: root });
    assert.equal(issued.code, 0, issued.stderr);
    const ticket = issued.stdout.trim();
    assert.match(ticket, /^khe_[A-Za-z0-9_-]{43}$/, 'only the ticket on stdout');
    assert.match(issued.stderr, /Enrolment ticket for grace, shown ONCE, valid until /);
    const enrolled = await keyhold(['totp', 'enroll', '--json'], { token, stdin: `${ticket}\n` });
    assert.equal(enrolled.code, 0, enrolled.stderr);
    const { secret } = JSON.parse(enrolled.stdout) as { secret: string };
    assert.equal((await keyhold(['totp', 'confirm'], { token, stdin: `${codeAt(secret, h.clock.now())}\n` })).code, 0);
    nextStep(h);

    const noCode = await keyhold(['login', '--username', 'grace'], { stdin: `${PASSWORD}\n` });
    assert.equal(noCode.code, 1);
    assert.match(noCode.stderr, /^error: INVALID_CREDENTIALS: /);
    const withCode = await keyhold(['login', '--username', 'grace', '--tenant', 'default', '--json'], { stdin: `${PASSWORD}\n${codeAt(secret, h.clock.now())}\n` });
    assert.equal(withCode.code, 0, withCode.stderr);
    const session = JSON.parse(withCode.stdout) as { token: string; mfaAt: string | null };
    assert.ok(session.mfaAt);

    nextStep(h);
    const code = codeAt(secret, h.clock.now());
    assert.equal((await keyhold(['step-up'], { token: session.token, stdin: code })).code, 0);
    const replay = await keyhold(['step-up'], { token: session.token, stdin: code });
    assert.equal(replay.code, 1);
    assert.match(replay.stderr, /TOTP_INVALID/);

    const listed = await keyhold(['users', 'list', '--json'], { token: root });
    const grace = (JSON.parse(listed.stdout) as { items: Array<{ id: string; username: string; totpEnabled: boolean }> }).items.find((u) => u.username === 'grace')!;
    assert.equal(grace.totpEnabled, true);
    const described = await keyhold(['users', 'describe', grace.id], { token: root });
    assert.equal(described.code, 0, described.stderr);
    assert.match(described.stdout, /Username:\s+grace/);
    assert.match(described.stdout, /TOTP:\s+enabled/);
    assert.match(described.stdout, /Disabled:\s+-/);
    assert.deepEqual(JSON.parse((await keyhold(['users', 'describe', grace.id, '--json'], { token: root })).stdout), grace);
    const unknown = await keyhold(['users', 'describe', 'no-such-user'], { token: root });
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /USER_NOT_FOUND/);
    assert.equal((await keyhold(['users', 'disable', grace.id], { token: root })).code, 0);
    const gone = await keyhold(['whoami'], { token: session.token });
    assert.equal(gone.code, 1);
    assert.match(gone.stderr, /UNAUTHENTICATED/);
  });

  test('password change and logout from the CLI', async () => {
    assert.equal((await keyhold(['users', 'create', 'linus'], { stdin: PASSWORD, token: h.rootToken })).code, 0);
    const token = (await keyhold(['login', '--username', 'linus'], { stdin: PASSWORD })).stdout.trim();
    const other = (await keyhold(['login', '--username', 'linus'], { stdin: PASSWORD })).stdout.trim();
    const changed = await keyhold(['password'], { token, stdin: `${PASSWORD}\nslate-meadow-copper-9\n` });
    assert.equal(changed.code, 0, changed.stderr);
    assert.match(changed.stdout, /1 other session\(s\) ended/);
    assert.equal((await keyhold(['whoami'], { token: other })).code, 1);
    assert.equal((await keyhold(['logout'], { token })).code, 0);
    assert.equal((await keyhold(['whoami'], { token })).code, 1);
  });

  test('an admin issues a ticket by name or id, with a lifetime, and the user enrols with it from a file', async () => {
    const created = await keyhold(['users', 'create', 'hedy', '--json'], { stdin: `${PASSWORD}\n`, token: h.rootToken });
    const { id } = JSON.parse(created.stdout) as { id: string };
    const byId = await keyhold(['users', 'totp-ticket', id, '--ttl', '2h', '--json'], { token: h.rootToken });
    assert.equal(byId.code, 0, byId.stderr);
    const answer = JSON.parse(byId.stdout) as { userId: string; ticket: string; expiresAt: string };
    assert.equal(answer.userId, id);
    assert.equal(answer.expiresAt, new Date(h.clock.now() + 2 * 3600_000).toISOString());
    for (const [argv, code, pattern] of [
      [['users', 'totp-ticket', 'hedy', '--ttl', 'soon'], 2, /--ttl must be like/],
      [['users', 'totp-ticket', 'hedy', '--ttl', '1m'], 1, /VALIDATION_FAILED/],
      [['users', 'totp-ticket', 'nobody-by-that-name'], 1, /USER_NOT_FOUND/],
      [['users', 'totp-ticket'], 2, /USER/],
    ] as const) {
      const r = await keyhold([...argv], { token: h.rootToken });
      assert.equal(r.code, code, argv.join(' '));
      assert.match(r.stderr, pattern, argv.join(' '));
    }

    const token = (await keyhold(['login', '--username', 'hedy'], { stdin: `${PASSWORD}\n` })).stdout.trim();
    const dir = await mkdtemp(join(tmpdir(), 'keyhold-ticket-'));
    try {
      const file = join(dir, 'hedy.ticket');
      await writeFile(file, `${answer.ticket}\n`, { mode: 0o600 });
      const enrolled = await keyhold(['totp', 'enroll', '--ticket-file', file], { token });
      assert.equal(enrolled.code, 0, enrolled.stderr);
      assert.match(enrolled.stdout, /shown ONCE/);
      const again = await keyhold(['totp', 'enroll', '--ticket-file', file], { token });
      assert.equal(again.code, 1, 'the ticket is used up');
      assert.match(again.stderr, /TOTP_TICKET_INVALID/);
      const missing = await keyhold(['totp', 'enroll', '--ticket-file', join(dir, 'none')], { token });
      assert.deepEqual([missing.code, missing.requests], [2, 0]);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('secrets are never taken as arguments, and nothing is sent', async () => {
    const cases: string[][] = [
      ['login', '--username', 'grace', PASSWORD],
      ['users', 'create', 'someone', PASSWORD],
      ['step-up', '123456'],
      ['totp', 'confirm', '123456'],
      ['totp', 'enroll', 'khe_not-an-argument'],
      ['login'],
    ];
    for (const argv of cases) {
      const r = await keyhold(argv, { stdin: '' });
      assert.equal(r.code, 2, argv.join(' '));
      assert.equal(r.requests, 0, argv.join(' '));
    }
    const empty = await keyhold(['login', '--username', 'grace'], { stdin: '' });
    assert.deepEqual([empty.code, empty.requests], [2, 0]);
    assert.match(empty.stderr, /no password given/);
  });
});
