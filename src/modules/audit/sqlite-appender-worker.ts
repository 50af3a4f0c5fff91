import { createSecretKey, type KeyObject } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { createWakeSignal, type AppendReply, type AppendRequest, type EventRow } from './sqlite-appender-protocol.ts';
import { createSqliteAuditWriter, type KeyedBatch } from './sqlite-audit-writer.ts';

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
 * audit log's behalf.
 */
const { path, port, wake: wakeBuffer } = workerData as { path: string; port: MessagePort; wake: SharedArrayBuffer };
const wake = createWakeSignal(wakeBuffer);
const writer = createSqliteAuditWriter(new DatabaseSync(path, { timeout: 5000 }), path);
const CHECKPOINT_EVERY = 100; // transactions
let sinceCheckpoint = 0;
/** The event MAC key for the batches that follow (the event loop sends it when it changes). */
let macKey: KeyObject | null = null;

/** One round: every batch that has arrived, appended, synced and acknowledged. False once asked to close. */
function round(requests: AppendRequest[]): boolean {
  const ids: number[] = [];
  const batches: Array<{ batch: string; key: KeyObject | null }> = [];
  let closing = false;
  for (const r of requests) {
    if ('close' in r) closing = true;
    else if ('macKey' in r) macKey = r.macKey ? createSecretKey(r.macKey) : null;
    else {
      ids.push(r.id);
      batches.push({ batch: r.batch, key: macKey });
    }
  }
  if (ids.length > 0) {
    let reply: AppendReply;
    try {
      const segment = writer.append(batches.map(({ batch, key }): KeyedBatch => [...(JSON.parse(batch) as [number, EventRow[]]), key]));
      try {
        writer.sync();
        reply = { ids, segment };
      } catch (err) {
        reply = { ids, error: `fdatasync of the WAL failed: ${(err as Error).message}` };
      }
    } catch (err) {
      reply = { ids, error: err instanceof Error ? err.message : String(err) };
    }
    port.postMessage(reply);
    if (++sinceCheckpoint >= CHECKPOINT_EVERY) {
      sinceCheckpoint = 0;
      writer.checkpoint();
    }
  }
  return !closing;
}

for (let open = true; open;) {
  const seen = wake.seen();
  const requests: AppendRequest[] = [];
  for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) requests.push(m.message as AppendRequest);
  if (requests.length === 0) wake.sleep(seen);
  else open = round(requests);
}
writer.close();
port.close();
