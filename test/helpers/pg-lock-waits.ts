import { sql, type Kysely } from 'kysely';
import pg from 'pg';
import type { Database } from '../../src/storage/schema.ts';
import { PG_URL } from './databases.ts';

/** The PostgreSQL backend (process id) serving `on`: a transaction, or a connection that stays the same. */
export async function backendPid(on: Kysely<Database>): Promise<number> {
  const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(on);
  return rows[0]!.pid;
}

/**
 * Waits until a backend other than `blockers` waits for a lock that one of them holds or is queued
 * for ahead of it, and returns that backend's pid. For PostgreSQL race tests that need a statement
 * queued behind a lock before the next step: after a sleep, on a loaded machine, the statement may
 * not even have been sent. `db` is any other connection to the same server.
 */
export async function waitUntilBlockedBy(db: Kysely<Database>, blockers: number[], timeoutMs = 60_000): Promise<number> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const { rows } = await sql<{ pid: number }>`
      select pid from pg_stat_activity
      where pg_blocking_pids(pid) && ${blockers}::int[] and not (pid = any(${blockers}::int[]))
      order by pid limit 1`.execute(db);
    if (rows[0]) return rows[0].pid;
    if (Date.now() > until) throw new Error(`no backend waited behind ${blockers.join(', ')} within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * A plain client in `schema`, outside Keyhold's pool and its bounds, with its backend pid: the
 * "other session" of lock tests (a hung transaction, an administrator in psql). The caller ends it.
 */
export async function otherSession(schema: string): Promise<{ client: pg.Client; pid: number }> {
  const client = new pg.Client({ connectionString: PG_URL });
  await client.connect();
  await client.query(`set search_path to ${schema}`);
  const pid = (await client.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  return { client, pid };
}
