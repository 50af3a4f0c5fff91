import { identitySettings } from '../../src/config/config.ts';
import { createTokenService } from '../../src/modules/auth/token-service.ts';
import { createCredentialSweep, type SweepResult } from '../../src/modules/identity/credential-sweep.ts';
import { createSessionService } from '../../src/modules/identity/users/session-service.ts';
import type { Clock } from '../../src/platform/clock.ts';
import type { Storage, StorageOptions } from '../../src/storage/database.ts';
import { startWorkerNode } from './worker-calls.ts';

/** A server's credential sweep over its own storage (sessions and machine tokens, the default grace). */
export function credentialSweepOver(storage: Storage, clock: Clock) {
  return createCredentialSweep({
    tables: {
      sessions: createSessionService({ db: storage.db, dialect: storage.dialect, clock, settings: identitySettings() }),
      tokens: createTokenService({ db: storage.db, dialect: storage.dialect, clock }),
    },
    clock, graceMs: identitySettings().credentialGraceMs,
  });
}

export interface SweepNode {
  sweep(batchSize: number): Promise<SweepResult>;
  close(): Promise<void>;
}

/**
 * Another server sweeping the same SQLite file, in a worker thread of its own as a second process
 * would (worker-calls.ts): in one thread the two never overlap (node:sqlite runs each statement to the
 * end), and a transaction one held across an await would leave the other's busy wait blocking both.
 * Resolves once its storage is open. `now`: its clock, fixed.
 */
export async function startSweepNodeWorker(storage: StorageOptions, now: number): Promise<SweepNode> {
  const node = await startWorkerNode(new URL('./sweep-node-worker.ts', import.meta.url), { storage, now });
  return { sweep: (batchSize) => node.call('sweep', batchSize), close: () => node.close() };
}

/** Another server sweeping in this thread: only where the driver waits without blocking it (PostgreSQL). Closing closes `storage`. */
export function sweepNodeHere(storage: Storage, clock: Clock): SweepNode {
  const sweep = credentialSweepOver(storage, clock);
  return { sweep: (batchSize) => sweep.sweep(batchSize), close: () => storage.close() };
}
