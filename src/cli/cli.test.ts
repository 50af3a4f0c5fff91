import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lstatSync, readFileSync, statSync, symlinkSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync, sign } from 'node:crypto';
import { entries } from './commands/index.ts';
import { chainHash, GENESIS_HASH } from '../modules/audit/chain.ts';
import { checkpointMessage } from '../modules/audit/checkpoint-format.ts';
import { createCli } from './run.ts';

/** The CLI in-process over a fake fetch: what it sends, what it prints, how it exits. */

interface Sent {
  method: string;
  url: URL;
  headers: Record<string, string>;
  body: unknown;
}

type Reply = { status: number; body: unknown };

function harness(reply: (req: Sent) => Reply, opts: { stdin?: string | Buffer; env?: Record<string, string> } = {}) {
  const sent: Sent[] = [];
  let stdout = '';
  let stderr = '';
  const fakeFetch = (async (input: URL, init: RequestInit) => {
    const req: Sent = {
      method: init.method ?? 'GET', url: input, headers: init.headers as Record<string, string>,
      body: init.body === undefined ? undefined : JSON.parse(init.body as string),
    };
    sent.push(req);
    const { status, body } = reply(req);
    return new Response(status === 204 ? null : JSON.stringify(body), { status });
  }) as typeof fetch;
  const cli = createCli({
    entries,
    fetch: fakeFetch,
    stdin: Readable.from(opts.stdin === undefined ? [] : [Buffer.from(opts.stdin)]),
    stdout: { write: (s: string) => (stdout += s) },
    stderr: { write: (s: string) => (stderr += s) },
    env: opts.env ?? {},
  });
  return { sent, run: async (...argv: string[]) => ({ code: await cli.run(argv), stdout, stderr }) };
}

const wrote = { status: 200, body: { name: 'A', environment: 'dev', version: 3, previousVersion: 2 } };
const notFound = { status: 404, body: { error: { code: 'SECRET_NOT_FOUND', message: 'secret "A" does not exist', requestId: 'r1' } } };

test('global options are accepted before, between and after the command words, and flags beat the environment', async () => {
  const h = harness(() => ({ status: 200, body: { value: 'v' } }), { env: { KEYHOLD_ADDR: 'https://env:1', KEYHOLD_TOKEN: 'env-token', KEYHOLD_TENANT: 'acme' } });
  const r = await h.run('--addr', 'https://flag:2/', 'secrets', '--token', 'flag-token', 'get', 'A', '--env', 'dev', '--label', 'previous');
  assert.equal(r.code, 0);
  assert.equal(r.stdout, 'v\n');
  const req = h.sent[0]!;
  assert.equal(req.url.href, 'https://flag:2/v1/secrets/A/values/dev?label=previous');
  assert.equal(req.headers.authorization, 'Bearer flag-token');
  assert.equal(req.headers['x-keyhold-tenant'], 'acme');
  assert.match(r.stderr, /^warning: --token is visible to every user of this machine \(ps\) and kept in shell history; prefer KEYHOLD_TOKEN\n$/);
  assert.equal(r.stderr.includes('flag-token'), false);
  const quiet = await harness(() => ({ status: 200, body: { value: 'v' } }), { env: { KEYHOLD_TOKEN: 'env-token' } }).run('secrets', 'get', 'A', '--env', 'dev');
  assert.equal(quiet.stderr, '', 'no warning for the variable');
});

