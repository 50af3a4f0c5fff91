import type { Kysely } from 'kysely';
import type { DialectName } from '../../storage/database.ts';
import { advisoryKey, trySessionLock, type SessionLock } from '../../storage/postgres/session-lock.ts';
import type { Database } from '../../storage/schema.ts';

export interface Leadership {
  /** True while this node leads; renews (or tries to take) leadership first. */
  acquire(): Promise<boolean>;
  release(): Promise<void>;
}

/**
 * One scheduler leader at a time (SPEC §13). A lease row taken and renewed with one guarded
 * UPDATE works on both dialects; on PostgreSQL the leader also holds a session advisory lock on a
 * connection of its own, which the server drops the moment that node dies.
 */
export function createLeadership(deps: { db: Kysely<Database>; dialect: DialectName; name: string; owner: string; leaseMs: number; now: () => number }): Leadership {
  const { db, name, owner, leaseMs, now } = deps;
  let held: SessionLock | null = null;

  /**
   * Takes or renews the lease row. `authoritative`: this node holds the advisory lock, which no other node can while
   * it does, so a lease left by another node is stale whatever its `until` says (a dead node whose clock ran ahead
   * would otherwise keep the lead from every live one until its wrong time came).
   */
  async function lease(authoritative: boolean): Promise<boolean> {
    const t = now();
    await db.insertInto('leases').values({ name, owner, until: t + leaseMs }).onConflict((oc) => oc.column('name').doNothing()).execute();
    const res = await db.updateTable('leases').set({ owner, until: t + leaseMs }).where('name', '=', name)
      .$if(!authoritative, (q) => q.where((eb) => eb.or([eb('owner', '=', owner), eb('until', '<', t)]))).executeTakeFirst();
    return Number(res.numUpdatedRows) === 1;
  }

  /** Pins one pooled connection for as long as the lock is held; false if the lock is taken. */
  async function advisory(): Promise<boolean> {
    if (held) {
      if (await held.alive()) return true;
      // The pinned connection died (a failover, a terminated backend) and the lock went with it: ask afresh.
      const h = held;
      held = null;
      await h.release().catch(() => {});
    }
    held = await trySessionLock(db, advisoryKey('leadership', name));
    return held !== null;
  }

  return {
    async acquire() {
      if (deps.dialect === 'postgres') return (await advisory()) && lease(true);
      return lease(false);
    },
    async release() {
      if (held) {
        const h = held;
        held = null;
        // A lock whose connection died went with it.
        await h.release().catch(() => {});
      }
      await db.updateTable('leases').set({ until: 0 }).where('name', '=', name).where('owner', '=', owner).execute();
    },
  };
}
