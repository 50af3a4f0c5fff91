import { writeSync } from 'node:fs';
import type { TestEvent } from 'node:test/reporters';

/**
 * A reporter for the suite's runner (test/run.ts) that fails a batch when its tests have all ended but something they
 * started is still running: a timer, socket, server or child process. Without it such a batch would never exit (the
 * open handle keeps node alive), and CI would wait out its own timeout; with it the batch ends at once, naming what is
 * open by type (`Timeout`, `TCPWrap`, `ProcessWrap`...): run the batch's files one at a time to find the culprit.
 *
 * A batch runs with --test-isolation=none, so every top-level test is queued while the files load, before the first
 * one runs: the batch is over when as many have completed as were queued. Only what keeps the process alive counts (an
 * unref'd timer does not), less the process's own standard streams (pipes or terminals, open when the reporter starts).
 */

/** A server closed by the last test finishes closing on a later turn of the event loop: that much grace, no more. */
const GRACE_MS = 1000;

function without(open: string[], baseline: string[]): string[] {
  const left = [...open];
  for (const type of baseline) {
    const i = left.indexOf(type);
    if (i >= 0) left.splice(i, 1);
  }
  return left;
}

async function leftOpen(baseline: string[]): Promise<string[]> {
  const deadline = performance.now() + GRACE_MS;
  let open = without(process.getActiveResourcesInfo(), baseline);
  while (open.length > 0 && performance.now() < deadline) {
    await new Promise((r) => setTimeout(r, 10).unref());
    open = without(process.getActiveResourcesInfo(), baseline);
  }
  return open;
}

/** Fails the batch if, after the grace, something is still open; otherwise lets it end by itself. */
async function stopIfLeftOpen(baseline: string[]): Promise<void> {
  const open = await leftOpen(baseline);
  if (open.length === 0) return;
  writeSync(2, `\n✖ still open after the last test ended: ${open.join(', ')}\n`);
  process.exitCode = 1;
  // The runner ends on SIGTERM as at a normal end, with its summary: the open handle would keep it alive otherwise.
  process.kill(process.pid, 'SIGTERM');
}

export default async function* openHandles(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  // Touching the standard streams opens their handles now, so they count as the process's own, not a test's.
  void process.stdout;
  void process.stderr;
  const baseline = process.getActiveResourcesInfo().filter((type) => type === 'PipeWrap' || type === 'TTYWrap');
  let queued = 0;
  let completed = 0;
  // Events keep being read while the check waits: a reporter that stops reading stalls the others (spec's output).
  for await (const event of source) {
    if (event.type === 'test:enqueue' && event.data.nesting === 0) queued++;
    if (event.type === 'test:complete' && event.data.nesting === 0 && ++completed === queued) void stopIfLeftOpen(baseline);
  }
  yield* [];
}
