import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, globSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { DEFAULT_TEST_FILES } from './test-files.ts';

/** The suite's runner (test/run.ts) over small test files written for the occasion: what it must count, and what it must fail. */

const RUNNER = new URL('./run.ts', import.meta.url).pathname;

async function runOver(files: Record<string, string>, options: string[] = []): Promise<{ code: number; out: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'keyhold-runner-'));
  try {
    for (const [name, body] of Object.entries(files)) writeFileSync(join(dir, name), `import { test } from 'node:test';\n${body}\n`);
    const env = { ...process.env, KEYHOLD_TEST_WORKERS: '2' };
    const args = ['--disable-warning=ExperimentalWarning', RUNNER, ...options, join(dir, '*.test.ts')];
    try {
      const { stdout } = await promisify(execFile)(process.execPath, args, { env, timeout: 60_000 });
      return { code: 0, out: stdout };
    } catch (e) {
      const err = e as { code?: unknown; stdout?: string };
      assert.equal(typeof err.code, 'number', `the runner ended by ${String(err.code)}`);
      return { code: err.code as number, out: err.stdout ?? '' };
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('passing files, several in one process: exit 0 and the totals of every batch', async () => {
  const r = await runOver({
    'a.test.ts': `test('one', () => {});\ntest('two', () => {});`,
    'b.test.ts': `test('three', () => {});\ntest('skipped', { skip: true }, () => {});`,
    'c.test.ts': `test('four', () => {});`,
  });
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^tests 5, pass 4, fail 0, cancelled 0, skipped 1; \d+ batches in 2 processes at once/m);
});

test('node --test options on the command line reach every batch: a name pattern runs only the tests it names', async () => {
  const r = await runOver({
    'a.test.ts': `test('rotation one', () => {});\ntest('other', () => { throw new Error('not selected, yet run'); });`,
    'b.test.ts': `test('rotation two', () => {});`,
  }, ['--test-name-pattern=^rotation']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /^tests 2, pass 2, fail 0/m);
});

test('a failing test fails the run and names its batch\'s files', async () => {
  const r = await runOver({ 'ok.test.ts': `test('fine', () => {});`, 'bad.test.ts': `test('broken', () => { throw new Error('boom'); });` });
  assert.equal(r.code, 1);
  assert.match(r.out, /^tests 2, pass 1, fail 1/m);
  assert.match(r.out, /^FAILED \(exit code 1\): .*bad\.test\.ts/m);
});

test('work a test leaves running that fails during a later test fails the run, though every test passed', async () => {
  const r = await runOver({ 'late.test.ts': [
    `test('returns before its work is done', () => { setTimeout(() => Promise.reject(new Error('too late')), 20); });`,
    `test('is running when that work fails', () => new Promise((r) => setTimeout(r, 300)));`,
  ].join('\n') });
  assert.equal(r.code, 1);
  assert.match(r.out, /^tests 2, pass 2, fail 0/m);
  assert.match(r.out, /generated asynchronous activity after the test ended/);
});

test('a timer or a child process still running after the last test fails the run, which does not wait for it', async () => {
  const r = await runOver({
    'timer.test.ts': `test('leaves a timer running', () => { setInterval(() => {}, 1000); });`,
    'child.test.ts': `import { spawn } from 'node:child_process';\ntest('leaves a child running', () => { spawn('sleep', ['2']); });`,
  });
  assert.equal(r.code, 1);
  assert.match(r.out, /^✔ leaves a timer running/m);
  assert.match(r.out, /^✔ leaves a child running/m);
  assert.match(r.out, /^✖ still open after the last test ended: Timeout$/m);
  assert.match(r.out, /^✖ still open after the last test ended: .*ProcessWrap/m);
});

test('a test that closes what it opened leaves nothing behind', async () => {
  const r = await runOver({ 'tidy.test.ts': `import { createServer } from 'node:net';\ntest('listens, then closes', async () => {
    const server = createServer().listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    await new Promise((r) => server.close(r));
  });` });
  assert.equal(r.code, 0, r.out);
  assert.doesNotMatch(r.out, /still open/);
});

test('a batch that exits 0 before its tests are done (process.exit in code under test) fails the run', async () => {
  const r = await runOver({ 'exits.test.ts': `test('calls process.exit', () => { process.exit(0); });\ntest('never runs', () => {});` });
  assert.equal(r.code, 1, r.out);
  assert.match(r.out, /^FAILED \(it ended without its summary, so not every test ran\): .*exits\.test\.ts/m);
});

test('a runner stopped by SIGTERM (a CI timeout) stops its batches too', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'keyhold-runner-'));
  try {
    const pidFile = join(dir, 'batch.pid');
    writeFileSync(join(dir, 'long.test.ts'), `import { test } from 'node:test';\nimport { writeFileSync } from 'node:fs';\n`
      + `test('runs for a minute', async () => { writeFileSync(${JSON.stringify(pidFile)}, String(process.pid)); await new Promise((r) => setTimeout(r, 60_000)); });\n`);
    const runner = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', RUNNER, join(dir, '*.test.ts')], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => runner.once('exit', (code) => resolve(code)));
    let pid = 0;
    for (let i = 0; i < 200 && !pid; i++) {
      await new Promise((r) => setTimeout(r, 50));
      pid = Number(existsSync(pidFile) ? readFileSync(pidFile, 'utf8') : 0);
    }
    assert.ok(pid > 0, 'the batch started its test');
    runner.kill('SIGTERM');
    assert.equal(await exited, 143);
    const alive = () => { try { process.kill(pid, 0); return true; } catch { return false; } };
    for (let i = 0; i < 100 && alive(); i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(alive(), false, 'the batch process was stopped with its runner');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('patterns that match no file fail the run rather than pass it empty', async () => {
  const r = await runOver({});
  assert.equal(r.code, 1);
  assert.match(r.out, /^no test file matches /m);
});

test('no test file has hooks outside a describe: in a shared process they would run once for the whole batch', () => {
  // node --test-isolation=none makes a file's top-level before/after hooks the batch's: every file's `before` runs
  // before the batch's first test and every `after` after its last, so servers and databases pile up, and the
  // open-handle check (open-handles.ts) sees what the late `after` hooks have not closed yet.
  const topLevelHook = /^(before|after|beforeEach|afterEach)\(/m;
  const offenders = globSync(DEFAULT_TEST_FILES, { cwd: new URL('..', import.meta.url).pathname })
    .filter((file) => topLevelHook.test(readFileSync(new URL(`../${file}`, import.meta.url), 'utf8')));
  assert.deepEqual(offenders, [], 'wrap these files\' tests and hooks in a describe');
});
