import { parentPort, workerData } from 'node:worker_threads';
import { openStorage, type StorageOptions } from '../../src/storage/database.ts';
import { openAuditNode, type AuditNodeOptions, type AuditNodeReply, type AuditNodeRequest } from './audit-node.ts';

/** Node B's thread (audit-node.ts, startAuditNodeWorker): opens the node, then answers each call as it arrives, concurrently. */
const port = parentPort!;
const { storage, opts } = workerData as { storage: StorageOptions; opts: AuditNodeOptions };
const opening = openStorage(storage).then((opened) => openAuditNode(opened, opts));

port.on('message', async (req: AuditNodeRequest) => {
  let reply: AuditNodeReply;
  try {
    const node = await opening;
    const value = await (node[req.op] as (...args: unknown[]) => Promise<unknown>)(...req.args);
    reply = { id: req.id, value };
  } catch (err) {
    const e = err as { message?: unknown; code?: unknown };
    reply = { id: req.id, error: { message: String(e?.message ?? err), ...(typeof e?.code === 'string' ? { code: e.code } : {}) } };
  }
  port.postMessage(reply);
  if (req.op === 'close') port.close();
});
