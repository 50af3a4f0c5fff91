import { sql, type Kysely } from 'kysely';
import { Migrator, type Migration, type MigrationProvider } from 'kysely/migration';
import type { DialectName } from '../database.ts';
import { scopedToSchema } from './scoped-introspection.ts';
import * as m001 from './001-core.ts';
import * as m002 from './002-identity.ts';
import * as m003 from './003-audit.ts';
import * as m004 from './004-audit-checkpoints.ts';
import * as m005 from './005-connectors.ts';
import * as m006 from './006-automations.ts';
import * as m007 from './007-escrow.ts';
import * as m009 from './009-rotation.ts';
import * as m010 from './010-audit-rowid.ts';
import * as m011 from './011-credential-sweep.ts';
import * as m012 from './012-audit-usage.ts';
import * as m013 from './013-automation-fires.ts';
import * as m014 from './014-audit-tenant-seq.ts';
import * as m015 from './015-totp-pending.ts';
import * as m016 from './016-audit-checkpoint-links.ts';
import * as m017 from './017-rotation-policy-setter.ts';
import * as m018 from './018-run-token-environment.ts';
import * as m019 from './019-audit-event-macs.ts';
import * as m020 from './020-totp-enrolment-tickets.ts';
import * as m021 from './021-factor-epochs.ts';
import * as m022 from './022-secret-name-collation.ts';
import * as m023 from './023-approval-source.ts';
import * as m024 from './024-user-email.ts';
import * as m025 from './025-run-step-summary.ts';
import * as m026 from './026-oidc-max-age.ts';
import * as m027 from './027-rotation-retries.ts';
import * as m028 from './028-oidc-bound-claims-type.ts';
import * as m029 from './029-root-generation-attempts.ts';

type DialectMigration = { up(db: Kysely<unknown>, dialect: DialectName): Promise<void> };

/** Ordered migrations; names sort lexically, so keep the numeric prefix. */
const migrations: Record<string, DialectMigration> = {
  '001-core': m001,
  '002-identity': m002,
  '003-audit': m003,
  '004-audit-checkpoints': m004,
  '005-connectors': m005,
  '006-automations': m006,
  '007-escrow': m007,
  '009-rotation': m009,
  '010-audit-rowid': m010,
  '011-credential-sweep': m011,
  '012-audit-usage': m012,
  '013-automation-fires': m013,
  '014-audit-tenant-seq': m014,
  '015-totp-pending': m015,
  '016-audit-checkpoint-links': m016,
  '017-rotation-policy-setter': m017,
  '018-run-token-environment': m018,
  '019-audit-event-macs': m019,
  '020-totp-enrolment-tickets': m020,
  '021-factor-epochs': m021,
  '022-secret-name-collation': m022,
  '023-approval-source': m023,
  '024-user-email': m024,
  '025-run-step-summary': m025,
  '026-oidc-max-age': m026,
  '027-rotation-retries': m027,
  '028-oidc-bound-claims-type': m028,
  '029-root-generation-attempts': m029,
};

/** The names of this version's migrations, in order. */
export const migrationNames = (): string[] => Object.keys(migrations);

/** Every migration of this version, for Kysely's migrator (tests upgrade from an older point with it). */
export function migrationProvider(dialect: DialectName): MigrationProvider {
  return {
    async getMigrations() {
      const out: Record<string, Migration> = {};
      for (const [name, m] of Object.entries(migrations)) out[name] = { up: (db) => m.up(db, dialect) };
      return out;
    },
  };
}

/**
 * The migrations this version knows that the schema has not had, read without writing anything:
 * Kysely's migrator creates its tables and takes a lock even when nothing is pending, which a
 * runtime role without DDL rights cannot do. `unknown`: applied migrations this version does not
 * know (the schema was migrated by a newer Keyhold).
 */
export async function pendingMigrations(db: Kysely<unknown>, dialect: DialectName): Promise<{ pending: string[]; unknown: string[] }> {
  const known = Object.keys(migrations).sort();
  const table = dialect === 'postgres'
    ? (await sql<{ name: string | null }>`select to_regclass(format('%I.kysely_migration', current_schema()))::text as name`.execute(db)).rows[0]?.name
    : (await sql<{ name: string }>`select name from sqlite_master where type = 'table' and name = 'kysely_migration'`.execute(db)).rows[0]?.name;
  if (!table) return { pending: known, unknown: [] };
  const applied = new Set((await sql<{ name: string }>`select name from ${sql.raw(table)}`.execute(db)).rows.map((r) => r.name));
  return { pending: known.filter((n) => !applied.has(n)), unknown: [...applied].filter((n) => !(n in migrations)).sort() };
}

/**
 * Applies pending migrations; Kysely's migrator takes a lock so concurrent starts are safe. The names it applied
 * (none when another node applied them while this one waited for the lock).
 */
export function migrateToLatest(db: Kysely<unknown>, dialect: DialectName): Promise<string[]> {
  return migrateTo(db, dialect, null);
}

/** Applies migrations up to and including `target` (null: all of them); upgrade tests start from an older point with it. */
export async function migrateTo(db: Kysely<unknown>, dialect: DialectName, target: string | null): Promise<string[]> {
  // Kysely looks for its migration tables in EVERY schema unless told which one: a database holding
  // another schema with them (a second Keyhold, a parallel test) would make it skip creating ours.
  const schema = dialect === 'postgres' ? (await sql<{ name: string }>`select current_schema() as name`.execute(db)).rows[0]?.name : undefined;
  const migrator = new Migrator({ db: schema ? scopedToSchema(db, schema) : db, provider: migrationProvider(dialect), ...(schema ? { migrationTableSchema: schema } : {}) });
  const { error, results } = await (target === null ? migrator.migrateToLatest() : migrator.migrateTo(target));
  const failed = results?.find((r) => r.status === 'Error');
  if (error || failed) throw new Error(`database migration ${failed?.migrationName ?? ''} failed: ${String((error as Error)?.message ?? error)}`);
  return (results ?? []).filter((r) => r.status === 'Success').map((r) => r.migrationName);
}
