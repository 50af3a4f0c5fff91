import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/**
 * Secret names compare byte by byte on PostgreSQL too, whatever the database's default collation.
 * A list by prefix is a range (`name >= 'B' and name < 'B' || U+FFFF`) walked in name order, and
 * under a linguistic collation (en_US, ICU) that range also holds `bx`, `b-x`: other names than
 * the prefix asked for, and pages in another order than SQLite's. SQLite already compares BINARY.
 * The unique (tenant, name) index is rebuilt with the column.
 */
export async function up(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  if (dialect !== 'postgres') return;
  await sql`alter table secrets alter column name type text collate "C"`.execute(db);
}
