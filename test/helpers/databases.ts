import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { Kysely } from 'kysely';
import pg from 'pg';
import { openStorage, type DialectName, type Storage } from '../../src/storage/database.ts';
import { migrateTo } from '../../src/storage/migrations/index.ts';
import { createPostgresDialect, type StatementBounds } from '../../src/storage/postgres/postgres-dialect.ts';
import { databaseSettings } from '../../src/config/config.ts';
import type { Database } from '../../src/storage/schema.ts';
import { createNodeSqliteDialect } from '../../src/storage/sqlite/node-sqlite-dialect.ts';

/** The PostgreSQL the dev and CI machines run; override with KEYHOLD_TEST_PG_URL. */
export const PG_URL = process.env.KEYHOLD_TEST_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const DIALECTS: DialectName[] = ['sqlite', 'postgres'];

let pgProbe: Promise<boolean> | null = null;

/** Whether PostgreSQL answers. Under CI=true its absence is a failure, never a skip. */
export function postgresAvailable(): Promise<boolean> {
  pgProbe ??= (async () => {
    const client = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3000 });
    try {
      await client.connect();
      await client.query('select 1');
      return true;
    } catch {
      return false;
    } finally {
      await client.end().catch(() => {});
    }
  })();
  return pgProbe;
}

/** Skip reason for a dialect, or false to run. Throws under CI when PostgreSQL is missing. */
export async function skipReason(dialect: DialectName): Promise<string | false> {
  if (dialect !== 'postgres' || (await postgresAvailable())) return false;
  if (process.env.CI === 'true') throw new Error(`PostgreSQL is required in CI but ${PG_URL} did not answer`);
  return `PostgreSQL not reachable at ${PG_URL}`;
}

export interface TestDatabase {
  dialect: DialectName;
  /** What the server needs to open the same database (URL, and the schema on PostgreSQL). */
  url: string;
  schema?: string;
  dataDir: string;
  /** PostgreSQL: under the server's default statement bounds (KEYHOLD_DB_*) unless `bounds` says otherwise. */
  open(bounds?: StatementBounds): Promise<Storage>;
  cleanup(): Promise<void>;
}

/** A fresh, isolated database: a SQLite file in a temp dir, or a PostgreSQL schema of its own. */
export async function createTestDatabase(dialect: DialectName): Promise<TestDatabase> {
  const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-test-'));
  if (dialect === 'sqlite') {
    const url = `sqlite:${join(dataDir, 'keyhold.db')}`;
    return {
      dialect, url, dataDir,
      open: () => openStorage({ url }),
      cleanup: async () => rmSync(dataDir, { recursive: true, force: true }),
    };
  }
  const schema = `kh_test_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL });
  await admin.connect();
  await admin.query(`create schema ${schema}`);
  await admin.end();
  return {
    dialect, url: `${PG_URL}?options=${encodeURIComponent(`-c search_path=${schema}`)}`, schema, dataDir,
    open: (bounds = databaseSettings()) => openStorage({ url: PG_URL, schema, poolSize: 8, ...bounds }),
    cleanup: async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`drop schema if exists ${schema} cascade`);
      await c.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/**
 * A fresh database with no migration applied, for upgrade tests: `upTo(name)` applies migrations
 * up to that one (null: all), with the retry start-up has (Kysely's bookkeeping scans every schema,
 * and a parallel test may drop one meanwhile).
 */
export async function createUnmigratedDatabase(dialect: DialectName): Promise<{
  db: Kysely<Database>; upTo(target: string | null): Promise<void>; close(): Promise<void>;
}> {
  const database = await createTestDatabase(dialect);
  const db = new Kysely<Database>({
    dialect: dialect === 'sqlite'
      ? createNodeSqliteDialect(database.url.replace(/^sqlite:/, '')).dialect
      : createPostgresDialect({ connectionString: PG_URL, schema: database.schema! }).dialect,
  });
  return {
    db,
    upTo: async (target) => {
      await migrateTo(db as unknown as Kysely<unknown>, dialect, target);
    },
    close: async () => {
      await db.destroy();
      await database.cleanup();
    },
  };
}
