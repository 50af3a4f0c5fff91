import { randomInt } from 'node:crypto';
import { DatabaseSync } from 'node:sqlite';
import pg from 'pg';
import { SQLITE_BUSY, sqliteResultCode } from '../../src/storage/db-errors.ts';
import type { TestDatabase } from './databases.ts';

/** Where to hold the server: the `at`-th row (counting from 1) of `table` written as below. */
export interface StallAt {
  table: string;
  /** UPDATEs that set these columns; omitted: INSERTs. */
  columns?: string[];
  /** Only rows meeting this condition on `new` count (SQL both dialects read alike). */
  when?: string;
  at: number;
  timeoutMs?: number;
}

export interface WriteStall {
  /** Resolves once the server is held at the stalled write; `committed` says what must have committed before it. */
  reached(committed: () => Promise<boolean>): Promise<void>;
  /**
   * Call once the server is dead: lets the statement it left running end as the database ends it
   * (a transaction never committed rolls back; on PostgreSQL a statement sent on its own completes),
   * then removes the trigger.
   */
  remove(): Promise<void>;
}

const ROWS = 1000;
const POLL_MS = 20;

async function until(what: string, timeoutMs: number, check: () => Promise<boolean> | boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms`);
    await new Promise((resolve) => setTimeout(resolve, POLL_MS));
  }
}

/** The trigger's event, row and condition, as both dialects write them. */
function triggerOn(opts: StallAt): string {
  const event = opts.columns ? `update of ${opts.columns.join(', ')}` : 'insert';
  return `after ${event} on ${opts.table} for each row${opts.when ? ` when (${opts.when})` : ''}`;
}

/**
 * Holds a server process inside one of its own writes, so a test can kill it mid-operation at a
 * point it names rather than at a moment it guesses. A trigger, installed by the test and invisible
 * to the server's code, counts the rows `opts` describes; the one that brings the count to `at`
 * does not return until the server is killed (`at: 250` lets 249 through):
 *
 * - PostgreSQL: the trigger waits for an advisory lock the test holds; `reached` resolves once the
 *   server's backend is seen waiting for it.
 * - SQLite: the trigger runs a query that never ends (node:sqlite is synchronous: the thread that
 *   writes stops there, inside its write transaction). Nothing outside that transaction can see the
 *   count, so `reached` waits for what the caller knows commits before the stall (`committed`) and
 *   for the write lock to be held; from then on the state on disk can no longer change.
 */
export function stallWrite(database: TestDatabase, opts: StallAt): Promise<WriteStall> {
  return database.dialect === 'postgres' ? stallPostgres(database, opts) : stallSqlite(database, opts);
}

async function stallPostgres(database: TestDatabase, opts: StallAt): Promise<WriteStall> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const holder = new pg.Client({ connectionString: database.url });
  await holder.connect();
  const holderPid = (await holder.query<{ pid: number }>('select pg_backend_pid() as pid')).rows[0]!.pid;
  // Advisory locks are per database, and test files run side by side in one: a key of its own per stall,
  // or one file's unlock could hand the lock to another's stalled server instead of its own.
  const advisoryKey = randomInt(1, 2 ** 47);
  await holder.query('select pg_advisory_lock($1)', [advisoryKey]);
  await holder.query(`
    create table crash_stall (n integer not null);
    insert into crash_stall values (0);
    create function crash_stall() returns trigger language plpgsql as $$
    begin
      update crash_stall set n = n + 1;
      if (select n from crash_stall) = ${Number(opts.at)} then perform pg_advisory_xact_lock(${advisoryKey}); end if;
      return null;
    end $$;
    create trigger crash_stall ${triggerOn(opts)} execute function crash_stall();
  `);
  let stalledPid: number | null = null;
  return {
    async reached(committed) {
      await until('the server did not reach the stalled write', timeoutMs, async () => {
        const { rows } = await holder.query<{ pid: number }>(
          'select pid from pg_stat_activity where $1 = any(pg_blocking_pids(pid)) limit 1', [holderPid]);
        stalledPid = rows[0]?.pid ?? null;
        return stalledPid !== null;
      });
      if (!(await committed())) throw new Error('the server is held at the stalled write, but what must commit before it has not');
    },
    async remove() {
      // As when a real server dies: its backend goes on with the statement once the lock is free,
      // then finds the connection gone and rolls the transaction back.
      await holder.query('select pg_advisory_unlock($1)', [advisoryKey]);
      if (stalledPid !== null) {
        await until('the dead server\'s backend did not end', timeoutMs, async () =>
          (await holder.query('select 1 from pg_stat_activity where pid = $1', [stalledPid])).rowCount === 0);
      }
      await holder.query(`drop trigger crash_stall on ${opts.table}; drop function crash_stall(); drop table crash_stall;`);
      await holder.end();
    },
  };
}

async function stallSqlite(database: TestDatabase, opts: StallAt): Promise<WriteStall> {
  const timeoutMs = opts.timeoutMs ?? 30_000;
  const db = new DatabaseSync(database.url.replace(/^sqlite:/, ''));
  const patiently = (sql: string) => {
    db.exec('pragma busy_timeout = 10000');
    db.exec(sql);
    db.exec('pragma busy_timeout = 0');
  };
  // A four-way cross join of 1000 rows: 10^12 steps, so it ends only with the process.
  patiently(`
    begin immediate;
    create table crash_stall (n integer not null);
    insert into crash_stall values (0);
    create table crash_stall_rows (x integer not null);
    insert into crash_stall_rows with recursive r(x) as (select 1 union all select x + 1 from r where x < ${ROWS}) select x from r;
    create trigger crash_stall ${triggerOn(opts)} begin
      update crash_stall set n = n + 1;
      select sum(a.x * b.x * c.x * d.x) from crash_stall_rows a, crash_stall_rows b, crash_stall_rows c, crash_stall_rows d
        where (select n from crash_stall) = ${Number(opts.at)};
    end;
    commit;
  `);
  /** Whether another connection holds the write lock (with no busy timeout, BEGIN IMMEDIATE fails at once). */
  const writeLocked = () => {
    try {
      db.exec('begin immediate');
      db.exec('rollback');
      return false;
    } catch (err) {
      if (sqliteResultCode(err) === SQLITE_BUSY) return true;
      throw err;
    }
  };
  return {
    async reached(committed) {
      await until('the server did not reach the stalled write', timeoutMs, async () => (await committed()) && writeLocked());
    },
    async remove() {
      // The dead process's locks went with it; the next connection to write rolls its WAL tail back.
      patiently('drop trigger crash_stall; drop table crash_stall; drop table crash_stall_rows;');
      db.close();
    },
  };
}
