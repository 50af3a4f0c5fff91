import { workerData } from 'node:worker_threads';
import { openStorage, type StorageOptions } from '../../src/storage/database.ts';
import { serveCalls } from './worker-calls.ts';

/** One start of migrationsAppliedByRacingStarts (start-in-worker.ts): opens the storage when told, reports what it applied, closes it. */
serveCalls({
  start: async () => {
    const storage = await openStorage(workerData as StorageOptions);
    try {
      return storage.migrationsApplied;
    } finally {
      await storage.close();
    }
  },
}, async () => {});
