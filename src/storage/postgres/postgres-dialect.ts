import pg from 'pg';
import { PostgresDialect } from 'kysely';
import { PoolWaitTimeout } from '../db-errors.ts';

const INT8_OID = 20;
const NUMERIC_OID = 1700;
/** How long a session may sit idle inside an open transaction before PostgreSQL ends it. */
export const IDLE_IN_TRANSACTION_MS = 60_000;
/** How long a query waits for a free pool connection (or for a new one to open) before it answers DATABASE_TIMEOUT. */
export const POOL_WAIT_MS = 10_000;

/** Bounds on every statement of a pool, in milliseconds; 0 or absent: none set (PostgreSQL's own setting applies). */
export interface StatementBounds {
  /** lock_timeout: a statement waiting this long for a lock fails with 55P03 (a transaction conflict). */
  lockTimeoutMs?: number;
  /** statement_timeout: a statement running this long is cancelled with 57014. */
  statementTimeoutMs?: number;
}

/**
 * A pg Pool as a Kysely dialect. Our bigints are epoch milliseconds and counters, well inside
 * 2^53, so int8 is parsed to a number here (per pool: no global type-parser mutation).
 */
export function createPostgresDialect(options: { connectionString: string; schema?: string; max?: number; poolWaitMs?: number } & StatementBounds): {
  dialect: PostgresDialect;
  pool: pg.Pool;
} {
  const waited = options.poolWaitMs ?? POOL_WAIT_MS;
  const pool = new pg.Pool({
    connectionString: options.connectionString,
    max: options.max ?? 10,
    // pg waits for ever by default: with every connection held (requests stuck in transactions, the
    // database not answering) each new request queued without end instead of being told to come back.
    connectionTimeoutMillis: waited,
    // A transaction left open (a request that hung inside one) would hold its row locks, the audit
    // head's among them, for ever: PostgreSQL ends such a session after a minute, and its locks with it.
    idle_in_transaction_session_timeout: IDLE_IN_TRANSACTION_MS,
    // Sent at connect as the session's defaults, so every statement on every connection is bounded
    // and a SET LOCAL inside a transaction (unbounded-read.ts) ends with it. pg sends no 0.
    ...(options.lockTimeoutMs ? { lock_timeout: options.lockTimeoutMs } : {}),
    ...(options.statementTimeoutMs ? { statement_timeout: options.statementTimeoutMs } : {}),
    ...(options.schema ? { options: `-c search_path=${options.schema}` } : {}),
    types: {
      getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
        if (oid === INT8_OID || oid === NUMERIC_OID) return (v: string) => Number(v);
        return pg.types.getTypeParser(oid, format as 'text');
      }) as typeof pg.types.getTypeParser,
    },
  });
  // A client losing its connection must not crash the process. pg-pool listens for that only while
  // a client is idle; handed out (a transaction, the leader's pinned session lock) the loss (a
  // terminated backend, idle_in_transaction_session_timeout, a restart) was an 'error' event nobody
  // heard. The work on the client fails instead, and the pool drops the client when it comes back.
  pool.on('error', () => {});
  pool.on('connect', (client) => void client.on('error', () => {}));
  const bounded = {
    connect: () => pool.connect().catch((err: unknown) => {
      // How pg says connectionTimeoutMillis ran out: no client came free (the pool), a new one did not
      // open (the pool's timer, or the client's own, whichever fires first).
      if (!/^(timeout exceeded when trying to connect|Connection terminated due to connection timeout|timeout expired)$/.test((err as Error)?.message)) throw err;
      throw new PoolWaitTimeout(waited);
    }),
    end: () => pool.end(),
    // Kysely opens a control client with these to cancel a query whose signal aborts.
    Client: pg.Client,
    options: pool.options,
  };
  return { dialect: new PostgresDialect({ pool: bounded }), pool };
}
