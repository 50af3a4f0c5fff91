import assert from 'node:assert/strict';

/**
 * What `work` settles to, or `late` if it has not settled within `ms`: for tests that assert something finishes (or
 * hangs) in time. The timer is cleared either way, so the test leaves nothing running behind it (test/open-handles.ts
 * fails a batch that does).
 */
export async function within<T, L>(work: Promise<T>, ms: number, late: L): Promise<T | L> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<L>((resolve) => {
    timer = setTimeout(resolve, ms, late);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for `done` (checked every 10 ms): the bound is only there to fail a broken build rather than hang it. */
export async function until(what: string, done: () => Promise<boolean> | boolean, ms = 30_000): Promise<void> {
  const by = performance.now() + ms;
  while (!(await done())) {
    if (performance.now() > by) assert.fail(`${what}: still not after ${ms} ms`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
