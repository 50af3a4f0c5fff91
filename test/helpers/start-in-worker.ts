import { Worker } from 'node:worker_threads';
import type { StorageOptions } from '../../src/storage/database.ts';

/**
 * Starts `count` servers' storage at once (opening and migrating it as a start does), each in a
 * worker thread of its own as separate processes would, and resolves with the migrations each start
 * applied; each worker closes its storage again. The starts are held until every worker has loaded,
 * so they race rather than follow one another. In one thread two SQLite starts cannot race:
 * node:sqlite's busy wait blocks the thread that holds the lock the other waits for.
 */
export async function migrationsAppliedByRacingStarts(options: StorageOptions, count: number): Promise<string[][]> {
  const starts = Array.from({ length: count }, () => {
    const worker = new Worker(new URL('./start-in-worker-thread.ts', import.meta.url), { workerData: options });
    let applied: string[] | null = null;
    let loaded!: () => void;
    const ready = new Promise<void>((resolve) => {
      loaded = resolve;
    });
    worker.on('message', (m: 'ready' | string[]) => {
      if (m === 'ready') loaded();
      else applied = m;
    });
    const done = new Promise<string[]>((resolve, reject) => {
      worker.once('error', reject);
      worker.once('exit', (code) => (applied && code === 0 ? resolve(applied) : reject(new Error(`a start in a worker exited (code ${code}) without opening`))));
    });
    return { worker, ready: Promise.race([ready, done.then(() => {})]), done };
  });
  await Promise.all(starts.map((s) => s.ready));
  for (const s of starts) s.worker.postMessage('go');
  return Promise.all(starts.map((s) => s.done));
}
