import { once } from 'node:events';
import { parentPort, workerData } from 'node:worker_threads';
import { openStorage, type StorageOptions } from '../../src/storage/database.ts';

/** One start of migrationsAppliedByRacingStarts (start-in-worker.ts): loaded, it waits for 'go', then reports what it applied and closes. */
const port = parentPort!;
port.postMessage('ready');
await once(port, 'message');
const storage = await openStorage(workerData as StorageOptions);
try {
  port.postMessage(storage.migrationsApplied);
} finally {
  await storage.close();
  port.close();
}
