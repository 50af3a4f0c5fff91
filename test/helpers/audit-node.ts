import type { KeyObject } from 'node:crypto';
import { Worker } from 'node:worker_threads';
import { createAuditLog, type AuditInput } from '../../src/modules/audit/audit-log.ts';
import { createCheckpointer } from '../../src/modules/audit/checkpoints.ts';
import { createEventMacKeys } from '../../src/modules/audit/event-mac.ts';
import { createSqliteAppender } from '../../src/modules/audit/sqlite-appender.ts';
import { createSealManager } from '../../src/modules/system/seal-manager.ts';
import { createSystemMetaRepository } from '../../src/modules/system/system-meta-repository.ts';
import { createManualClock } from '../../src/platform/clock.ts';
import type { Storage, StorageOptions } from '../../src/storage/database.ts';
import type { AuditCheckpointsTable } from '../../src/storage/schema.ts';

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
  const audit = createAuditLog({ db: storage.db, clock, macKeys, ...(appender ? { appender } : {}) });
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

type Call = { [K in keyof AuditNode]: { id: number; op: K; args: Parameters<AuditNode[K]> } }[keyof AuditNode];
export type AuditNodeRequest = Call;
export type AuditNodeReply = { id: number; value?: unknown; error?: { message: string; code?: string } };

/**
 * Node B in a worker thread of its own, as a second server process would run. node:sqlite is
 * synchronous: with both nodes' connections in one thread, a node waiting in SQLite's busy handler
 * for the other's write lock blocks the only thread, the holder never commits, and the wait ends
 * in "database is locked". Calls are sent as messages; each answers with its result or its error.
 */
export async function startAuditNodeWorker(storage: StorageOptions, opts: AuditNodeOptions): Promise<AuditNode> {
  const worker = new Worker(new URL('./audit-node-worker.ts', import.meta.url), { workerData: { storage, opts } });
  const waiting = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  let nextId = 1;
  let stopped: Error | null = null;
  const failAll = (err: Error) => {
    stopped ??= err;
    for (const w of waiting.values()) w.reject(err);
    waiting.clear();
  };
  worker.on('message', (reply: AuditNodeReply) => {
    const w = waiting.get(reply.id);
    if (!w) return;
    waiting.delete(reply.id);
    if (reply.error) w.reject(Object.assign(new Error(`node B: ${reply.error.message}`), { code: reply.error.code }));
    else w.resolve(reply.value);
  });
  worker.on('error', failAll);
  worker.on('exit', (code) => failAll(new Error(`node B's worker exited (code ${code})`)));
  const call = <K extends keyof AuditNode>(op: K, ...args: Parameters<AuditNode[K]>): Promise<Awaited<ReturnType<AuditNode[K]>>> =>
    new Promise((resolve, reject) => {
      if (stopped) return reject(stopped);
      const id = nextId++;
      waiting.set(id, { resolve: resolve as (value: unknown) => void, reject });
      worker.postMessage({ id, op, args } as AuditNodeRequest);
    });
  await call('highestSigned'); // opened and unsealed, or the reason it did not
  return {
    record: (events) => call('record', events),
    appendInTx: (events) => call('appendInTx', events),
    checkpoint: () => call('checkpoint'),
    highestSigned: () => call('highestSigned'),
    tampered: () => call('tampered'),
    verify: (verifyOpts) => call('verify', verifyOpts),
    async close() {
      if (stopped) return;
      const exited = new Promise<void>((resolve) => worker.once('exit', () => resolve()));
      await call('close');
      await exited;
    },
  };
}
