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
