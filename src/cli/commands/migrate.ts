import { positionals, str, UsageError } from '../args.ts';
import type { Command } from '../command.ts';
import { EXIT_USAGE } from '../run.ts';

const POSTGRES_URL = /^postgres(ql)?:\/\//;

/**
 * `keyhold migrate --database-url OWNER_URL --grant-to ROLE`: the production split on PostgreSQL.
 * The schema owner applies the migrations; the server then runs as ROLE, which may read and write
 * its tables but only read and append to the audit tables, and can alter nothing. Talks to the
 * database directly, not to a server.
 */
export const migrateCommand: Command = {
  name: 'migrate',
  summary: 'Apply database migrations as the schema owner and grant the server\'s role its rights (PostgreSQL)',
  usage: 'migrate --database-url postgres://OWNER@HOST/DB [--grant-to ROLE]',
  help: [
    '--database-url  the schema owner\'s connection (or KEYHOLD_MIGRATE_DATABASE_URL); the schema is the first',
    '                of its search_path, e.g. ?options=-c%20search_path%3Dkeyhold',
    '--grant-to      the role the server runs as (its KEYHOLD_DATABASE_URL user): USAGE on the schema;',
    '                SELECT, INSERT, UPDATE, DELETE on its tables; only SELECT, INSERT on audit_events and',
    '                audit_checkpoints; no CREATE, TRUNCATE or ownership. Computed from the catalog on each run:',
    '                run it again after every upgrade. Anything else granted to the role directly is revoked.',
    'SQLite databases migrate when the server starts; this command is for PostgreSQL.',
  ],
  options: { 'database-url': { type: 'string' }, 'grant-to': { type: 'string' } },
  async run({ args, flags, out, deps }) {
    positionals(args, [], migrateCommand.usage);
    const url = str(flags, 'database-url') ?? deps.env.KEYHOLD_MIGRATE_DATABASE_URL;
    if (!url) throw new UsageError('no database given', 'pass --database-url (the schema owner\'s connection) or set KEYHOLD_MIGRATE_DATABASE_URL');
    if (!POSTGRES_URL.test(url)) throw new UsageError('--database-url/KEYHOLD_MIGRATE_DATABASE_URL must be a postgres:// URL', 'SQLite migrates when the server starts');
    if (str(flags, 'database-url') !== undefined && URL.canParse(url) && new URL(url).password !== '') {
      out.note('warning: --database-url carries a password, visible to every user of this machine (ps) and kept in shell history; prefer KEYHOLD_MIGRATE_DATABASE_URL');
    }
    const role = str(flags, 'grant-to');
    if (role !== undefined && role.trim() === '') throw new UsageError('--grant-to needs a role name');
    // Imported here: every other command stays free of the database drivers.
    const { openStorage, MigrationsPendingError, StorageRefusal } = await import('../../storage/database.ts');
    const { grantRuntimeRole, GrantError } = await import('../../storage/postgres/grants.ts');
    let storage;
    try {
      storage = await openStorage({ url, poolSize: 1 });
    } catch (err) {
      if (err instanceof MigrationsPendingError) {
        out.note(`error: the --database-url user "${err.user}" cannot apply the pending migrations: it must own schema "${err.schema}" and its tables`);
        return EXIT_USAGE;
      }
      // A schema a newer Keyhold migrated, or none to use: the operator's to fix, said in one line.
      if (err instanceof StorageRefusal) {
        out.note(`error: ${err.message}`);
        return EXIT_USAGE;
      }
      throw err;
    }
    try {
      const grants = role === undefined ? null : await grantRuntimeRole(storage.db, role);
      const applied = storage.migrationsApplied;
      out.result({ applied, grants }, () => [
        applied.length > 0 ? `Applied ${applied.length} migration(s): ${applied.join(', ')}` : 'The schema is up to date.',
        ...(grants
          ? [`Granted "${grants.role}" in schema "${grants.schema}" (everything else it held directly there was revoked):`,
            ...Object.entries(grants.privileges).map(([table, p]) => `  ${table}: ${p.join(', ')}`)]
          : ['No runtime role given (--grant-to): run the server as a role without ownership, or only a trigger keeps the audit log append-only.']),
      ].join('\n'));
    } catch (err) {
      if (err instanceof GrantError) {
        out.note(`error: ${err.message}`);
        return EXIT_USAGE;
      }
      // A schema a newer Keyhold migrated, or none to use: the operator's to fix, said in one line.
      if (err instanceof StorageRefusal) {
        out.note(`error: ${err.message}`);
        return EXIT_USAGE;
      }
      throw err;
    } finally {
      await storage.close();
    }
  },
};
