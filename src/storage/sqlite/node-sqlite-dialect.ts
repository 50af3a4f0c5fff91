import { DatabaseSync, type StatementSync } from 'node:sqlite';
import { SqliteAdapter, SqliteDialect, type DialectAdapter, type SqliteDatabase, type SqliteStatement } from 'kysely';
import { enableWal } from './wal-mode.ts';

/** How long a statement waits for another connection's lock (another process, the audit appender's thread). */
const BUSY_TIMEOUT_MS = 5000;

/**
 * Adapts node:sqlite's DatabaseSync to the better-sqlite3-like surface Kysely's SqliteDialect
 * expects. Prepared statements are cached by SQL text: Kysely prepares on every query, and
 * preparing dominates the cost of a point read.
 */
class NodeSqliteDatabase implements SqliteDatabase {
  readonly #db: DatabaseSync;
  readonly #cache = new Map<string, NodeSqliteStatement>();
  readonly #maxCached: number;

  constructor(db: DatabaseSync, maxCached = 500) {
    this.#db = db;
    this.#maxCached = maxCached;
  }

  close(): void {
    this.#cache.clear();
    this.#db.close();
  }

  prepare(sql: string): SqliteStatement {
    // Kysely opens transactions with a deferred BEGIN. A second connection (the audit appender)
    // may commit between such a transaction's first read and its first write, and SQLite then
    // refuses the write at once (SQLITE_BUSY_SNAPSHOT, no busy wait). IMMEDIATE takes the write
    // lock up front, waiting for the other connection's commit as any writer does.
    if (sql === 'begin') sql = 'begin immediate';
    // SQLite ends a transaction itself on some errors (SQLITE_FULL, SQLITE_IOERR, ...). Kysely's
    // rollback would then fail ("no transaction is active") and its error would replace the one
    // that explains the failure (an unwritable audit log answering AUDIT_UNAVAILABLE, say).
    if (sql === 'rollback' && !this.#db.isTransaction) return NO_OP;
    let stmt = this.#cache.get(sql);
    if (!stmt) {
      stmt = new NodeSqliteStatement(this.#db.prepare(sql));
      if (this.#cache.size >= this.#maxCached) this.#cache.delete(this.#cache.keys().next().value!);
      this.#cache.set(sql, stmt);
    }
    return stmt;
  }
}

type Param = null | number | bigint | string | Uint8Array;

/** A statement that does nothing: the rollback of a transaction SQLite has already ended. */
const NO_OP: SqliteStatement = {
  reader: false,
  all: () => [],
  run: () => ({ changes: 0, lastInsertRowid: 0 }),
  iterate: () => [][Symbol.iterator](),
};

function bigintsAsNumbers(row: unknown): unknown {
  const out = row as Record<string, unknown>;
  for (const [k, v] of Object.entries(out)) if (typeof v === 'bigint') out[k] = Number(v);
  return out;
}

class NodeSqliteStatement implements SqliteStatement {
  readonly reader: boolean;
  readonly #stmt: StatementSync;

  constructor(stmt: StatementSync) {
    this.#stmt = stmt;
    this.reader = stmt.columns().length > 0;
  }

  /**
   * node:sqlite refuses to read an integer past 2^53 as a number (ERR_OUT_OF_RANGE), which made a
   * single such value, e.g. a time or seq in a hand-written audit row, fail every read that met it.
   * A SELECT (nothing happens twice) is read again with bigints, and those become numbers as
   * PostgreSQL's int8 parser makes them (postgres-dialect.ts): rounded, never a failure.
   */
  all(parameters: ReadonlyArray<unknown>): unknown[] {
    try {
      return this.#stmt.all(...(parameters as Param[]));
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ERR_OUT_OF_RANGE' || !/^\s*select\b/i.test(this.#stmt.sourceSQL)) throw err;
      this.#stmt.setReadBigInts(true);
      try {
        return this.#stmt.all(...(parameters as Param[])).map(bigintsAsNumbers);
      } finally {
        this.#stmt.setReadBigInts(false);
      }
    }
  }

  run(parameters: ReadonlyArray<unknown>): { changes: number | bigint; lastInsertRowid: number | bigint } {
    return this.#stmt.run(...(parameters as Param[]));
  }

  iterate(parameters: ReadonlyArray<unknown>): IterableIterator<unknown> {
    return this.#stmt.iterate(...(parameters as Param[]));
  }
}

/**
 * SQLite runs DDL inside transactions, but Kysely's adapter says it cannot, so its migrator ran each
 * migration statement by statement with no lock: a crash or a failed statement part-way left half a
 * migration that the next start failed on ("table ... already exists"), and two processes starting
 * on one new file ran the same migrations at once. Saying so makes the migrator run all pending
 * migrations in one transaction, whose `begin immediate` (above) also makes a second process wait.
 */
class TransactionalDdlSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl(): boolean {
    return true;
  }
}

class NodeSqliteDialect extends SqliteDialect {
  override createAdapter(): DialectAdapter {
    return new TransactionalDdlSqliteAdapter();
  }
}

/** Opens a SQLite file (WAL, foreign keys on, a busy timeout for other processes) as a Kysely dialect. */
export function createNodeSqliteDialect(path: string): { dialect: SqliteDialect; raw: DatabaseSync } {
  const raw = new DatabaseSync(path, { timeout: BUSY_TIMEOUT_MS });
  enableWal((sql) => raw.exec(sql), BUSY_TIMEOUT_MS);
  raw.exec('PRAGMA synchronous = FULL');
  raw.exec('PRAGMA foreign_keys = ON');
  return { dialect: new NodeSqliteDialect({ database: new NodeSqliteDatabase(raw) }), raw };
}
