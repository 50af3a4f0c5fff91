import { spawn } from 'node:child_process';
import { globSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { DEFAULT_TEST_FILES } from './test-files.ts';

/**
 * `npm run test:only [-- [--test-name-pattern=RE ...] FILES or GLOBS]`: every test file, in batches, WORKERS of them
 * at once. A batch is one `node --test --test-isolation=none` process running its files one after another, not one
 * child process per file: importing the server's modules and building its Cedar engine cost about a second per
 * process, and with 200-odd files that was a third of the suite's time (docs/benchmarks.md, "Test suite time"). Files in a batch share nothing
 * but the process, which the code base allows: no module keeps state (STYLE.md), and each suite makes its own
 * database, clock and servers.
 *
 * Batches shrink as the queue empties (each takes a 2·WORKERS-th of what is left), so no worker is left running a
 * long batch while the others are done, without keeping a record of how long each file takes. The cross-module
 * suites (test/: end-to-end and hostile, which start servers and crash them) are the longest files, up to a minute
 * each: they go first, one per process (a second of imports is little beside them), so the queue ends on short ones.
 *
 * Sharing a process makes one thing stricter: work a test leaves running can outlive it and fail in a later test's
 * time (node reports it as an error and the batch fails), and a timer or socket left open would keep the batch from
 * ever exiting: test/open-handles.ts stops and fails the batch instead.
 */

/** Tests wait on I/O (PostgreSQL, servers, workers) for part of their time: one process more than cores keeps them busy. */
const WORKERS = Number(process.env.KEYHOLD_TEST_WORKERS ?? availableParallelism() + 1);
const TEST_TIMEOUT_MS = 120_000;
const OPEN_HANDLES = new URL('./open-handles.ts', import.meta.url).pathname;

interface BatchResult {
  files: string[];
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  seconds: number;
  /** Why the batch failed, or null. */
  failure: string | null;
}

/** `ℹ tests 1278` → 1278, from the spec reporter's closing summary. */
function summaryCount(output: string, name: string): number {
  const m = new RegExp(`^ℹ ${name} (\\d+)$`, 'm').exec(output);
  return m ? Number(m[1]) : 0;
}

/** node --test options given on the command line (`--test-name-pattern=...`), passed to every batch. */
const passedOptions = process.argv.slice(2).filter((arg) => arg.startsWith('--'));
const patterns = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));

/** The batches running now: stopped with the runner, so a runner killed by a timeout or Ctrl-C leaves none behind. */
const running = new Set<ReturnType<typeof spawn>>();
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    for (const child of running) child.kill(signal);
    process.exit(128 + (signal === 'SIGINT' ? 2 : 15));
  });
}

function runBatch(files: string[]): Promise<BatchResult> {
  const started = performance.now();
  const args = [
    '--disable-warning=ExperimentalWarning', '--test', '--test-isolation=none', `--test-timeout=${TEST_TIMEOUT_MS}`,
    '--test-reporter=spec', '--test-reporter-destination=stdout', `--test-reporter=${OPEN_HANDLES}`, '--test-reporter-destination=stderr', ...passedOptions, ...files,
  ];
  // Without NODE_TEST_CONTEXT: set when this runner itself runs under node --test (its own test), it would make the
  // batch report in the parent runner's binary protocol instead of the spec reporter's text.
  const { NODE_TEST_CONTEXT: _, ...env } = process.env;
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  running.add(child);
  const chunks: Buffer[] = [];
  child.stdout.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.stderr.on('data', (chunk: Buffer) => chunks.push(chunk));
  return new Promise((resolve) => {
    child.on('close', (code, signal) => {
      running.delete(child);
      const batch = { files, code, signal, output: Buffer.concat(chunks).toString('utf8'), seconds: (performance.now() - started) / 1000 };
      resolve({ ...batch, failure: failure(batch) });
    });
  });
}

function failure(r: Omit<BatchResult, 'failure'>): string | null {
  if (r.signal) return `signal ${r.signal}`;
  if (r.code !== 0) return `exit code ${r.code}`;
  // Something called process.exit(0) in the middle: the tests after it never ran, and exit code 0 would hide it.
  return /^ℹ duration_ms /m.test(r.output) ? null : 'it ended without its summary, so not every test ran';
}

function report(r: BatchResult): void {
  process.stdout.write(`\n── ${r.files.length} files in ${r.seconds.toFixed(0)} s${r.failure ? `: FAILED, ${r.failure}` : ''} ──\n`
    + `${r.files.map((f) => `   ${f}\n`).join('')}${r.output}`);
}

async function worker(queue: string[], results: BatchResult[]): Promise<void> {
  while (queue.length > 0) {
    const batch = isLong(queue[0]!) ? queue.splice(0, 1) : queue.splice(0, Math.max(1, Math.ceil(queue.length / (2 * WORKERS))));
    const r = await runBatch(batch);
    report(r);
    results.push(r);
  }
}

const isLong = (file: string) => file.startsWith('test/');
const longestFirst = (a: string, b: string) => Number(isLong(b)) - Number(isLong(a)) || a.localeCompare(b);

async function main(): Promise<number> {
  if (!Number.isInteger(WORKERS) || WORKERS < 1) throw new Error(`KEYHOLD_TEST_WORKERS must be a positive integer, not ${process.env.KEYHOLD_TEST_WORKERS}`);
  const files = patterns.length > 0 ? patterns : DEFAULT_TEST_FILES;
  const queue = [...new Set(globSync(files))].sort(longestFirst);
  if (queue.length === 0) {
    process.stdout.write(`no test file matches ${files.join(' ')}\n`);
    return 1;
  }
  const started = performance.now();
  const results: BatchResult[] = [];
  await Promise.all(Array.from({ length: WORKERS }, () => worker(queue, results)));
  const total = (name: string) => results.reduce((n, r) => n + summaryCount(r.output, name), 0);
  const failed = results.filter((r) => r.failure !== null);
  process.stdout.write(`\ntests ${total('tests')}, pass ${total('pass')}, fail ${total('fail')}, cancelled ${total('cancelled')}, `
    + `skipped ${total('skipped')}; ${results.length} batches in ${WORKERS} processes at once, ${((performance.now() - started) / 1000).toFixed(0)} s\n`);
  for (const r of failed) process.stdout.write(`FAILED (${r.failure}): ${r.files.join(' ')}\n`);
  return failed.length === 0 && total('tests') > 0 ? 0 : 1;
}

process.exitCode = await main();
