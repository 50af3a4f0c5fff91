import { workerData } from 'node:worker_threads';
import { openStorage, type StorageOptions } from '../../src/storage/database.ts';
import { openAuditNode, type AuditNodeOptions } from './audit-node.ts';
import { serveCalls } from './worker-calls.ts';

/** Node B's thread (startAuditNodeWorker in audit-node.ts): opened from the database URL and the shares. */
const { storage, opts } = workerData as { storage: StorageOptions; opts: AuditNodeOptions };
const node = await openAuditNode(await openStorage(storage), opts);
const { close, ...ops } = node;
serveCalls(ops, close);
