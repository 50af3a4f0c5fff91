import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { openStorage, type DialectName, type Storage } from '../../src/storage/database.ts';

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
  open(): Promise<Storage>;
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
    open: () => openStorage({ url: PG_URL, schema, poolSize: 8 }),
    cleanup: async () => {
      const c = new pg.Client({ connectionString: PG_URL });
      await c.connect();
      await c.query(`drop schema if exists ${schema} cascade`);
      await c.end();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
