import { closeSync, fdatasync, fstatSync, openSync, statSync } from 'node:fs';
import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';
import { chainHash } from './chain.ts';
import type { AuditEvent } from './event.ts';
import type { AppendReply, AppendRequest, PendingEvent } from './sqlite-appender.ts';

/**
 * The SQLite audit appender's thread: its own connection to the database file, one transaction
 * per batch (BEGIN IMMEDIATE: the head is read under the write lock, so the chain has one order
 * whoever else appends), sequence numbers and hashes assigned here, rows inserted with prepared
 * multi-row statements.
 *
 * Durability is synchronous=FULL's, with the fsync moved out of the write lock: COMMIT runs with
 * synchronous=NORMAL (WAL frames written, not yet synced), then the WAL file is fdatasync'ed
 * asynchronously, and a batch is acknowledged only after an fdatasync that began after its COMMIT
 * returned. That is the sync FULL does inside COMMIT (WAL mode syncs only the WAL on commit);
 * NORMAL still syncs the WAL before and the database after every checkpoint, so frames are never
 * dropped before they are durable in the database file. One fdatasync covers every batch committed
 * before it began, and the write lock is free while it runs: the server's own writers do not wait
 * for the disk on the audit log's behalf.
 */
const COLUMNS = ['seq', 'id', 'time', 'tenant_id', 'actor_type', 'actor_id', 'action', 'resource_type', 'resource_id',
  'resource_name', 'environment', 'secret_version', 'outcome', 'reason', 'context', 'prev_hash', 'hash'] as const;
/** Rows per INSERT statement: 17 columns x 64 rows stays far below SQLite's variable limit. */
const CHUNK = 64;

const { path } = workerData as { path: string };
const db = new DatabaseSync(path, { timeout: 5000 });
db.exec('PRAGMA synchronous = NORMAL');
// Checkpoints run between batches (below), not inside a batch's COMMIT.
db.exec('PRAGMA wal_autocheckpoint = 0');
const CHECKPOINT_EVERY = 100; // batches
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

function append(pending: PendingEvent[]): number {
  statement('begin', () => 'begin immediate').run();
  try {
    const head = statement('head', () => 'select seq, hash from audit_head where id = 1').get() as { seq: number; hash: string } | undefined;
    if (!head) throw new Error('the audit head row is missing');
    let seq = head.seq;
    let prevHash = head.hash;
    for (let start = 0; start < pending.length; start += CHUNK) {
      const chunk = pending.slice(start, start + CHUNK);
      const params: Param[] = [];
      for (const p of chunk) {
        const base: Omit<AuditEvent, 'hash' | 'prevHash'> = { ...p, seq: ++seq };
        const hash = chainHash(prevHash, base);
        params.push(seq, p.id, p.time, p.tenantId, p.actor.type, p.actor.id, p.action, p.resource.type, p.resource.id,
          p.resource.name, p.environment, p.secretVersion, p.outcome, p.reason, JSON.stringify(p.context), prevHash, hash);
        prevHash = hash;
      }
      insertFor(chunk.length).run(...params);
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

/** Committed, not yet synced; and whether an fdatasync is running. */
let unsynced: Array<{ id: number; lastSeq: number }> = [];
let syncing = false;
let closing = false;

function syncAndReply(): void {
  if (syncing || unsynced.length === 0) return;
  syncing = true;
  const covered = unsynced;
  unsynced = [];
  fdatasync(wal(), (err) => {
    syncing = false;
    for (const c of covered) parentPort!.postMessage((err ? { id: c.id, error: `fdatasync of the WAL failed: ${err.message}` } : c) satisfies AppendReply);
    syncAndReply();
    if (closing && !syncing) shutdown();
  });
}

function shutdown(): void {
  db.close();
  parentPort!.close();
}

parentPort!.on('message', (msg: AppendRequest | { close: true }) => {
  if ('close' in msg) {
    closing = true;
    if (!syncing && unsynced.length === 0) shutdown();
    return;
  }
  try {
    unsynced.push({ id: msg.id, lastSeq: append(JSON.parse(msg.events) as PendingEvent[]) });
  } catch (err) {
    parentPort!.postMessage({ id: msg.id, error: err instanceof Error ? err.message : String(err) } satisfies AppendReply);
  }
  syncAndReply();
  if (++sinceCheckpoint >= CHECKPOINT_EVERY) {
    sinceCheckpoint = 0;
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
});