test('a value from stdin loses exactly one trailing newline; a value from --file is sent byte for byte', async () => {
  const piped = harness(() => wrote, { stdin: 'line one\nline two\n\n' });
  assert.equal((await piped.run('secrets', 'set', 'A', '--env', 'dev')).code, 0);
  assert.deepEqual(piped.sent[0]!.body, { value: 'line one\nline two\n' });

  const dir = await mkdtemp(join(tmpdir(), 'keyhold-cli-'));
  try {
    await writeFile(join(dir, 'pem'), '-----BEGIN KEY-----\nabc\n');
    const file = harness(() => wrote);
    assert.equal((await file.run('secrets', 'set', 'A', '--env', 'dev', '--file', join(dir, 'pem'), '--cas', '2')).code, 0);
    assert.deepEqual(file.sent[0]!.body, { value: '-----BEGIN KEY-----\nabc\n', cas: 2 });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('set creates a missing secret when an owner is given, with the metadata flags, then writes', async () => {
  const h = harness((req) => {
    if (req.method === 'POST') return { status: 201, body: { name: 'A', owner: 'team' } };
    return h.sent.filter((s) => s.method === 'PUT').length === 1 ? notFound : wrote;
  }, { stdin: 'v' });
  const r = await h.run('secrets', 'set', 'A', '--env', 'dev', '--owner', 'team', '--tag', 'x', '--tag', 'y', '--classification', 'restricted', '--json');
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(h.sent.map((s) => s.method), ['PUT', 'POST', 'PUT']);
  assert.deepEqual(h.sent[1]!.body, { name: 'A', owner: 'team', classification: 'restricted', tags: ['x', 'y'] });
  assert.deepEqual(JSON.parse(r.stdout), { ...wrote.body, created: true });
});

test('server errors print "error: CODE: message" on stderr and exit 1, with a hint where one helps', async () => {
  const h = harness(() => notFound, { stdin: 'v' });
  const r = await h.run('secrets', 'set', 'A', '--env', 'dev', '--json');
  assert.equal(r.code, 1);
  assert.equal(r.stdout, '');
  assert.match(r.stderr, /^error: SECRET_NOT_FOUND: secret "A" does not exist\nhint: .*--owner/);
  assert.equal(h.sent.length, 1, 'no creation without an owner');
});

test('the token endpoint\'s OAuth-shaped errors print their Keyhold code; an OAuth error without one is not taken for Keyhold\'s', async () => {
  const refused = { error: 'invalid_client', error_description: 'invalid client credentials', code: 'INVALID_CREDENTIALS', request_id: 'r2' };
  const h = harness(() => ({ status: 401, body: refused }), { stdin: 'khcs_wrong' });
  const r = await h.run('token', 'exchange', '--client-id', 'khc_a');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^error: INVALID_CREDENTIALS: invalid client credentials\n/);
  assert.ok(!r.stderr.includes('khcs_wrong'), 'the secret is not echoed');
  const foreign = harness(() => ({ status: 400, body: { error: 'invalid_request' } }), { stdin: 'khcs_x' });
  assert.match((await foreign.run('token', 'exchange', '--client-id', 'khc_a')).stderr, /without a Keyhold error body/);
});

test('usage errors exit 2 before any request is sent', async () => {
  const cases: Array<[string[], RegExp]> = [
    [['secrets', 'get', 'A'], /--env is required/],
    [['secrets', 'get', 'A', '--env', 'dev', '--version', '2', '--label', 'current'], /not both/],
    [['secrets', 'get', 'A', '--env', 'dev', '--label', 'latest'], /--label must be one of/],
    [['secrets', 'destroy', 'A', '--env', 'dev'], /--env and --versions go together/],
    [['secrets', 'destroy', 'A', '--env', 'dev', '--versions', '1,x'], /whole number/],
    [['secrets', 'set', 'A', 'value', '--env', 'dev'], /not taken as an argument/],
    [['secrets', 'set', 'A', '--env', 'dev'], /the value is empty/],
    [['secrets', 'describe', '..'], /not a valid name/],
    [['unseal', 'khs1.abc'], /not taken as an argument/],
    [['init', '--shares', '2', '--threshold', '3'], /cannot exceed/],
    [['tenants', 'token', 'acme'], /unknown command/],
    [['status', '--addr', 'ftp://x'], /http:\/\/ or https:\/\//],
    [['status', '--frobnicate'], /unknown option --frobnicate/],
    [['secrets', 'get', 'A', '--env', 'dev', '--file', 'x'], /Unknown option '--file'/],
    [['launch'], /unknown command "launch"/],
    // A file is bounded like stdin, and read only up to the bound: /dev/zero never ends.
    [['secrets', 'set', 'A', '--env', 'dev', '--file', '/dev/zero'], /--file \/dev\/zero is larger than 8388608 bytes/],
    [['connectors', 'create', 'c', '--env', 'dev', '--file', '/dev/zero'], /--file \/dev\/zero is larger than/],
    [['automations', 'create', '--file', '/dev/zero'], /definition \/dev\/zero is larger than/],
    [['policy', 'validate', '/dev/zero'], /policy file \/dev\/zero is larger than/],
  ];
  for (const [argv, message] of cases) {
    const h = harness(() => wrote);
    const r = await h.run(...argv);
    assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, argv.join(' '));
    assert.match(r.stderr, /\nhint: /);
    assert.equal(h.sent.length, 0, argv.join(' '));
  }
});

test('a server address in plain http is refused unless it is loopback, and one carrying credentials is refused without echoing them', async () => {
  const refused: Array<[string, RegExp]> = [
    ['http://keyhold.example.com:8200', /plain http only to loopback/],
    ['http://10.0.0.5:8200', /plain http only to loopback/],
    ['http://127.evil.example:8200', /plain http only to loopback/],
    ['https://ops:hunter2-pw@keyhold.example.com', /must not carry a user name or password/],
    ['https://keyhold.example.com/?tenant=x', /must not carry a query or fragment/],
    // Mistyped: no scheme (the user name parses as one) or a broken one; the password is still not echoed.
    ['ops:hunter2-pw@keyhold.example.com:8200', /must be an http:\/\/ or https:\/\/ URL/],
    ['https//ops:hunter2-pw@keyhold.example.com', /is not a URL/],
    ['ftp://ops:hunter2-pw@keyhold.example.com', /must be an http:\/\/ or https:\/\/ URL/],
  ];
  for (const [addr, message] of refused) {
    for (const env of [{}, { KEYHOLD_ADDR: addr }] as Array<Record<string, string>>) {
      const h = harness(() => ({ status: 200, body: { initialized: true, sealed: false } }), { stdin: 'khs1.AAAA', env: { KEYHOLD_TOKEN: 'kh_env-token', ...env } });
      const r = await h.run(...(Object.keys(env).length ? [] : ['--addr', addr]), 'unseal');
      assert.equal(r.code, 2, `${addr}: ${r.stderr}`);
      assert.match(r.stderr, message, addr);
      assert.equal(r.stderr.includes('hunter2-pw'), false, 'the password is not echoed');
      assert.equal(h.sent.length, 0, `${addr}: nothing is sent, not the share nor the token`);
    }
  }
  for (const addr of ['http://127.0.0.1:8200', 'http://127.1.2.3:8200', 'http://localhost:8200', 'http://[::1]:8200', 'https://keyhold.example.com', 'https://10.0.0.5:8200/keyhold']) {
    const h = harness(() => ({ status: 200, body: { initialized: true, sealed: false } }));
    const r = await h.run('status', '--addr', addr);
    assert.equal(r.code, 0, `${addr}: ${r.stderr}`);
    assert.equal(h.sent.length, 1);
  }
});

test('unseal sends exactly one share from stdin and refuses several at once', async () => {
  const one = harness(() => ({ status: 200, body: { sealed: true, progress: 1, threshold: 2 } }), { stdin: '  khs1.AAAA\n' });
  const r = await one.run('unseal');
  assert.equal(r.code, 0);
  assert.deepEqual(one.sent[0]!.body, { share: 'khs1.AAAA' });
  assert.match(r.stdout, /progress: 1\/2/);
  const two = harness(() => ({ status: 200, body: {} }), { stdin: 'khs1.AAAA\nkhs1.BBBB\n' });
  assert.equal((await two.run('unseal')).code, 2);
  assert.equal(two.sent.length, 0);
});

test('a value that is not UTF-8 is refused rather than stored mangled', async () => {
  const h = harness(() => wrote, { stdin: Buffer.from([0xff, 0xfe, 0x00]) });
  const r = await h.run('secrets', 'set', 'A', '--env', 'dev');
  assert.equal(r.code, 2);
  assert.match(r.stderr, /not valid UTF-8/);
  assert.equal(h.sent.length, 0);
});

test('help is printed for the CLI, a group and a command, and exits 0 when asked for', async () => {
  const h = harness(() => wrote);
  for (const argv of [['help'], ['--help'], ['secrets', 'help'], ['help', 'secrets'], ['secrets', 'set', '--help'], ['status', '-h']]) {
    const r = await h.run(...argv);
    assert.equal(r.code, 0, argv.join(' '));
  }
  const set = await harness(() => wrote).run('secrets', 'set', '--help');
  assert.match(set.stdout, /ONE trailing newline/);
  assert.match((await harness(() => wrote).run('help')).stdout, /130 interrupted/, 'every exit code the CLI uses is listed');
  const list = (await harness(() => wrote).run('audit', 'list', '--help')).stdout;
  assert.match(list, /\[--after SEQ\] \[--oldest-first\]/);
  assert.match(list, /^--after SEQ +\S/m, 'every option in the usage line is explained');
  assert.match(list, /^--oldest-first +\S/m);
  assert.equal((await harness(() => wrote).run('secrets')).code, 2, 'a group without a verb is a usage error');
});

test('an answer that is not from Keyhold is reported as such, not parsed as a result', async () => {
  let stderr = '';
  const cli = createCli({
    entries,
    fetch: (async () => new Response('<html>proxy</html>', { status: 502 })) as typeof fetch,
    stdin: Readable.from([]),
    stdout: { write: () => true },
    stderr: { write: (s: string) => (stderr += s) },
    env: {},
  });
  assert.equal(await cli.run(['status']), 1);
  assert.match(stderr, /unexpected answer from http:\/\/127\.0\.0\.1:8200: HTTP 502, not JSON/);
});

test('audit verify offline: proves files with no request, names damage, and wants the events and the key', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'keyhold-cli-offline-'));
  try {
    // A three-event log and one checkpoint at event 2, made from the format alone (docs/audit.md).
    const { privateKey, publicKey } = generateKeyPairSync('ed25519');
    const key = publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    let prevHash = GENESIS_HASH;
    const events = [1, 2, 3].map((seq) => {
      const e = {
        seq, id: `e${seq}`, time: 1_780_000_000_000 + seq, tenantId: 't', actor: { type: 'machine' as const, id: 'm' }, action: 'secret.use',
        resource: { type: 'secret', id: 's', name: 'A' }, environment: 'production', secretVersion: 1, outcome: 'allowed' as const, reason: null, context: {},
      };
      const hash = chainHash(prevHash, e);
      const event = { ...e, prevHash, hash };
      prevHash = hash;
      return event;
    });
    const cp = { seq: 2, hash: events[1]!.hash, time: 1_780_000_000_100, prev_seq: 0 };
    const checkpoint = { ...cp, signature: sign(null, checkpointMessage(cp.seq, cp.hash, cp.time, cp.prev_seq), privateKey).toString('base64'), public_key: key };
    const [eventsFile, checkpointsFile, badFile] = ['events.jsonl', 'checkpoints.jsonl', 'bad.jsonl'].map((f) => join(dir, f)) as [string, string, string];
    await writeFile(eventsFile, events.map((e) => JSON.stringify(e)).join('\n') + '\n');
    await writeFile(checkpointsFile, JSON.stringify(checkpoint) + '\n');
    await writeFile(badFile, events.map((e) => JSON.stringify(e.seq === 2 ? { ...e, action: 'secret.reveal' } : e)).join('\n') + '\n');

    const h = harness(() => { throw new Error('offline verification must not call the server'); });
    const good = await h.run('audit', 'verify', '--events', eventsFile, '--checkpoints', checkpointsFile, '--public-key', key);
    assert.deepEqual([good.code, good.stdout.trim()], [0, 'Audit log intact: 3 events through #3, 1 signed checkpoint(s) match. 1 event(s) after the newest checkpoint are chained but not yet signed.']);
    const bad = await harness(() => ({ status: 500, body: {} })).run('audit', 'verify', '--events', badFile, '--checkpoints', checkpointsFile, '--public-key', key, '--json');
    assert.equal(bad.code, 1);
    assert.deepEqual([JSON.parse(bad.stdout).firstBadSeq, JSON.parse(bad.stdout).problem], [2, 'event 2 was altered (its hash does not match its content)']);
    // A sink's file after rotation (starts at event 2) with a line written twice: a missing head unless --partial
    // says the file is a part; then proved, and both said.
    const rotatedFile = join(dir, 'rotated.jsonl');
    await writeFile(rotatedFile, [events[1], events[2], events[2]].map((e) => JSON.stringify(e)).join('\n') + '\n');
    const headless = await harness(() => ({ status: 500, body: {} })).run('audit', 'verify', '--events', rotatedFile, '--checkpoints', checkpointsFile, '--public-key', key);
    assert.deepEqual([headless.code, headless.stdout.trim()], [1, 'Audit log BROKEN at event #1: events 1..1 are missing: the file starts at #2 (a rotated sink file? verify it with --partial)']);
    const rotated = await harness(() => ({ status: 500, body: {} })).run('audit', 'verify', '--events', rotatedFile, '--checkpoints', checkpointsFile, '--public-key', key, '--partial');
    assert.deepEqual([rotated.code, rotated.stdout.trim()], [0, 'Audit log intact: 2 events through #3, 1 signed checkpoint(s) match. 1 event(s) after the newest checkpoint are chained but not yet signed. The file starts at #2, not at #1: events before it are not in this file and were not verified. 1 line(s) repeating an event exactly were skipped.']);
    const partial = await harness(() => ({ status: 500, body: {} })).run('audit', 'verify', '--events', eventsFile);
    assert.equal(partial.code, 2);
    assert.match(partial.stderr, /needs --events and --public-key/);
    assert.equal(h.sent.length, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('automations export --out replaces an existing file or link with a new mode 600 file, never writing through it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'keyhold-cli-'));
  try {
    const h = harness(() => ({ status: 200, body: { automations: [{ name: 'a' }], connectors: [] } }));
    const loose = join(dir, 'loose.json');
    await writeFile(loose, 'old', { mode: 0o644 });
    assert.equal((await h.run('automations', 'export', '--out', loose)).code, 0);
    assert.equal(statSync(loose).mode & 0o777, 0o600, 'an existing file keeps no looser mode');
    assert.deepEqual(JSON.parse(readFileSync(loose, 'utf8')), { automations: [{ name: 'a' }], connectors: [] });

    const victim = join(dir, 'victim');
    await writeFile(victim, 'untouched');
    const link = join(dir, 'link.json');
    symlinkSync(victim, link);
    assert.equal((await h.run('automations', 'export', '--out', link)).code, 0);
    assert.equal(readFileSync(victim, 'utf8'), 'untouched', 'the link was replaced, not followed');
    assert.equal(lstatSync(link).isSymbolicLink(), false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('audit verify offline fails on an events file with no event in it: an emptied sink file proves nothing', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'keyhold-cli-offline-'));
  try {
    const key = generateKeyPairSync('ed25519').publicKey.export({ format: 'der', type: 'spki' }).toString('base64');
    for (const [name, text] of [['empty.jsonl', ''], ['blank.jsonl', '\n\n']] as const) {
      const file = join(dir, name);
      await writeFile(file, text);
      for (const partial of [[], ['--partial']]) {
        const r = await harness(() => ({ status: 500, body: {} })).run('audit', 'verify', '--events', file, '--public-key', key, ...partial);
        assert.deepEqual([r.code, r.stdout.trim()], [1, 'Audit log BROKEN at event #1: the events file holds no audit event'], `${name} ${partial.join(' ')}`);
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('migrate warns when the owner\'s password is on the command line, and never prints it', async () => {
  const h = harness(() => { throw new Error('migrate talks to the database, not to a server'); });
  const r = await h.run('migrate', '--database-url', 'postgres://owner:owner-pw-93@127.0.0.1:1/test');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^warning: --database-url carries a password, visible to every user of this machine \(ps\) and kept in shell history; prefer KEYHOLD_MIGRATE_DATABASE_URL\n/);
  assert.equal(r.stderr.includes('owner-pw-93') || r.stdout.includes('owner-pw-93'), false);
  const quiet = await harness(() => ({ status: 500, body: {} }), { env: { KEYHOLD_MIGRATE_DATABASE_URL: 'postgres://owner:owner-pw-93@127.0.0.1:1/test' } }).run('migrate');
  assert.equal(quiet.code, 1);
  assert.doesNotMatch(quiet.stderr, /warning/);
  assert.equal(quiet.stderr.includes('owner-pw-93'), false);
});

test('a file or --input that is not JSON is refused naming where, never quoting the text (it may hold a secret)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'keyhold-badjson-'));
  try {
    const file = join(dir, 'input.json');
    await writeFile(file, '{\n  "token": sk_live_pasted_secret_value_1234\n}');
    const h = harness(() => ({ status: 200, body: {} }), { env: { KEYHOLD_ADDR: 'https://k:1', KEYHOLD_TOKEN: 't' } });
    for (const argv of [
      ['automations', 'run', 'flow', '--env', 'dev', '--input-file', file],
      ['automations', 'run', 'flow', '--env', 'dev', '--input', '{"token": sk_live_pasted_secret_value_1234}'],
      ['access-policy', 'apply', file],
    ]) {
      const r = await h.run(...argv);
      assert.equal(r.code, 2, argv.join(' '));
      assert.match(r.stderr, /not (valid )?JSON/);
      assert.equal(r.stderr.includes('sk_live'), false, `${argv.join(' ')}: ${r.stderr}`);
    }
    assert.equal(h.sent.length, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('JSON the CLI reads (a file, --input, a --set or --claim value) that names a key twice is refused with where, never quoting the key', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'keyhold-dupjson-'));
  try {
    // The repeat is spelled with an escape: it is the same key once unescaped. The key looks like a credential.
    const file = join(dir, 'dup.json');
    await writeFile(file, '{\n  "ok": [{"sk_live_key_9876": 1}],\n  "nested": {"sk_live_key_9876": 1, "sk_live_key_98\\u0037\\u0036": 2}\n}');
    const oidc = ['--oidc-issuer', 'https://i', '--jwks-url', 'https://i/jwks', '--audience', 'a'];
    const h = harness(() => ({ status: 200, body: {} }), { env: { KEYHOLD_ADDR: 'https://k:1', KEYHOLD_TOKEN: 't' } });
    const tries: Array<{ argv: string[]; where: RegExp }> = [
      { argv: ['automations', 'run', 'flow', '--env', 'dev', '--input-file', file], where: /line 3, column 37/ },
      { argv: ['automations', 'run', 'flow', '--env', 'dev', '--input', '{"sk_live_key_9876":1,"sk_live_key_9876":2}'], where: /--input .*column 23/ },
      { argv: ['automations', 'create', '--file', file], where: /line 3/ },
      { argv: ['automations', 'import', file], where: /line 3/ },
      { argv: ['rotation', 'set', 'A', '--env', 'dev', '--file', file], where: /line 3/ },
      { argv: ['access-policy', 'apply', file], where: /line 3/ },
      { argv: ['access-policy', 'validate', file], where: /line 3/ },
      { argv: ['policy', 'test', file], where: /line 3/ },
      { argv: ['connectors', 'create', 'c', '--env', 'dev', '--type', 'http', '--owner', 'o', '--file', file], where: /line 3/ },
      { argv: ['connectors', 'create', 'c', '--env', 'dev', '--type', 'http', '--owner', 'o', '--set', 'headers={"sk_live_key_9876":"a","sk_live_key_9876":"b"}'], where: /--set headers/ },
      { argv: ['machines', 'create', 'm', ...oidc, '--claim', 'ref:={"sk_live_key_9876":1,"sk_live_key_9876":2}'], where: /--claim ref/ },
    ];
    for (const { argv, where } of tries) {
      const r = await h.run(...argv);
      assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stdout}${r.stderr}`);
      assert.match(r.stderr, /names the same key twice in one object/, argv.join(' '));
      assert.match(r.stderr, where, argv.join(' '));
      assert.equal(r.stderr.includes('sk_live'), false, `${argv.join(' ')}: ${r.stderr}`);
    }
    assert.equal(h.sent.length, 0, 'nothing was sent');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('policy test runs a case file offline (no request) against a policy file: exit 0 when every case holds, 1 when one does not', async () => {
  const h = harness(() => ({ status: 500, body: {} }));
  const passing = await h.run('policy', 'test', 'docs/examples/tenant-policies.test.json', '--policies', 'docs/examples/tenant-policies.cedar');
  assert.equal(passing.code, 0, passing.stderr);
  const cases = (JSON.parse(readFileSync('docs/examples/tenant-policies.test.json', 'utf8')) as { cases: unknown[] }).cases.length;
  assert.match(passing.stdout, new RegExp(`\\n${cases} passed, 0 failed\\n$`));
  assert.deepEqual(h.sent, [], 'no server is asked');

  // Without the tenant's policies, the cases that expect its forbids to deny now fail.
  const without = await harness(() => ({ status: 500, body: {} })).run('policy', 'test', 'docs/examples/tenant-policies.test.json');
  assert.equal(without.code, 1);
  assert.match(without.stdout, /^FAIL {2}.*\(expected deny, got allow; /m);
  assert.match(without.stdout, /\d+ passed, [1-9]\d* failed\n$/);

  const dir = await mkdtemp(join(tmpdir(), 'keyhold-policy-test-'));
  try {
    await writeFile(join(dir, 'broken.cedar'), 'forbid(principal, action == Keyhold::Action::"nonsense", resource);');
    const invalid = await harness(() => ({ status: 500, body: {} })).run('policy', 'test', 'docs/examples/tenant-policies.test.json', '--policies', join(dir, 'broken.cedar'));
    assert.equal(invalid.code, 2, 'a policy file that does not validate is a usage error');
    assert.match(invalid.stderr, /^error: /);

    // A policy naming the tenant is decided in the tenant the case file gives, as the server would.
    await writeFile(join(dir, 'acme.cedar'), 'permit (principal in Keyhold::Tenant::"t-acme", action == Keyhold::Action::"list", resource);');
    const listCase = { name: 'lists', principal: { type: 'user' }, action: 'list', secret: { name: 'K' }, expect: 'allow' };
    await writeFile(join(dir, 'no-tenant.json'), JSON.stringify({ cases: [listCase] }));
    await writeFile(join(dir, 'tenant.json'), JSON.stringify({ tenant: 't-acme', cases: [listCase] }));
    const unnamed = await harness(() => ({ status: 500, body: {} })).run('policy', 'test', join(dir, 'no-tenant.json'), '--policies', join(dir, 'acme.cedar'));
    assert.equal(unnamed.code, 2, unnamed.stdout);
    assert.match(unnamed.stderr, /names the tenant "t-acme"/);
    const named = await harness(() => ({ status: 500, body: {} })).run('policy', 'test', join(dir, 'tenant.json'), '--policies', join(dir, 'acme.cedar'));
    assert.equal(named.code, 0, named.stdout + named.stderr);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a CLI command loads no database driver: every command is a new process, and offline verify needs only the chain and checkpoint format', async () => {
  const { spawnSync } = await import('node:child_process');
  // Lists every module the process loads, on exit, through a resolve hook.
  const hook = `data:text/javascript,${encodeURIComponent(`
    import { registerHooks } from 'node:module';
    const seen = [];
    registerHooks({ resolve(s, c, next) { const r = next(s, c); seen.push(r.url); return r; } });
    process.on('exit', () => process.stderr.write('\\nLOADED ' + JSON.stringify(seen) + '\\n'));`)}`;
  const cli = join(import.meta.dirname, '..', 'main', 'cli.ts');
  for (const args of [['--help'], ['audit', 'verify', '--events', '/nonexistent/events.jsonl', '--public-key', 'AAAA']]) {
    const run = spawnSync(process.execPath, ['--disable-warning=ExperimentalWarning', '--import', hook, cli, ...args], {
      encoding: 'utf8', env: { ...process.env, KEYHOLD_ADDR: 'http://127.0.0.1:1', NODE_DISABLE_COMPILE_CACHE: '1' },
    });
    const loaded = JSON.parse(/LOADED (.*)/.exec(run.stderr)?.[1] ?? 'null') as string[] | null;
    assert.ok(loaded && loaded.length > 10, `${args.join(' ')}: the hook saw the modules (${run.stderr.slice(0, 300)})`);
    const drivers = loaded.filter((u) => /node_modules\/(kysely|pg|pg-pool|fastify|@cedar-policy)\//.test(u) || /\/src\/storage\//.test(u));
    assert.deepEqual(drivers, [], `${args.join(' ')} loads none of the server's storage or HTTP stack`);
  }
});

test('a token or tenant that cannot go in a header is a usage error that never echoes it, not fetch quoting it', async () => {
  const cases: Array<[Record<string, string>, string[], RegExp]> = [
    [{ KEYHOLD_TOKEN: 'kh_tok\nen-canary' }, [], /KEYHOLD_TOKEN/],
    [{}, ['--token', 'kh_tok\u2026en-canary'], /--token/],
    [{ KEYHOLD_TOKEN: 'kh_good', KEYHOLD_TENANT: 'acme\r\nx-evil: 1' }, [], /KEYHOLD_TENANT/],
  ];
  for (const [env, flags, names] of cases) {
    let stderr = '';
    // The real fetch (its header checks are what quoted the token), to a loopback port nothing listens on.
    const cli = createCli({
      entries, fetch: globalThis.fetch, stdin: Readable.from([]), stdout: { write: () => true },
      stderr: { write: (s: string) => (stderr += s) }, env: { KEYHOLD_ADDR: 'http://127.0.0.1:1', ...env },
    });
    const code = await cli.run(['status', ...flags]);
    assert.equal(code, 2, stderr);
    assert.match(stderr, names);
    assert.equal(/tok|en-canary|x-evil/.test(stderr.replace(/--token|KEYHOLD_TOKEN/g, '')), false, stderr);
  }
});

test('a redirect is not followed: a value is never sent on to wherever the answer points', async () => {
  const { createServer } = await import('node:http');
  const elsewhere: string[] = [];
  const other = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString())).on('end', () => {
      elsewhere.push(`${req.method} ${req.url} ${body}`);
      res.end('{}');
    });
  });
  other.listen(0, '127.0.0.1');
  await once(other, 'listening');
  const redirecting = createServer((req, res) => {
    req.resume();
    res.writeHead(307, { location: `http://127.0.0.1:${(other.address() as AddressInfo).port}${req.url}` }).end();
  });
  redirecting.listen(0, '127.0.0.1');
  await once(redirecting, 'listening');
  try {
    let stderr = '';
    const cli = createCli({
      entries, fetch: globalThis.fetch, stdin: Readable.from([Buffer.from('redirect-canary-value')]), stdout: { write: () => true },
      stderr: { write: (s: string) => (stderr += s) },
      env: { KEYHOLD_ADDR: `http://127.0.0.1:${(redirecting.address() as AddressInfo).port}`, KEYHOLD_TOKEN: 'kh_tok' },
    });
    const code = await cli.run(['secrets', 'set', 'A', '--env', 'dev']);
    assert.equal(code, 1);
    assert.match(stderr, /redirect/);
    assert.deepEqual(elsewhere, []);
  } finally {
    redirecting.close();
    other.close();
  }
});
