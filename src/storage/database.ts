import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { Kysely, type Transaction } from 'kysely';
import type { Database } from './schema.ts';
import { createNodeSqliteDialect } from './sqlite/node-sqlite-dialect.ts';
import { createPostgresDialect } from './postgres/postgres-dialect.ts';
import { migrateToLatest } from './migrations/index.ts';

export type DialectName = 'sqlite' | 'postgres';
export type Executor = Kysely<Database> | Transaction<Database>;

export interface StorageOptions {
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
  /** Runs `task` when the storage closes, before the database connection does. */
  onClose(task: () => Promise<void>): void;
  close(): Promise<void>;
}

/** Opens the database named by the URL and applies migrations. */
export async function openStorage(options: StorageOptions): Promise<Storage> {
  const dialect: DialectName = /^postgres(ql)?:\/\//.test(options.url) ? 'postgres' : 'sqlite';
  let db: Kysely<Database>;
  let sqlitePath: string | null = null;
  if (dialect === 'postgres') {
    const { dialect: d } = createPostgresDialect({
      connectionString: options.url,
      ...(options.schema ? { schema: options.schema } : {}),
      ...(options.poolSize ? { max: options.poolSize } : {}),
    });
    db = new Kysely<Database>({ dialect: d });
  } else {
    const path = options.url.replace(/^sqlite:/, '');
    if (path !== ':memory:') {
      mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
      sqlitePath = path;
    }
    db = new Kysely<Database>({ dialect: createNodeSqliteDialect(path).dialect });
  }
  await migrateToLatest(db as unknown as Kysely<unknown>, dialect);
  const closing: Array<() => Promise<void>> = [];
  return {
    db, dialect, sqlitePath,
    onClose: (task) => void closing.push(task),
    async close() {
      for (const task of closing.splice(0)) await task();
      await db.destroy();
    },
  };
}

/** True when a driver error is a unique-constraint violation (both dialects). */
export function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; errcode?: number; message?: string };
  if (e?.code === '23505') return true; // PostgreSQL unique_violation
  return typeof e?.message === 'string' && /UNIQUE constraint failed/.test(e.message);
}
