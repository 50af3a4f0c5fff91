import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** The README tour, driven through bin/keyhold against real server processes on loopback. */

const REPO = join(import.meta.dirname, '..', '..');
const NODE = join(REPO, 'node_modules', '.bin', 'node');
const KEYHOLD = join(REPO, 'bin', 'keyhold');

/** The caller's environment minus KEYHOLD_*: a stray setting must not leak into the processes under test. */
function cleanEnv(extra: Record<string, string>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('KEYHOLD_')) env[k] = v;
  return { ...env, ...extra };
}

interface Server { address: string; dataDir: string; stop(): Promise<void> }

const servers: Server[] = [];

async function startServer(opts: { dev: boolean }): Promise<Server> {
  const dataDir = await mkdtemp(join(tmpdir(), 'keyhold-cli-e2e-'));
  const child: ChildProcess = spawn(NODE, [join(REPO, 'src', 'main', 'server.ts'), ...(opts.dev ? ['--dev'] : [])], {
    env: cleanEnv({ KEYHOLD_DATA_DIR: dataDir, KEYHOLD_PORT: '0', KEYHOLD_LOG_LEVEL: 'info' }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => { stderr += c.toString('utf8'); });
  const address = await new Promise<string>((resolve, reject) => {
    let buffered = '';
    setTimeout(() => reject(new Error(`server did not start in 20 s; stderr:\n${stderr}`)), 20_000).unref();
    child.once('exit', (code) => reject(new Error(`server exited (${code}) before listening; stderr:\n${stderr}`)));
    child.stdout!.on('data', (chunk: Buffer) => {
      buffered += chunk.toString('utf8');
      for (const line of buffered.split('\n').slice(0, -1)) {
        const entry = (line.startsWith('{') ? JSON.parse(line) : {}) as { msg?: string; address?: string };
        if (entry.msg === 'keyhold listening' && entry.address) resolve(entry.address);
      }
      buffered = buffered.slice(buffered.lastIndexOf('\n') + 1);
    });
  });
  const server: Server = {
    address,
    dataDir,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) await Promise.all([once(child, 'exit'), child.kill('SIGTERM')]);
      await rm(dataDir, { recursive: true, force: true });
    },
  };
  servers.push(server);
  return server;
}

interface Run { code: number | null; stdout: string; stderr: string }

/** Runs bin/keyhold with stdin piped (and closed after `stdin`, if any). */
function keyhold(args: string[], opts: { env: Record<string, string>; stdin?: string }): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(KEYHOLD, args, { env: cleanEnv(opts.env), stdio: ['pipe', 'pipe', 'pipe'] });
    let [stdout, stderr] = ['', ''];
    child.stdout.on('data', (c: Buffer) => { stdout += c.toString('utf8'); });
    child.stderr.on('data', (c: Buffer) => { stderr += c.toString('utf8'); });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(opts.stdin ?? '');
  });
}

/** A loopback port nothing listens on (it was free a moment ago). */
function closedPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer().listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as AddressInfo;
      probe.close(() => resolve(port));
    }).on('error', reject);
  });
}

function ok(run: Run, what: string): Run {
  assert.equal(run.code, 0, `${what} failed (exit ${run.code}):\n${run.stderr}`);
  return run;
}

let dev: Server;
let sealed: Server;

