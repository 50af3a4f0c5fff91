import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../../storage/database.ts';
import type { Database } from '../../storage/schema.ts';

/**
 * The advisory lock's key: a hash of the schema and the leadership's name. Advisory locks are per
 * database, not per schema, so a fixed key would make deployments that share a database (each in
 * its own schema) wait on each other's leader; every node of one deployment computes the same key.
 */
const advisoryKey = (name: string) => sql<string>`hashtextextended('keyhold/leadership/' || current_schema() || '/' || ${name}, 0)`;

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
  let held: { release: () => void; done: Promise<void>; alive: () => Promise<boolean> } | null = null;

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

  /** Pins one pooled connection for as long as the lock is held; resolves false if the lock is taken. */
  async function advisory(): Promise<boolean> {
    if (held) {
      if (await held.alive()) return true;
      // The pinned connection died (a failover, a terminated backend) and the lock went with it: ask afresh.
      const h = held;
      held = null;
      h.release();
      await h.done.catch(() => {});
    }
    return new Promise<boolean>((resolve, reject) => {
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      const done: Promise<void> = db.connection().execute(async (conn) => {
        const got = (await sql<{ ok: boolean }>`select pg_try_advisory_lock(${advisoryKey(name)}) as ok`.execute(conn)).rows[0]?.ok === true;
        if (!got) return resolve(false);
        held = { release, done, alive: () => sql`select 1`.execute(conn).then(() => true, () => false) };
        resolve(true);
        await released;
        await sql`select pg_advisory_unlock(${advisoryKey(name)})`.execute(conn).catch(() => {});
      }).catch((err: unknown) => {
        // The pinned connection died: leadership is gone with it; the next tick asks again.
        held = null;
        reject(err);
      });
    });
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
        h.release();
        await h.done;
      }
      await db.updateTable('leases').set({ until: 0 }).where('name', '=', name).where('owner', '=', owner).execute();
    },
  };
}
