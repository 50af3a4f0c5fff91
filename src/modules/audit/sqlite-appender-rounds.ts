import { createSecretKey, type KeyObject } from 'node:crypto';
import type { AppendReply, AppendRequest, EventRow } from './sqlite-appender-protocol.ts';
import type { KeyedBatch, SqliteAuditWriter } from './sqlite-audit-writer.ts';

const CHECKPOINT_EVERY = 100; // transactions

/**
 * The appender worker's rounds (sqlite-appender-worker.ts), apart from its thread so they can be
 * tested with a fake writer: every batch that has arrived, appended in one transaction, synced and
 * acknowledged.
 *
 * A failed fdatasync is final. Linux may drop the dirty pages of a failed writeback and report
 * the error once, so a later sync can succeed over frames that never reached the disk; SQLite's
 * WAL recovery then stops at the first missing frame and every event after it, acknowledged or
 * not, is lost in a crash. So after one failure nothing more is written or acknowledged: every
 * later append fails (the log fails closed) until the server is restarted, as PostgreSQL panics
 * rather than retry an fsync.
 */
export function createAppendRounds(writer: Pick<SqliteAuditWriter, 'append' | 'sync' | 'checkpoint'>, post: (reply: AppendReply) => void) {
  let sinceCheckpoint = 0;
  /** The event MAC key for the batches that follow (the event loop sends it when it changes). */
  let macKey: KeyObject | null = null;
  /** Set by a failed fdatasync: why nothing more may be acknowledged. */
  let broken: string | null = null;

  function write(batches: Array<{ batch: string; key: KeyObject | null }>, ids: number[]): AppendReply {
    if (broken !== null) return { ids, error: broken };
    let segment;
    try {
      segment = writer.append(batches.map(({ batch, key }): KeyedBatch => [...(JSON.parse(batch) as [number, EventRow[]]), key]));
    } catch (err) {
      return { ids, error: err instanceof Error ? err.message : String(err) };
    }
    try {
      writer.sync();
    } catch (err) {
      broken = `an fdatasync of the audit WAL failed (${(err as Error).message}); nothing more is acknowledged until Keyhold is restarted`;
      return { ids, error: broken };
    }
    return { ids, segment };
  }

  /** One round; false once asked to close. */
  return function round(requests: AppendRequest[]): boolean {
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
      post(write(batches, ids));
      if (broken === null && ++sinceCheckpoint >= CHECKPOINT_EVERY) {
        sinceCheckpoint = 0;
        writer.checkpoint();
      }
    }
    return !closing;
  };
}
