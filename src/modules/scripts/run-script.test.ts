import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { getPriority, tmpdir } from 'node:os';
import { join } from 'node:path';
import { DatabaseSync } from 'node:sqlite';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { createRedactor } from '../redaction/redactor.ts';
import { runScript, type RunScriptOptions, type ScriptRedactor } from './run-script.ts';

/** The redaction library's redactor over `values`, with a mask of its own so a test can tell it from the default. */
function fakeRedactor(values: string[]): ScriptRedactor {
  return createRedactor(values, { mask: '[MASKED]' });
}

const OFFLINE_ENV = { KEYHOLD_ADDR: 'http://127.0.0.1:1', KEYHOLD_TOKEN: 'kh_offline-test-token', KEYHOLD_ENVIRONMENT: 'production' };

function run(source: string, opts: Partial<RunScriptOptions> = {}) {
  return runScript({ source, input: null, env: OFFLINE_ENV, timeoutMs: 10_000, maxOutputBytes: 64 * 1024, redactor: fakeRedactor([]), ...opts });
}

describe('script steps: the sandbox and its bounds', () => {
  test('the input goes in, the return value comes back on its own channel, and stdout is only stdout', async () => {
    const r = await run(`export default async function (input) {
      console.log(JSON.stringify({ ok: true, output: 'forged' }));
      return { doubled: input.n * 2, tags: input.tags };
    }`, { input: { n: 21, tags: ['a'] } });
    assert.equal(r.ok, true, r.error);
    assert.deepEqual(r.output, { doubled: 42, tags: ['a'] });
    assert.equal(r.stdout, '{"ok":true,"output":"forged"}\n');
    assert.equal(r.exitCode, 0);
    assert.equal(r.timedOut, false);
  });

  test('a script that loops forever is killed at the timeout', async () => {
    const r = await run('export default async function () { for (;;) {} }', { timeoutMs: 500 });
    assert.equal(r.ok, false);
    assert.equal(r.timedOut, true);
    assert.equal(r.exitCode, null);
    assert.match(r.error!, /did not finish within 500 ms/);
  });

  test('a script that prints 10 MB is cut at the bound, and still returns', async () => {
    const r = await run(`export default async function () {
      const line = 'x'.repeat(1023) + '\\n';
      for (let i = 0; i < 10 * 1024; i++) process.stdout.write(line);
      process.stderr.write('e'.repeat(10 * 1024 * 1024));
      return 'done';
    }`, { maxOutputBytes: 100_000 });
    assert.equal(r.ok, true, r.error);
    assert.equal(r.output, 'done');
    assert.equal(Buffer.byteLength(r.stdout), 100_000);
    assert.ok(Buffer.byteLength(r.stderr) <= 100_000);
    assert.deepEqual(r.truncated, { stdout: true, stderr: true });
  });

  test('a value cut off where the kept output ends is not shown in part, however much masking shortened what came before', async () => {
    // Masks are shorter than the value, so everything kept fits under the bound once masked: the last kept line,
    // cut inside the value by the capture, would show most of it.
    const value = 'sk_live_' + 'Q7wZ'.repeat(8);
    const r = await run(`export default async function () {
      for (let i = 0; i < 20_000; i++) process.stdout.write('key ${value}\\n');
    }`, { redactor: fakeRedactor([value]), maxOutputBytes: 64 * 1024 });
    assert.equal(r.ok, true, r.error);
    assert.equal(r.truncated.stdout, true);
    assert.ok(r.stdout.length > 30_000, 'the output up to the cut is kept');
    assert.ok(!r.stdout.includes('sk_live_'), `no part of the value: ...${r.stdout.slice(-60)}`);
  });

  test('a result larger than the bound is refused', async () => {
    const r = await run(`export default async () => 'y'.repeat(200_000)`, { maxOutputBytes: 100_000 });
    assert.equal(r.ok, false);
    assert.equal(r.output, null);
    assert.match(r.error!, /larger than 100000 bytes/);
  });

  test('the script cannot see the server\'s environment, its files, or spawn anything', async () => {
    process.env.KEYHOLD_DATABASE_URL = 'postgres://canary-user:canary-db-password@127.0.0.1/db';
    try {
      const r = await run(`
        import { readFileSync, writeFileSync } from 'node:fs';
        const attempt = async (fn) => { try { await fn(); return 'allowed'; } catch (e) { return e.code ?? e.message; } };
        export default async function () {
          return {
            env: Object.keys(process.env).sort(),
            parentEnviron: await attempt(() => readFileSync('/proc/' + process.ppid + '/environ')),
            ownEnviron: await attempt(() => readFileSync('/proc/self/environ')),
            serverFile: await attempt(() => readFileSync(${JSON.stringify(new URL('../../../package.json', import.meta.url).pathname)})),
            etc: await attempt(() => readFileSync('/etc/passwd')),
            write: await attempt(() => writeFileSync('/tmp/keyhold-script-escape', 'x')),
            spawn: await attempt(async () => (await import('node:child_process')).execSync('id')),
            worker: await attempt(async () => new (await import('node:worker_threads')).Worker('console.log(1)', { eval: true })),
            inspector: await attempt(async () => new (await import('node:inspector')).Session().connect()),
          };
        }`);
      assert.equal(r.ok, true, r.error);
      const out = r.output as Record<string, unknown>;
      assert.deepEqual(out.env, ['KEYHOLD_ADDR', 'KEYHOLD_ENVIRONMENT', 'KEYHOLD_TOKEN']);
      for (const key of ['parentEnviron', 'ownEnviron', 'serverFile', 'etc', 'write', 'spawn', 'worker', 'inspector']) {
        assert.equal(out[key], 'ERR_ACCESS_DENIED', `${key}: ${String(out[key])}`);
      }
      assert.doesNotMatch(JSON.stringify(r), /canary-db-password/);
    } finally {
      delete process.env.KEYHOLD_DATABASE_URL;
    }
  });

  test('the script cannot open or create a SQLite file: node:sqlite answers to no file permission, so it is not there', async () => {
    // Keyhold's own SQLite database is such a file: reading it gives token hashes and the trail, writing it a grant.
    const dir = mkdtempSync(join(tmpdir(), 'keyhold-sqlite-canary-'));
    try {
      const existing = join(dir, 'server.db');
      const db = new DatabaseSync(existing);
      db.exec("create table tokens (hash text); insert into tokens values ('sqlite-canary-hash')");
      db.close();
      const created = join(dir, 'planted.db');
      const r = await run(`
        import { createRequire } from 'node:module';
        const attempt = async (fn) => { try { return 'allowed: ' + JSON.stringify(await fn()); } catch (e) { return e.code ?? e.message; } };
        const open = (m, path) => new m.DatabaseSync(path);
        export default async function ({ existing, created }) {
          return {
            importRead: await attempt(async () => open(await import('node:sqlite'), existing).prepare('select * from tokens').all()),
            importCreate: await attempt(async () => open(await import('node:sqlite'), created).exec('create table t (x)')),
            builtin: await attempt(() => open(process.getBuiltinModule('node:sqlite'), existing).prepare('select * from tokens').all()),
            require: await attempt(() => open(createRequire(import.meta.url)('node:sqlite'), existing).prepare('select * from tokens').all()),
          };
        }`, { input: { existing, created } });
      assert.equal(r.ok, true, r.error);
      for (const [how, outcome] of Object.entries(r.output as Record<string, string>)) assert.doesNotMatch(outcome, /^allowed/, `${how}: ${outcome}`);
      assert.doesNotMatch(JSON.stringify(r), /sqlite-canary-hash/);
      assert.equal(existsSync(created), false, 'no file was created');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('the script cannot signal or renice the server, or any other process of its user', async () => {
    // Runs as the server's own user, so without a guard it could stop or kill the server (process.ppid) and
    // every other run. A sleeping process of this user stands in for them.
    const victim = spawn('sleep', ['60'], { stdio: 'ignore' });
    try {
      const r = await run(`
        import { kill } from 'node:process';
        import os, { setPriority } from 'node:os';
        const attempt = (fn) => { try { fn(); return 'allowed'; } catch (e) { return e.code ?? e.message; } };
        export default async function ({ pid }) {
          return {
            kill: attempt(() => process.kill(pid, 'SIGSTOP')),
            rawKill: attempt(() => process._kill(pid, 9)),
            namedKill: attempt(() => kill(pid, 'SIGKILL')),
            restored: attempt(() => { delete process.kill; process.kill(pid, 'SIGKILL'); }),
            renice: attempt(() => os.setPriority(pid, 19)),
            namedRenice: attempt(() => setPriority(pid, 19)),
          };
        }`, { input: { pid: victim.pid } });
      assert.equal(r.ok, true, r.error);
      for (const [what, outcome] of Object.entries(r.output as Record<string, string>)) assert.notEqual(outcome, 'allowed', what);
      const state = readFileSync(`/proc/${victim.pid}/stat`, 'utf8').split(' ')[2];
      assert.equal(state, 'S', 'the process is neither stopped nor killed');
      assert.equal(getPriority(victim.pid), 0, 'nor reniced');
    } finally {
      victim.kill('SIGKILL');
    }
  });

  test('a thrown error becomes ok: false with a redacted message, and its stack goes to stderr', async () => {
    const r = await run(`export default async function () { throw new Error('could not log in with hunter2-secret-value'); }`,
      { redactor: fakeRedactor(['hunter2-secret-value']) });
    assert.equal(r.ok, false);
    assert.equal(r.output, null);
    assert.equal(r.error, 'Error: could not log in with [MASKED]');
    assert.equal(r.exitCode, 1);
    assert.match(r.stderr, /could not log in with \[MASKED\]/);
    assert.doesNotMatch(JSON.stringify(r), /hunter2-secret-value/);
  });

  test('non-JSON return values are refused with the path and the reason', async () => {
    const cases: Array<[string, RegExp]> = [
      ['new Date(0)', /\$ is a Date \(return date.toISOString\(\)\)/],
      ['({ when: { at: new Map() } })', /\$\.when\.at is a Map, not a plain object/],
      ['[1, () => 2]', /\$\[1\] is a function/],
      ['({ n: 10n })', /\$\.n is a bigint/],
      ['({ a: undefined })', /\$\.a is undefined/],
      ['(() => { const o = {}; o.self = o; return o; })()', /\$\.self refers back to itself/],
      ['({ ratio: NaN })', /\$\.ratio is NaN/],
      ['Symbol("s")', /\$ is a symbol/],
    ];
    for (const [expr, why] of cases) {
      const r = await run(`export default async () => ${expr};`);
      assert.equal(r.ok, false, expr);
      assert.match(r.error!, /the script returned a value that is not JSON/);
      assert.match(r.error!, why, `${expr}: ${r.error}`);
    }
    const nothing = await run('export default async function () {}');
    assert.deepEqual([nothing.ok, nothing.output], [true, null], 'returning nothing is null output');
    const shared = await run('export default async () => { const x = { v: 1 }; return [x, x]; }');
    assert.deepEqual(shared.output, [{ v: 1 }, { v: 1 }], 'a value used twice is not a cycle');
  });

  test('a script without a default function, one that exits early, and one that does not parse each fail clearly', async () => {
    const noDefault = await run('export const x = 1;');
    assert.match(noDefault.error!, /must `export default async function/);
    const exited = await run('export default async function () { process.exit(3); }');
    assert.deepEqual([exited.ok, exited.exitCode], [false, 3]);
    assert.match(exited.error!, /ended \(exit code 3\) before returning a result/);
    const broken = await run('export default async function ( {');
    assert.equal(broken.ok, false);
    assert.match(broken.error!, /SyntaxError/);
  });

  test('the run ends when the function returns, even with timers left open', async () => {
    const r = await run('export default async function () { setInterval(() => {}, 1000); return 1; }', { timeoutMs: 5_000 });
    assert.deepEqual([r.ok, r.output, r.timedOut], [true, 1, false]);
  });

  test('bad options are refused before anything runs', async () => {
    await assert.rejects(run('export default () => 1', { timeoutMs: 0 }), { code: 'VALIDATION_FAILED' });
    await assert.rejects(run('export default () => 1', { maxOutputBytes: -1 }), { code: 'VALIDATION_FAILED' });
    await assert.rejects(run('export default () => 1', { input: { n: 1n } }), { code: 'VALIDATION_FAILED' });
  });
});

describeEachDialect('script steps: secrets through the preloaded SDK', (dialect) => {
  let h: Harness;
  let env: RunScriptOptions['env'];
  const VALUE = 'sk_live_script-secret-4242';

  before(async () => {
    h = await createHarness(dialect);
    const addr = await h.app.listen({ port: 0, host: '127.0.0.1' });
    await h.services.secrets.create(h.ctx, { name: 'PAYMENT_API_KEY', owner: 'payments' });
    await h.services.values.write(h.ctx, 'PAYMENT_API_KEY', 'production', { value: VALUE });
    const machine = await h.services.machines.create(h.ctx, { name: 'script-runner', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machine.id, role: 'builder', environments: ['production'] });
    const issued = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: machine.id, name: 'run-1', ttlMs: 60_000 });
    env = { KEYHOLD_ADDR: addr, KEYHOLD_TOKEN: issued.token, KEYHOLD_TENANT: 'default', KEYHOLD_ENVIRONMENT: 'production' };
  });
  after(() => h.close());

  test('a script that reads a secret and prints it sees it masked in stdout, stderr, error and output', async () => {
    const r = await runScript({
      source: `
        import { secrets as fromImport } from 'keyhold/sdk';
        export default async function (input, { secrets }) {
          const key = await secrets.get('PAYMENT_API_KEY');
          console.log('using key', key);
          console.error('the literal is:', key);
          return { same: fromImport === secrets, echoed: key, [key]: 'as a key', token: process.env.KEYHOLD_TOKEN };
        }`,
      input: null, env, timeoutMs: 10_000, maxOutputBytes: 64 * 1024, redactor: fakeRedactor([VALUE]),
    });
    assert.equal(r.ok, true, r.error);
    assert.equal(r.stdout, 'using key [MASKED]\n');
    assert.match(r.stderr, /the literal is: \[MASKED\]/);
    assert.deepEqual(r.output, { same: true, echoed: '[MASKED]', '[MASKED]': 'as a key', token: '[MASKED]' });
    assert.doesNotMatch(JSON.stringify(r), new RegExp(VALUE));
    assert.ok(!JSON.stringify(r).includes(env.KEYHOLD_TOKEN), 'the run token is masked too');
    const uses = await h.storage.db.selectFrom('audit_events').select('action').where('resource_name', '=', 'PAYMENT_API_KEY').where('action', '=', 'secret.use').execute();
    assert.equal(uses.length, 1, 'the read was a use event');
  });

  test('a secret the identity may not use fails the script with a typed, value-free error', async () => {
    const r = await runScript({
      source: `export default async function (input, { secrets }) {
        try { await secrets.get('PAYMENT_API_KEY', { environment: 'staging' }); } catch (e) { return { code: e.code, status: e.status }; }
      }`,
      input: null, env, timeoutMs: 10_000, maxOutputBytes: 64 * 1024, redactor: fakeRedactor([VALUE]),
    });
    assert.deepEqual(r.output, { code: 'FORBIDDEN', status: 403 });
  });
});