describe('the CLI against real servers', () => {
  before(async () => {
    [dev, sealed] = await Promise.all([startServer({ dev: true }), startServer({ dev: false })]);
  });

  after(async () => {
    await Promise.all(servers.map((s) => s.stop()));
  });

  test('the README tour: write, read, check-and-set, roll back, delete, restore and re-key a secret', { timeout: 90_000 }, async () => {
    const rootToken = (await readFile(join(dev.dataDir, 'dev-root-token'), 'utf8')).trim();
    const env = { KEYHOLD_ADDR: dev.address, KEYHOLD_TOKEN: rootToken };
    const run = (args: string[], stdin?: string) => keyhold(args, { env, ...(stdin !== undefined ? { stdin } : {}) });
    const target = ['--env', 'development'];

    const status = ok(await run(['status']), 'status');
    assert.match(status.stdout, /Initialized:\s+yes/);
    assert.match(status.stdout, /Sealed:\s+no/);

    const created = ok(await run(['secrets', 'set', 'PAYMENT_API_KEY', ...target, '--owner', 'payments@example.com', '--tag', 'billing'], 'first-value\n'), 'set');
    assert.match(created.stdout, /Created secret PAYMENT_API_KEY/);
    assert.match(created.stdout, /version 1 is current/);
    assert.equal(ok(await run(['secrets', 'get', 'PAYMENT_API_KEY', ...target]), 'get').stdout, 'first-value\n', 'one trailing newline is stripped');

    const second = ok(await run(['secrets', 'set', 'PAYMENT_API_KEY', ...target, '--cas', '1', '--reason', 'rotated by hand'], 'second-value\n'), 'set --cas 1');
    assert.match(second.stdout, /version 2 is current \(was 1\)/);
    const stale = await run(['secrets', 'set', 'PAYMENT_API_KEY', ...target, '--cas', '1'], 'third-value\n');
    assert.equal(stale.code, 1);
    assert.match(stale.stderr, /^error: CAS_MISMATCH: /m);
    assert.equal(ok(await run(['secrets', 'get', 'PAYMENT_API_KEY', ...target]), 'get').stdout, 'second-value\n');

    const history = ok(await run(['secrets', 'history', 'PAYMENT_API_KEY', ...target, '--json']), 'history');
    const versions = (JSON.parse(history.stdout) as { versions: Array<{ version: number; labels: string[]; reason: string }> }).versions;
    assert.deepEqual(versions.map((v) => [v.version, v.labels]), [[2, ['current']], [1, ['previous']]]);
    assert.equal(versions[0]!.reason, 'rotated by hand');
    assert.doesNotMatch(history.stdout, /first-value|second-value/, 'history never shows values');

    assert.match(ok(await run(['secrets', 'rollback', 'PAYMENT_API_KEY', ...target]), 'rollback').stdout, /version 1 is current again \(was 2\)/);
    assert.equal(ok(await run(['secrets', 'get', 'PAYMENT_API_KEY', ...target]), 'get').stdout, 'first-value\n');

    const list = JSON.parse(ok(await run(['secrets', 'list', '--json']), 'list').stdout) as { items: Array<{ name: string; owner: string; tags: string[] }>; next: null };
    assert.deepEqual(list.items.map((s) => [s.name, s.owner, s.tags]), [['PAYMENT_API_KEY', 'payments@example.com', ['billing']]]);
    assert.equal(list.next, null);

    ok(await run(['secrets', 'delete', 'PAYMENT_API_KEY']), 'delete');
    const gone = await run(['secrets', 'get', 'PAYMENT_API_KEY', ...target]);
    assert.equal(gone.code, 1);
    assert.equal(gone.stdout, '');
    assert.match(gone.stderr, /^error: SECRET_NOT_FOUND: /m);
    ok(await run(['secrets', 'restore', 'PAYMENT_API_KEY']), 'restore');

    const rotated = JSON.parse(ok(await run(['keys', 'rotate', '--json']), 'keys rotate').stdout) as { currentVersion: number };
    assert.equal(rotated.currentVersion, 2);
    const rewrapped = JSON.parse(ok(await run(['keys', 'rewrap', '--json']), 'keys rewrap').stdout) as { minDecryptionVersion: number; rewrapped: number };
    assert.equal(rewrapped.minDecryptionVersion, 2);
    assert.equal(rewrapped.rewrapped, 2);
    assert.equal(ok(await run(['secrets', 'get', 'PAYMENT_API_KEY', ...target]), 'get after rewrap').stdout, 'first-value\n');
    const resealed = JSON.parse(ok(await run(['keys', 'reencrypt', '--json']), 'keys reencrypt').stdout) as { currentVersion: number; minDecryptionVersion: number; resealed: number };
    assert.deepEqual([resealed.currentVersion, resealed.minDecryptionVersion, resealed.resealed], [3, 3, 2]);
    assert.match(ok(await run(['keys', 'reencrypt']), 'keys reencrypt (text)').stdout, /^Resealed 2 value\(s\) under fresh data keys and key version 4; older versions are retired\./);
    assert.equal(ok(await run(['secrets', 'get', 'PAYMENT_API_KEY', ...target]), 'get after reencrypt').stdout, 'first-value\n');
    assert.match(ok(await run(['keys', 'self-test']), 'keys self-test').stdout, /^Passed at .*: 1 key version\(s\) of 1 tenant\(s\) tested, 0 failed\.\n$/);
    const lastTest = JSON.parse(ok(await run(['keys', 'self-test', '--last', '--json']), 'keys self-test --last').stdout) as { last: { ok: boolean; keys: number } };
    assert.deepEqual([lastTest.last.ok, lastTest.last.keys], [true, 1]);
  });

  test('the CLI refuses what would go wrong: no owner for a new secret, a value as an argument, a server that is down', { timeout: 30_000 }, async () => {
    const rootToken = (await readFile(join(dev.dataDir, 'dev-root-token'), 'utf8')).trim();
    const env = { KEYHOLD_ADDR: dev.address, KEYHOLD_TOKEN: rootToken };

    const noOwner = await keyhold(['secrets', 'set', 'NEW_SECRET', '--env', 'development'], { env, stdin: 'v\n' });
    assert.equal(noOwner.code, 1);
    assert.match(noOwner.stderr, /SECRET_NOT_FOUND[\s\S]*--owner/);

    const asArgument = await keyhold(['secrets', 'set', 'NEW_SECRET', 'the-value', '--env', 'development', '--owner', 'me'], { env });
    assert.equal(asArgument.code, 2);
    assert.match(asArgument.stderr, /not taken as an argument/);
    assert.equal(ok(await keyhold(['secrets', 'list', '--json'], { env }), 'list').stdout.includes('NEW_SECRET'), false);

    const port = await closedPort();
    const down = await keyhold(['status', '--addr', `http://127.0.0.1:${port}`], { env });
    assert.equal(down.code, 1);
    assert.match(down.stderr, new RegExp(`cannot reach Keyhold at http://127\\.0\\.0\\.1:${port} \\(ECONNREFUSED\\)`));
  });

  test('a fresh server: init with 3 shares and threshold 2, unseal twice from stdin, then use the root token', { timeout: 50_000 }, async () => {
    const env = { KEYHOLD_ADDR: sealed.address };

    const init = JSON.parse(ok(await keyhold(['init', '--shares', '3', '--threshold', '2', '--json'], { env }), 'init').stdout) as {
      shares: string[]; threshold: number; rootToken: string;
    };
    assert.equal(init.shares.length, 3);
    assert.equal(init.threshold, 2);
    assert.ok(init.rootToken.length > 20);

    const before = JSON.parse(ok(await keyhold(['status', '--json'], { env }), 'status').stdout) as { initialized: boolean; sealed: boolean; progress: number };
    assert.deepEqual([before.initialized, before.sealed, before.progress], [true, true, 0]);
    const refused = await keyhold(['secrets', 'list'], { env: { ...env, KEYHOLD_TOKEN: init.rootToken } });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /^error: SEALED: /m);

    const first = ok(await keyhold(['unseal'], { env, stdin: init.shares[0] + '\n' }), 'unseal 1');
    assert.match(first.stdout, /progress: 1\/2/);
    assert.doesNotMatch(first.stdout + first.stderr, new RegExp(init.shares[0]!.replace(/\./g, '\\.')), 'the share is never echoed');
    const second = JSON.parse(ok(await keyhold(['unseal', '--json'], { env, stdin: init.shares[2]! }), 'unseal 2').stdout) as { sealed: boolean };
    assert.equal(second.sealed, false);

    const withRoot = { ...env, KEYHOLD_TOKEN: init.rootToken };
    ok(await keyhold(['secrets', 'set', 'DB_PASSWORD', '--env', 'production', '--owner', 'ops'], { env: withRoot, stdin: 'correct horse\n' }), 'set');
    const value = JSON.parse(ok(await keyhold(['secrets', 'get', 'DB_PASSWORD', '--env', 'production', '--json'], { env: withRoot }), 'get').stdout) as {
      value: string; version: number;
    };
    assert.deepEqual([value.value, value.version], ['correct horse', 1]);
  });

  test('a refused audit sink setting stops `keyhold server` before it listens, as any bad setting does', { timeout: 40_000 }, async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'keyhold-cli-e2e-'));
    try {
      const cases: Array<[Record<string, string>, RegExp]> = [
        // Never contacted: refused while the configuration is read.
        [{ KEYHOLD_AUDIT_WEBHOOK: 'http://audit.example.com/in' }, /KEYHOLD_AUDIT_WEBHOOK.*https/],
        [{ KEYHOLD_AUDIT_WEBHOOK: 'http://127.0.0.1:9/in', KEYHOLD_AUDIT_WEBHOOK_SECRET: 'short' }, /KEYHOLD_AUDIT_WEBHOOK_SECRET must be at least/],
      ];
      for (const [setting, message] of cases) {
        const run = await keyhold(['server', '--dev'], { env: { KEYHOLD_DATA_DIR: dataDir, KEYHOLD_PORT: '0', ...setting } });
        assert.equal(run.code, 2, `${JSON.stringify(setting)}: ${run.stderr}`);
        assert.match(run.stderr, message);
        assert.doesNotMatch(run.stdout, /keyhold listening/, 'it never listened');
      }
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
