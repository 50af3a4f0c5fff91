import type { DatabaseConnection, Dialect, Driver, Transaction, TransactionSettings } from 'kysely';

/** Runs `task` once `trx` has committed; never if it rolls back (or its COMMIT fails). */
export type AfterCommit = <DB>(trx: Transaction<DB>, task: () => void) => Promise<void>;

/**
 * A dialect whose transactions can say when they committed. Kysely has no such hook, and a caller
 * deep inside a transaction (the audit log's `appendInTx`) cannot see its end: it registers a task
 * on the transaction's connection, which the driver runs right after that connection's COMMIT
 * succeeds and drops on rollback. Nothing is read or written for it. (A rollback to a savepoint keeps
 * the tasks registered after it: nothing here uses savepoints.)
 */
export function withCommitHooks(dialect: Dialect): { dialect: Dialect; afterCommit: AfterCommit } {
  const pending = new WeakMap<DatabaseConnection, Array<() => void>>();
  const settle = (connection: DatabaseConnection, committed: boolean) => {
    const tasks = pending.get(connection);
    pending.delete(connection);
    if (!committed || !tasks) return;
    // A task is bookkeeping of what committed: its failure must not turn a commit into an error.
    for (const task of tasks) {
      try {
        task();
      } catch {
        // Nothing to undo: the transaction has committed.
      }
    }
  };

  function hooked(inner: Driver): Driver {
    const driver: Driver = {
      init: (options) => inner.init(options),
      acquireConnection: (options) => inner.acquireConnection(options),
      async beginTransaction(connection: DatabaseConnection, settings: TransactionSettings) {
        pending.delete(connection);
        await inner.beginTransaction(connection, settings);
      },
      async commitTransaction(connection) {
        try {
          await inner.commitTransaction(connection);
        } catch (err) {
          settle(connection, false);
          throw err;
        }
        settle(connection, true);
      },
      async rollbackTransaction(connection) {
        settle(connection, false);
        await inner.rollbackTransaction(connection);
      },
      releaseConnection: (connection, options) => inner.releaseConnection(connection, options),
      destroy: (options) => inner.destroy(options),
    };
    // Only where the dialect has them: Kysely tells a driver without savepoints by their absence.
    if (inner.savepoint) driver.savepoint = inner.savepoint.bind(inner);
    if (inner.rollbackToSavepoint) driver.rollbackToSavepoint = inner.rollbackToSavepoint.bind(inner);
    if (inner.releaseSavepoint) driver.releaseSavepoint = inner.releaseSavepoint.bind(inner);
    return driver;
  }

  return {
    dialect: {
      createDriver: () => hooked(dialect.createDriver()),
      createQueryCompiler: () => dialect.createQueryCompiler(),
      createAdapter: () => dialect.createAdapter(),
      createIntrospector: (db) => dialect.createIntrospector(db),
    },
    async afterCommit(trx, task) {
      // Outside a transaction every statement has committed already.
      if (!trx.isTransaction) return task();
      const connection = await trx.getExecutor().provideConnection(async (c) => c);
      const tasks = pending.get(connection);
      if (tasks) tasks.push(task);
      else pending.set(connection, [task]);
    },
  };
}
