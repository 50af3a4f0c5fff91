import type { KeyObject } from 'node:crypto';
import { createAuditLog, type AuditInput } from '../../src/modules/audit/audit-log.ts';
import { createCheckpointer } from '../../src/modules/audit/checkpoints.ts';
import { createEventMacKeys } from '../../src/modules/audit/event-mac.ts';
import { createSqliteAppender } from '../../src/modules/audit/sqlite-appender.ts';
import { createSealManager } from '../../src/modules/system/seal-manager.ts';
import { createSystemMetaRepository } from '../../src/modules/system/system-meta-repository.ts';
import { createManualClock } from '../../src/platform/clock.ts';
import type { Storage, StorageOptions } from '../../src/storage/database.ts';
import type { AuditCheckpointsTable } from '../../src/storage/schema.ts';
import { startWorkerNode } from './worker-calls.ts';

/** What a second server node does to the audit chain: its own connections, appender, MAC and signing keys. */
export interface AuditNode {
  record(events: AuditInput[]): Promise<void>;
  /** Appends `events` in a transaction of this node's own. */
  appendInTx(events: AuditInput[]): Promise<void>;
  checkpoint(): Promise<AuditCheckpointsTable | null>;
  highestSigned(): Promise<number>;
  tampered(): Promise<boolean>;
  verify(opts: { trustedPublicKey: string; checkpointFloor: number; macKey: KeyObject }): Promise<{ ok: boolean }>;
  close(): Promise<void>;
}

/** How node B unseals (the shares) and its clock's time. */
export interface AuditNodeOptions {
  dataDir: string;
  shares: string[];
  now: number;
}

/**
 * Node B, in this thread: opened and unsealed as a server would, from the shares (no unseal event).
 * Only where the database driver is asynchronous (PostgreSQL): see `startAuditNodeWorker`.
 */
export async function openAuditNode(storage: Storage, opts: AuditNodeOptions): Promise<AuditNode> {
  const seal = createSealManager({ meta: createSystemMetaRepository(storage.db), dataDir: opts.dataDir });
  for (const share of opts.shares) await seal.submitShare(share);
  if (!seal.openStaged()) throw new Error('node B did not unseal with the shares it was given');
  const clock = createManualClock(opts.now);
  const macKeys = createEventMacKeys(seal);
  const appender = storage.sqlitePath ? createSqliteAppender({ path: storage.sqlitePath }) : undefined;
  const audit = createAuditLog({ db: storage.db, clock, macKeys, afterCommit: storage.afterCommit, ...(appender ? { appender } : {}) });
  const checkpoints = createCheckpointer({ db: storage.db, root: seal, clock, audit, macKeys });
  return {
    record: (events) => audit.record(events),
    appendInTx: async (events) => {
      await storage.db.transaction().execute((trx) => audit.appendInTx(trx, events));
    },
    checkpoint: () => checkpoints.checkpoint(),
    highestSigned: async () => checkpoints.highestSigned(),
    tampered: async () => checkpoints.tampered(),
    verify: (verifyOpts) => audit.verify(verifyOpts),
    async close() {
      seal.seal();
      await appender?.close();
      await storage.close();
    },
  };
}

/**
 * Node B in a worker thread of its own, as a second server process would run (worker-calls.ts).
 * node:sqlite is synchronous: with both nodes' connections in one thread, a node waiting in SQLite's
 * busy handler for the other's write lock blocks the only thread, the holder never commits, and the
 * wait ends in "database is locked".
 */
export async function startAuditNodeWorker(storage: StorageOptions, opts: AuditNodeOptions): Promise<AuditNode> {
  const node = await startWorkerNode(new URL('./audit-node-worker.ts', import.meta.url), { storage, opts });
  return {
    record: (events) => node.call('record', events),
    appendInTx: (events) => node.call('appendInTx', events),
    checkpoint: () => node.call('checkpoint'),
    highestSigned: () => node.call('highestSigned'),
    tampered: () => node.call('tampered'),
    verify: (verifyOpts) => node.call('verify', verifyOpts),
    close: () => node.close(),
  };
}
