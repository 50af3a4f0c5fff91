import type { StorageOptions } from '../../src/storage/database.ts';
import { startWorkerNode } from './worker-calls.ts';

/**
 * Starts `count` servers' storage at once (opening and migrating it as a start does), each in a
 * worker thread of its own as separate processes would (worker-calls.ts), and resolves with the
 * migrations each start applied; each closes its storage again. The starts are sent once every
 * worker has loaded, so they race rather than follow one another.
 */
export async function migrationsAppliedByRacingStarts(options: StorageOptions, count: number): Promise<string[][]> {
  const nodes = await Promise.all(Array.from({ length: count }, () => startWorkerNode(new URL('./start-in-worker-thread.ts', import.meta.url), options)));
  try {
    return await Promise.all(nodes.map((node) => node.call<string[]>('start')));
  } finally {
    for (const node of nodes) await node.close();
  }
}
