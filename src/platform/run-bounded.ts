/**
 * Runs `work` on every item, at most `concurrency` at once and at most `perKey` of one key at once, taking items in
 * order otherwise: a slow item holds one slot, not the queue, and one key's slow items cannot take every slot. A
 * failing item is handed to `onError` and the rest go on. Resolves once every item has run.
 * @example
 * await runBounded(policies, { concurrency: 4, perKey: 2, keyOf: (p) => p.tenant_id, onError }, (p) => rotate(p));
 */
export function runBounded<T>(
  items: readonly T[],
  opts: { concurrency: number; perKey: number; keyOf(item: T): string; onError(err: unknown): void },
  work: (item: T) => Promise<void>,
): Promise<void> {
  const queue = [...items];
  const busy = new Map<string, number>();
  let running = 0;
  return new Promise<void>((resolve) => {
    const pump = () => {
      while (running < opts.concurrency) {
        const i = queue.findIndex((item) => (busy.get(opts.keyOf(item)) ?? 0) < opts.perKey);
        if (i < 0) break;
        const [item] = queue.splice(i, 1) as [T];
        const key = opts.keyOf(item);
        busy.set(key, (busy.get(key) ?? 0) + 1);
        running++;
        void Promise.resolve().then(() => work(item)).catch(opts.onError).finally(() => {
          running--;
          busy.set(key, busy.get(key)! - 1);
          pump();
        });
      }
      if (running === 0) resolve();
    };
    pump();
  });
}
