import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import type pg from 'pg';
import { Kysely, PostgresAdapter, sql, type Dialect, type Transaction } from 'kysely';
import type { Database } from './schema.ts';
import { createNodeSqliteDialect } from './sqlite/node-sqlite-dialect.ts';
import { createPostgresDialect, type StatementBounds } from './postgres/postgres-dialect.ts';
import { migrateToLatest, pendingMigrations } from './migrations/index.ts';
import { withCommitHooks, type AfterCommit } from './commit-hooks.ts';
import { appendOnlyReport, canApplyMigrations, whoAndWhere, type AppendOnlyReport } from './postgres/privileges.ts';
import { createPgNotifications, type Notifications } from './postgres/notifications.ts';

export type DialectName = 'sqlite' | 'postgres';
export type Executor = Kysely<Database> | Transaction<Database>;

/**
 * Whether `executor` talks to PostgreSQL, for code that has a connection but no DialectName: row
 * locks (`FOR SHARE`) exist there; SQLite runs one write transaction at a time and has none.
 */
export function onPostgres(executor: Executor): boolean {
  return executor.getExecutor().adapter instanceof PostgresAdapter;
}

/** Where the database is; on PostgreSQL also the bounds (KEYHOLD_DB_*) on the pool's statements, which migrations run without. */
export interface StorageOptions extends StatementBounds {
  /** `sqlite:<path>` (embedded default) or a `postgres://` connection string. */
  url: string;
  /** PostgreSQL only: the schema to use (tests isolate themselves with one each). */
  schema?: string;
  poolSize?: number;
}

export interface Storage {
  db: Kysely<Database>;
  dialect: DialectName;
  /** SQLite: the database file, for a second connection (the audit appender); null otherwise or in memory. */
  sqlitePath: string | null;
  /** The migrations this start applied: none when the schema was up to date or another node applied them first. */
  migrationsApplied: string[];
  /** What keeps the audit tables append-only against this connection's user (SQLite: its triggers). */
  auditAppendOnly: AppendOnlyReport;
  /** Runs `task` right after `trx` commits (never if it rolls back): see commit-hooks.ts. */
  afterCommit: AfterCommit;
  /** Messages to the other nodes on this database (PostgreSQL's LISTEN/NOTIFY); null on SQLite, which has one node. */
  notifications: Notifications | null;
  /** Runs `task` when the storage closes, before the database connection does. */
  onClose(task: () => Promise<void>): void;
  close(): Promise<void>;
}

/**
 * The database cannot be used as it is set up, and starting again will not change that: the operator
 * must act (create the schema, migrate, run another version). Not a crash: the server names the
 * setting and stops with exit code 2.
 */
export class StorageRefusal extends Error {
  override name = 'StorageRefusal';
}

/**
 * The schema needs migrations that this connection's user cannot apply: it is not the owner of the
 * schema's tables (the production set-up, see `keyhold migrate`).
 */
export class MigrationsPendingError extends StorageRefusal {
  readonly user: string;
  readonly schema: string | null;
  readonly pending: string[];
  constructor(user: string, schema: string | null, pending: string[]) {
    super(`${pending.length} database migration(s) are pending (${pending.join(', ')}) in schema "${schema ?? '(none)'}", `
      + `and database user "${user}" cannot apply them (it does not own the schema's tables): `
      + `run \`keyhold migrate --database-url <the schema owner's URL> --grant-to ${user}\` (or set KEYHOLD_MIGRATE_DATABASE_URL), then start again`);
    this.name = 'MigrationsPendingError';
    this.user = user;
    this.schema = schema;
    this.pending = pending;
  }
}

/**
 * The schema was migrated by a newer Keyhold: it holds migrations this version does not know, so
 * this version's queries may not fit it. Not a crash: the operator runs the newer version (or
 * restores the database from before the upgrade).
 */
export class SchemaTooNewError extends StorageRefusal {
  readonly unknown: string[];
  constructor(unknown: string[]) {
    super(`the database was migrated by a newer Keyhold (migration(s) ${unknown.join(', ')} are unknown to this version): `
      + 'run that version or a later one, or restore the database from a backup taken before the upgrade');
    this.name = 'SchemaTooNewError';
    this.unknown = unknown;
  }
}

/** Refuses a schema a newer Keyhold migrated, before anything is applied to it. */
async function refuseNewerSchema(db: Kysely<unknown>, dialect: DialectName): Promise<string[]> {
  const { pending, unknown } = await pendingMigrations(db, dialect);
  if (unknown.length > 0) throw new SchemaTooNewError(unknown);
  return pending;
}

/**
 * PostgreSQL: applies pending migrations when this user can (the owner, as in development); starts
 * without touching the schema when nothing is pending, so a runtime role without DDL rights can run
 * the server; refuses when migrations are pending and this user cannot apply them.
 */
