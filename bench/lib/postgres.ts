import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Cleanup } from './cleanup.ts';

/** The PostgreSQL the dev and CI machines run; override with KEYHOLD_BENCH_PG_URL. */
export const PG_URL = process.env.KEYHOLD_BENCH_PG_URL ?? 'postgres://postgres@127.0.0.1:5432/test';

/**
 * Creates a schema of its own for one benchmark server and returns the server's database URL
 * (search_path set to it), or why it cannot (PostgreSQL does not answer). The schema is dropped on cleanup.
 */
export async function createBenchSchema(cleanup: Cleanup): Promise<{ url: string } | { unavailable: string }> {
  const schema = `keyhold_bench_${randomBytes(6).toString('hex')}`;
  const admin = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3_000 });
  try {
    await admin.connect();
    await admin.query(`create schema ${schema}`);
  } catch (err) {
    return { unavailable: `${PG_URL.replace(/\/\/[^@/]*@/, '//')}: ${(err as Error).message}` };
  } finally {
    await admin.end().catch(() => {});
  }
  cleanup.add(`drop schema ${schema}`, async () => {
    const c = new pg.Client({ connectionString: PG_URL, connectionTimeoutMillis: 3_000 });
    await c.connect();
    try {
      await c.query(`drop schema if exists ${schema} cascade`);
    } finally {
      await c.end();
    }
  });
  const separator = PG_URL.includes('?') ? '&' : '?';
  return { url: `${PG_URL}${separator}options=${encodeURIComponent(`-c search_path=${schema}`)}` };
}
