import type { Kysely, Transaction } from 'kysely';
import type { Clock } from '../../platform/clock.ts';
import type { DialectName } from '../../storage/database.ts';
import { advisoryKey, trySessionLock } from '../../storage/postgres/session-lock.ts';
import type { Database } from '../../storage/schema.ts';
import type { AuditInput, AuditLog } from '../audit/audit-log.ts';

/** What holds an attempt for its process: released once its end is recorded, or when the process dies. */
export interface AttemptClaim {
  release(): Promise<void>;
}

/** At most this many leftovers are closed per pass; the next pass takes the rest. */
const ABANDONED_PER_PASS = 100;

const NO_LOCK: AttemptClaim = { release: async () => {} };

/**
 * Which generate-root attempts the audit trail shows open (table `root_generation_attempts`): a row
 * is written in the transaction of an attempt's start event and removed in the transaction of the one
 * event that ends it, so each attempt's trail is closed exactly once, whoever closes it and however
 * many try. An attempt lives in one process's memory; a row no live process holds (it crashed, or
 * could not record the end) is closed by any process that finds it. On PostgreSQL the holder keeps a
 * session advisory lock named by the nonce, which the server drops when that process dies: whoever
 * can take the lock knows the attempt is nobody's. On SQLite one process serves a file
 * (docs/operations.md), so a row that process does not hold is nobody's.
 */
export function createRootGenerationLedger(deps: { db: Kysely<Database>; dialect: DialectName; clock: Clock; audit: Pick<AuditLog, 'appendInTx'> }) {
  const { db, dialect, clock, audit } = deps;
  const lock = (nonce: string) => (dialect === 'postgres' ? trySessionLock(db, advisoryKey('generate-root', nonce)) : Promise.resolve(NO_LOCK));

  /** Removes the attempt's row in `trx`: false if it was gone, closed by someone else. */
  async function remove(trx: Transaction<Database>, nonce: string): Promise<boolean> {
    const res = await trx.deleteFrom('root_generation_attempts').where('nonce', '=', nonce).executeTakeFirst();
    return Number(res.numDeletedRows) === 1;
  }

  /** Ends the attempt's trail with `event`, in one transaction with its row's removal; false (nothing written) if it was already ended. */
  async function close(nonce: string, event: AuditInput): Promise<boolean> {
    return db.transaction().execute(async (trx) => {
      if (!(await remove(trx, nonce))) return false;
      await audit.appendInTx(trx, [event]);
      return true;
    });
  }

  return {
    remove,
    close,

    /**
     * Whether the attempt is still open, read in `trx` (its primary key). On PostgreSQL FOR SHARE: an end under way is
     * waited for, then seen, and none removes the row before `trx` commits, so what `trx` appends comes before any end.
     */
    async isOpen(trx: Transaction<Database>, nonce: string): Promise<boolean> {
      const row = trx.selectFrom('root_generation_attempts').select('nonce').where('nonce', '=', nonce);
      return (await (dialect === 'postgres' ? row.forShare() : row).executeTakeFirst()) !== undefined;
    },

    /** Claims `nonce` for this process and writes its row with the start event, in one transaction. */
    async open(nonce: string, start: AuditInput): Promise<AttemptClaim> {
      // The lock first: from the moment the row exists, another node must see it held.
      const claim = await lock(nonce);
      // A nonce is a fresh UUID: another holder of its lock is not a thing that happens.
      if (!claim) throw new Error('generate-root: the lock of a new nonce is held elsewhere');
      try {
        await db.transaction().execute(async (trx) => {
          await trx.insertInto('root_generation_attempts').values({ nonce, started_at: clock.now() }).execute();
          await audit.appendInTx(trx, [start]);
        });
        return claim;
      } catch (err) {
        await claim.release().catch(() => {});
        throw err;
      }
    },

    /**
     * Closes every attempt left open that no live process holds (other than those `mine` says this process
     * holds, asked as each row comes: one may start meanwhile), each with `end(nonce)`; how many it closed. One indexed read of a
     * table that holds an attempt per live process at most, plus leftovers. Several nodes may run it at once:
     * the lock, and the row's removal in the event's transaction, let one of them close each.
     */
    async closeAbandoned(mine: (nonce: string) => boolean, end: (nonce: string) => AuditInput): Promise<number> {
      const rows = await db.selectFrom('root_generation_attempts').select('nonce').orderBy('nonce').limit(ABANDONED_PER_PASS).execute();
      let closed = 0;
      for (const { nonce } of rows) {
        if (mine(nonce)) continue;
        const claim = await lock(nonce);
        if (!claim) continue; // a live process holds it
        try {
          if (await close(nonce, end(nonce))) closed++;
        } finally {
          await claim.release().catch(() => {});
        }
      }
      return closed;
    },
  };
}

export type RootGenerationLedger = ReturnType<typeof createRootGenerationLedger>;
