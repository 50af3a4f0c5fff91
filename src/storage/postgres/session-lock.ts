import { sql, type Kysely, type RawBuilder } from 'kysely';

/**
 * The key of a PostgreSQL advisory lock: a hash of the schema, a scope and a name. Advisory locks are
 * per database, not per schema, so a fixed key would make deployments that share a database (each in
 * its own schema) wait on each other; every node of one deployment computes the same key.
 */
export const advisoryKey = (scope: string, name: string) =>
  sql<string>`hashtextextended(${`keyhold/${scope}/`}::text || current_schema() || '/' || ${name}, 0)`;

/** A session advisory lock held on a pooled connection pinned for as long as it is held. */
export interface SessionLock {
  /** Whether the pinned connection still answers: the lock goes with it. */
  alive(): Promise<boolean>;
  /** Unlocks and gives the connection back; rejects if the connection had died (the lock went with it). */
  release(): Promise<void>;
}

/**
 * Takes a session advisory lock on `key` (PostgreSQL only), or null if another session holds it. The
 * server drops it the moment the holder's connection ends, so a process that dies cannot keep it:
 * whoever can take a lock a live process holds while it works knows that work is nobody's.
 */
export function trySessionLock(db: Kysely<any>, key: RawBuilder<string>): Promise<SessionLock | null> {
  return new Promise<SessionLock | null>((resolve, reject) => {
    let unlock!: () => void;
    const unlocked = new Promise<void>((r) => (unlock = r));
    let held = false;
    const done: Promise<void> = db.connection().execute(async (conn) => {
      const got = (await sql<{ ok: boolean }>`select pg_try_advisory_lock(${key}) as ok`.execute(conn)).rows[0]?.ok === true;
      if (!got) return resolve(null);
      held = true;
      resolve({
        alive: () => sql`select 1`.execute(conn).then(() => true, () => false),
        release: () => {
          unlock();
          return done;
        },
      });
      await unlocked;
      await sql`select pg_advisory_unlock(${key})`.execute(conn).catch(() => {});
    });
    // A connection that dies before the answer is an error; one that dies while held is seen by alive() and release().
    done.catch((err: unknown) => {
      if (!held) reject(err);
    });
  });
}
