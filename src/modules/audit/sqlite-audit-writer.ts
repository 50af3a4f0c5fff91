import { closeSync, fdatasyncSync, fstatSync, openSync, statSync } from 'node:fs';
import type { KeyObject } from 'node:crypto';
import type { DatabaseSync, StatementSync } from 'node:sqlite';
import { chainHash, type ChainSegment } from './chain.ts';
import { commitMac } from './event-mac.ts';
import type { AuditEvent } from './event.ts';
import { timeOrderedId } from '../../platform/ids.ts';
import type { EventRow } from './sqlite-appender-protocol.ts';

const COLUMNS = ['seq', 'id', 'time', 'tenant_id', 'actor_type', 'actor_id', 'action', 'resource_type', 'resource_id',
  'resource_name', 'environment', 'secret_version', 'outcome', 'reason', 'context', 'prev_hash', 'hash', 'mac'] as const;
const MAC = COLUMNS.indexOf('mac');
/** Rows per INSERT statement: 18 columns x 64 rows stays far below SQLite's variable limit. */
const CHUNK = 64;

type Param = string | number | null;

/** A batch as the worker received it (time, rows) and the event MAC key it is written under (null while sealed). */
export type KeyedBatch = [number, EventRow[], KeyObject | null];

/**
 * Appends audit batches to the chain over a connection of its own (the appender's worker thread
 * owns one): one transaction per call, then `sync` makes it durable. See sqlite-appender-worker.ts
 * for why the sync is separate from the COMMIT.
 */
export function createSqliteAuditWriter(db: DatabaseSync, path: string) {
  db.exec('PRAGMA synchronous = NORMAL');
  // Checkpoints run between transactions (`checkpoint`), not inside a COMMIT.
  db.exec('PRAGMA wal_autocheckpoint = 0');
  let statements = new Map<string | number, StatementSync>();

  function statement(key: string | number, sql: () => string): StatementSync {
    let s = statements.get(key);
    if (!s) statements.set(key, (s = db.prepare(sql())));
    return s;
  }

  const insertFor = (rows: number) => statement(rows, () =>
    `insert into audit_events (${COLUMNS.join(', ')}) values ${Array.from({ length: rows }, () => `(${COLUMNS.map(() => '?').join(', ')})`).join(', ')}`);

  /** Appends the batches in one transaction; returns what it appended. */
  function append(batches: KeyedBatch[]): ChainSegment {
    statement('begin', () => 'begin immediate').run();
    try {
      const head = statement('head', () => 'select seq, hash from audit_head where id = 1').get() as { seq: number; hash: string } | undefined;
      if (!head) throw new Error('the audit head row is missing');
      let seq = head.seq;
      let prevHash = head.hash;
      const values: Param[][] = [];
      // Batches written under one key form a run; its last event carries the run's MAC (event-mac.ts).
      let run: { key: KeyObject | null; first: number } = { key: null, first: seq + 1 };
      const closeRun = () => {
        if (run.key && seq >= run.first) values[values.length - 1]![MAC] = commitMac(run.key, run.first, seq, prevHash);
      };
      for (const [time, rows, key] of batches) {
        if (key !== run.key) {
          closeRun();
          run = { key, first: seq + 1 };
        }
        for (const [tenantId, actorType, actorId, action, resourceType, resourceId, resourceName, environment, secretVersion, outcome, reason, context] of rows) {
          const event: Omit<AuditEvent, 'hash' | 'prevHash'> = {
            seq: ++seq, id: timeOrderedId(time), time, tenantId, actor: { type: actorType, id: actorId }, action,
            resource: { type: resourceType, id: resourceId, name: resourceName }, environment, secretVersion, outcome, reason, context,
          };
          const hash = chainHash(prevHash, event);
          values.push([seq, event.id, time, tenantId, actorType, actorId, action, resourceType, resourceId,
            resourceName, environment, secretVersion, outcome, reason, JSON.stringify(context), prevHash, hash, null]);
          prevHash = hash;
        }
      }
      closeRun();
      for (let start = 0; start < values.length; start += CHUNK) {
        const chunk = values.slice(start, start + CHUNK);
        insertFor(chunk.length).run(...chunk.flat());
      }
      statement('move', () => 'update audit_head set seq = ?, hash = ? where id = 1').run(seq, prevHash);
      statement('commit', () => 'commit').run();
      return { first: head.seq + 1, prevHash: head.hash, last: seq, lastHash: prevHash };
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

  return {
    append,
    /** Makes every committed transaction durable (fdatasync of the WAL). */
    sync(): void {
      fdatasyncSync(wal());
    },
    checkpoint: checkpointNow,
    close(): void {
      db.close();
      if (walFd !== null) closeSync(walFd);
    },
  };
}

export type SqliteAuditWriter = ReturnType<typeof createSqliteAuditWriter>;
