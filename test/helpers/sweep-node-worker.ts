import { workerData } from 'node:worker_threads';
import { createManualClock } from '../../src/platform/clock.ts';
import { openStorage, type StorageOptions } from '../../src/storage/database.ts';
import { credentialSweepOver } from './sweep-node.ts';
import { serveCalls } from './worker-calls.ts';

/** The thread of startSweepNodeWorker (sweep-node.ts): its own storage and a clock fixed at `now`. */
const { storage: options, now } = workerData as { storage: StorageOptions; now: number };
const storage = await openStorage(options);
const sweep = credentialSweepOver(storage, createManualClock(now));
serveCalls({ sweep: (batchSize: number) => sweep.sweep(batchSize) }, () => storage.close());
