import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { parentPort, workerData } from 'node:worker_threads';
import { chainHash } from './chain.ts';
import type { AuditEvent } from './event.ts';
import type { AppendReply, AppendRequest, PendingEvent } from './sqlite-appender.ts';

/**
 * The SQLite audit appender's thread: its own connection to the database file, one transaction
 * per batch (BEGIN IMMEDIATE: the head is read under the write lock, so the chain has one order
 * whoever else appends), sequence numbers and hashes assigned here, rows inserted with prepared
 * multi-row statements, COMMIT with synchronous=FULL (the WAL is fsynced) before the reply.
 */
const COLUMNS = ['seq', 'id', 'time', 'tenant_id', 'actor_type', 'actor_id', 'action', 'resource_type', 'resource_id',
  'resource_name', 'environment', 'secret_version', 'outcome', 'reason', 'context', 'prev_hash', 'hash'] as const;
/** Rows per INSERT statement: 17 columns x 64 rows stays far below SQLite's variable limit. */
const CHUNK = 64;

const { path } = workerData as { path: string };
const db = new DatabaseSync(path, { timeout: 5000 });
db.exec('PRAGMA synchronous = FULL');
// Checkpoints run after a batch's reply has gone (below), not inside its COMMIT.
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

parentPort!.on('message', (msg: AppendRequest | { close: true }) => {
  if ('close' in msg) {
    db.close();
    parentPort!.close();
    return;
  }
  let reply: AppendReply;
  try {
    reply = { id: msg.id, lastSeq: append(JSON.parse(msg.events) as PendingEvent[]) };
  } catch (err) {
    reply = { id: msg.id, error: err instanceof Error ? err.message : String(err) };
  }
  parentPort!.postMessage(reply);
  if (++sinceCheckpoint >= CHECKPOINT_EVERY) {
    sinceCheckpoint = 0;
    // PASSIVE: copies what no reader still needs and never waits; a failure only means "later".
    try {
      db.exec('PRAGMA wal_checkpoint(PASSIVE)');
    } catch {
      // The next round tries again; the main connection checkpoints on its own commits too.
    }
  }
});
