import { closeSync, fdatasyncSync, fstatSync, openSync, statSync } from 'node:fs';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { chainHash } from './chain.ts';
import type { AuditEvent } from './event.ts';
import { timeOrderedId } from '../../platform/ids.ts';
import { createWakeSignal, type AppendReply, type AppendRequest, type EventRow } from './sqlite-appender-protocol.ts';

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
const COLUMNS = ['seq', 'id', 'time', 'tenant_id', 'actor_type', 'actor_id', 'action', 'resource_type', 'resource_id',
  'resource_name', 'environment', 'secret_version', 'outcome', 'reason', 'context', 'prev_hash', 'hash'] as const;
/** Rows per INSERT statement: 17 columns x 64 rows stays far below SQLite's variable limit. */
const CHUNK = 64;

const { path, port, wake: wakeBuffer } = workerData as { path: string; port: MessagePort; wake: SharedArrayBuffer };
const wake = createWakeSignal(wakeBuffer);
const db = new DatabaseSync(path, { timeout: 5000 });
db.exec('PRAGMA synchronous = NORMAL');
// Checkpoints run between transactions (below), not inside a COMMIT.
db.exec('PRAGMA wal_autocheckpoint = 0');
const CHECKPOINT_EVERY = 100; // transactions
let sinceCheckpoint = 0;
let statements = new Map<string | number, StatementSync>();

function statement(key: string | number, sql: () => string): StatementSync {
  let s = statements.get(key);
  if (!s) statements.set(key, (s = db.prepare(sql())));
  return s;
}

const insertFor = (rows: number) => statement(rows, () =>
  `insert into audit_events (${COLUMNS.join(', ')}) values ${Array.from({ length: rows }, () => `(${COLUMNS.map(() => '?').join(', ')})`).join(', ')}`);

type Param = string | number | null;

/** Appends the batches in one transaction; returns the last seq. */
function append(batches: Array<[number, EventRow[]]>): number {
  statement('begin', () => 'begin immediate').run();
  try {
    const head = statement('head', () => 'select seq, hash from audit_head where id = 1').get() as { seq: number; hash: string } | undefined;
    if (!head) throw new Error('the audit head row is missing');
    let seq = head.seq;
    let prevHash = head.hash;
    for (const [time, rows] of batches) {
      for (let start = 0; start < rows.length; start += CHUNK) {
        const chunk = rows.slice(start, start + CHUNK);
        const params: Param[] = [];
        for (const [tenantId, actorType, actorId, action, resourceType, resourceId, resourceName, environment, secretVersion, outcome, reason, context] of chunk) {
          const event: Omit<AuditEvent, 'hash' | 'prevHash'> = {
            seq: ++seq, id: timeOrderedId(time), time, tenantId, actor: { type: actorType, id: actorId }, action,
            resource: { type: resourceType, id: resourceId, name: resourceName }, environment, secretVersion, outcome, reason, context,
          };
          const hash = chainHash(prevHash, event);
          params.push(seq, event.id, time, tenantId, actorType, actorId, action, resourceType, resourceId,
            resourceName, environment, secretVersion, outcome, reason, JSON.stringify(context), prevHash, hash);
          prevHash = hash;
        }
        insertFor(chunk.length).run(...params);
      }
    }
    statement('move', () => 'update audit_head set seq = ?, hash = ? where id = 1').run(seq, prevHash);
    statement('commit', () => 'commit').run();
    return seq;
  } catch (err) {
    if (db.isTransaction) db.exec('rollback');
    // A statement may have been invalidated (table renamed, schema changed): prepare afresh next time.
    statements = new Map();
    throw err;
  }
}

/**
 * The WAL file, for fdatasync. It exists once this connection has committed, and SQLite removes
 * it only when the last connection closes; this one stays open for the thread's life. Checked
 * against the path at every checkpoint round all the same, and reopened if it ever differs.
 */
const walPath = `${path}-wal`;
let walFd: number | null = null;
function wal(): number {
  walFd ??= openSync(walPath, 'r+');
  return walFd;
}

function checkpointNow(): void {
  // PASSIVE: copies what no reader still needs and never waits; a failure only means "later".
  try {
    db.exec('PRAGMA wal_checkpoint(PASSIVE)');
    if (walFd !== null && fstatSync(walFd).ino !== statSync(walPath).ino) {
      closeSync(walFd);
      walFd = null;
    }
  } catch {
    // The next round tries again; the main connection checkpoints on its own commits too.
  }
}

/** One round: every batch that has arrived, appended, synced and acknowledged. False once asked to close. */
function round(requests: AppendRequest[]): boolean {
  const ids: number[] = [];
  const encoded: string[] = [];
  let closing = false;
  for (const r of requests) {
    if ('close' in r) closing = true;
    else {
      ids.push(r.id);
      encoded.push(r.batch);
    }
  }
  if (ids.length > 0) {
    let reply: AppendReply;
    try {
      const lastSeq = append(encoded.map((batch) => JSON.parse(batch) as [number, EventRow[]]));
      try {
        fdatasyncSync(wal());
        reply = { ids, lastSeq };
      } catch (err) {
        reply = { ids, error: `fdatasync of the WAL failed: ${(err as Error).message}` };
      }
    } catch (err) {
      reply = { ids, error: err instanceof Error ? err.message : String(err) };
    }
    port.postMessage(reply);
    if (++sinceCheckpoint >= CHECKPOINT_EVERY) {
      sinceCheckpoint = 0;
      checkpointNow();
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
db.close();
if (walFd !== null) closeSync(walFd);
port.close();
