import type { Kysely } from 'kysely';
import type { DialectName } from '../../storage/database.ts';
import { advisoryKey, trySessionLock, type SessionLock } from '../../storage/postgres/session-lock.ts';
import type { Database } from '../../storage/schema.ts';

export interface Leadership {
  /** True while this node leads; renews (or tries to take) leadership first. */
  acquire(): Promise<boolean>;
  release(): Promise<void>;
  /** How long a lease runs unless renewed. */
  readonly leaseMs: number;
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
    leaseMs,
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

/**
 * Keeps the lead while a scheduler pass runs: a pass may outlast the lease (a hung source holds a run for a step
 * deadline, a minute by default), and a lease left to run out mid-pass would let another node lead and start a pass of
 * its own beside this one, doubling the load on sources. Renews every third of the lease, like a rotation's lease.
 * `leading()` renews now and answers whether this node still leads: once the lead is lost (this node stalled past its
 * lease and another took it, or the advisory lock's connection died and another node took the lock) it stays lost for
 * the pass, and the pass starts nothing more; the next pass asks afresh.
 * @example
 * const lead = keepLead(leadership, onError);
 * try { for (const run of runs) if (await lead.leading()) await run(); } finally { lead.stop(); }
 */
export function keepLead(leadership: Leadership, onError: (err: unknown) => void) {
  let lost = false;
  // One renewal at a time, each begun after the last ended (two at once could pin two connections on PostgreSQL), so
  // an answer is never one asked before the caller did.
  let last: Promise<unknown> = Promise.resolve();
  const renew = (): Promise<boolean> => {
    const next = last.then(async () => {
      if (lost) return false;
      try {
        lost = !(await leadership.acquire());
      } catch (err) {
        // A database that does not answer: the lead is not known lost, and any claim this node makes fails meanwhile.
        onError(err);
      }
      return !lost;
    });
    last = next;
    return next;
  };
  const beat = setInterval(() => void (lost || renew()), Math.max(50, Math.floor(leadership.leaseMs / 3)));
  beat.unref();
  return {
    leading: (): Promise<boolean> => renew(),
    stop: (): void => clearInterval(beat),
  };
}