async function migratePostgres(db: Kysely<unknown>, unbounded: () => Kysely<unknown>): Promise<string[]> {
  // PostgreSQL skips the search_path's schemas that do not exist or this user may not use: with none left, every
  // statement below would fail with something like "null values cannot be formatted as an SQL identifier".
  const { user, schema } = await whoAndWhere(db);
  if (schema === null) {
    const path = (await sql<{ path: string }>`select current_setting('search_path') as path`.execute(db)).rows[0]?.path ?? '';
    throw new StorageRefusal(`no schema to use: database user "${user}" has search_path "${path}", and none of it exists or is usable `
      + '(USAGE) by that user: create the schema as its owner (keyhold migrate then grants the server\'s role), or fix options=-c search_path=... in the URL');
  }
  const pending = await refuseNewerSchema(db, 'postgres');
  if (pending.length === 0) return [];
  if (!(await canApplyMigrations(db))) {
    throw new MigrationsPendingError(user, schema, pending);
  }
  // Not under the pool's bounds: a migration rewrites whole tables and waits for every reader of
  // them (an older node still serving), and cut off part way it would stop the start every time.
  const migrator = unbounded();
  try {
    return await migrateToLatest(migrator, 'postgres');
  } finally {
    await migrator.destroy();
  }
}

/**
 * `text` with the password of a connection URL masked, as written and percent-decoded: for messages about
 * a database that could not be opened, whatever the driver put in them. Read by pattern, not by URL
 * parsing, since the URL may be one that does not parse.
 */
export function withoutPassword(text: string, url: string): string {
  const password = /^[a-z]+:\/\/[^/@:]*:([^@]*)@/i.exec(url)?.[1];
  if (!password) return text;
  let decoded = password;
  try {
    decoded = decodeURIComponent(password);
  } catch {
    // Not percent-encoded throughout: the text as written is all there is to mask.
  }
  return text.split(password).join('***').split(decoded).join('***');
}

/** Opens the database named by the URL and applies migrations (PostgreSQL: if this user can, see migratePostgres). */
export async function openStorage(options: StorageOptions): Promise<Storage> {
  const dialect: DialectName = /^postgres(ql)?:\/\//.test(options.url) ? 'postgres' : 'sqlite';
  let sqlitePath: string | null = null;
  let base: Dialect;
  /** PostgreSQL: how the pool opens its connections, for the one that listens for other nodes. */
  let clientConfig: pg.ClientConfig | null = null;
  const where = { connectionString: options.url, ...(options.schema ? { schema: options.schema } : {}) };
  if (dialect === 'postgres') {
    const { dialect: d, pool } = createPostgresDialect({
      ...where,
      ...(options.poolSize ? { max: options.poolSize } : {}),
      // Absent or 0: none set (the dialect's own rule).
      lockTimeoutMs: options.lockTimeoutMs, statementTimeoutMs: options.statementTimeoutMs,
    });
    base = d;
    clientConfig = pool.options;
  } else {
    const path = options.url.replace(/^sqlite:/, '');
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      // Created owner-only whatever the umask or the directory's mode: SQLite gives its -wal and -shm
      // files the database file's permissions, and they hold the audit trail and token hashes too.
      closeSync(openSync(path, 'a', 0o600));
      sqlitePath = path;
    }
    base = createNodeSqliteDialect(path).dialect;
  }
  // Transactions that can say they committed: the audit log counts its in-transaction events then.
  const { dialect: hooked, afterCommit } = withCommitHooks(base);
  const db = new Kysely<Database>({ dialect: hooked });
  const raw = db as unknown as Kysely<unknown>;
  let migrationsApplied: string[] = [];
  let auditAppendOnly: AppendOnlyReport = { guarantee: 'trigger', reasons: ['SQLite has no privileges: whoever can write the file can drop the triggers'] };
  try {
    if (dialect === 'postgres') {
      migrationsApplied = await migratePostgres(raw, () => new Kysely<unknown>({ dialect: createPostgresDialect({ ...where, max: 1 }).dialect }));
      auditAppendOnly = await appendOnlyReport(raw);
    } else {
      await refuseNewerSchema(raw, dialect);
      migrationsApplied = await migrateToLatest(raw, dialect);
    }
  } catch (err) {
    await db.destroy().catch(() => {});
    throw err;
  }
  const closing: Array<() => Promise<void>> = [];
  let notifications: Notifications | null = null;
  if (clientConfig) {
    const listening = createPgNotifications({ db, clientConfig });
    closing.push(() => listening.close());
    notifications = listening;
  }
  return {
    db, dialect, sqlitePath, migrationsApplied, auditAppendOnly, afterCommit, notifications,
    onClose: (task) => void closing.push(task),
    async close() {
      // Every task runs and the connection closes even if one fails; the first failure is reported.
      const failures: unknown[] = [];
      for (const task of closing.splice(0)) await task().catch((err: unknown) => void failures.push(err));
      await db.destroy();
      if (failures.length > 0) throw failures[0];
    },
  };
}
