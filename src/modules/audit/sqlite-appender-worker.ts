import { DatabaseSync } from 'node:sqlite';
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { createWakeSignal, type AppendRequest } from './sqlite-appender-protocol.ts';
import { createAppendRounds } from './sqlite-appender-rounds.ts';
import { createSqliteAuditWriter } from './sqlite-audit-writer.ts';

/**
 * The SQLite audit appender's thread: its own connection to the database file. It runs one loop,
 * never its event loop: take every batch that has arrived, append them all in one transaction
 * (BEGIN IMMEDIATE: the head is read under the write lock, so the chain has one order whoever
 * else appends; sequence numbers, ids and hashes assigned here; prepared multi-row INSERTs), make
 * the transaction durable, reply; with nothing to do, sleep until the event loop wakes it. Batches
 * that arrive while one transaction syncs form the next: group commit without a timer.
 *
 * Durability is synchronous=FULL's, with the sync moved out of the write lock: COMMIT runs with
 * synchronous=NORMAL (WAL frames written, not yet synced), then the WAL file is fdatasync'ed, and
 * the batches are acknowledged only after that. That is the sync FULL does inside COMMIT (WAL mode
 * syncs only the WAL on commit); NORMAL still syncs the WAL before and the database after every
 * checkpoint, so frames are never dropped before they are durable in the database file. The write
 * lock is free while the sync runs: the server's own writers do not wait for the disk on the
 * audit log's behalf. A failed sync is final (sqlite-appender-rounds.ts).
 */
const { path, port, wake: wakeBuffer } = workerData as { path: string; port: MessagePort; wake: SharedArrayBuffer };
const wake = createWakeSignal(wakeBuffer);
const writer = createSqliteAuditWriter(new DatabaseSync(path, { timeout: 5000 }), path);
const round = createAppendRounds(writer, (reply) => port.postMessage(reply));

for (let open = true; open;) {
  const seen = wake.seen();
  const requests: AppendRequest[] = [];
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) requests.push(m.message as AppendRequest);
  if (requests.length === 0) wake.sleep(seen);
  else open = round(requests);
}
writer.close();
port.close();
