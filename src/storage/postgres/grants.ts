import { sql, type Kysely } from 'kysely';
import { APPEND_ONLY_TABLES, appendOnlyReport } from './privileges.ts';

/** Kysely's migration bookkeeping: the server reads it to see whether migrations are pending. */
const MIGRATION_TABLES = new Set(['kysely_migration', 'kysely_migration_lock']);
const APPEND_ONLY = new Set<string>(APPEND_ONLY_TABLES);

/** A runtime role that cannot be given the rights asked for, with what to do about it. */
export class GrantError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'GrantError';
  }
}

export interface GrantSummary {
  role: string;
  schema: string;
  /** Table (or sequence) name to the privileges now granted on it, nothing else. */
  privileges: Record<string, string[]>;
}

/** What the server needs on one relation of its schema. */
function privilegesFor(name: string, kind: string): string[] {
  if (kind === 'S') return ['USAGE', 'SELECT'];
  if (MIGRATION_TABLES.has(name)) return ['SELECT'];
  if (APPEND_ONLY.has(name)) return ['SELECT', 'INSERT'];
  return ['SELECT', 'INSERT', 'UPDATE', 'DELETE'];
}

const ident = (name: string) => sql.id(name);

/**
 * Gives `role` exactly what the server needs in the current schema, computed from the catalog on
 * each run so tables added by later migrations are covered: USAGE on the schema; SELECT, INSERT,
 * UPDATE, DELETE on ordinary tables; SELECT and INSERT only on the audit tables; SELECT on the
 * migration bookkeeping; USAGE and SELECT on sequences. Never CREATE, TRUNCATE, TRIGGER or ownership.
 * Everything granted to the role directly before is revoked first, in the same transaction, so
 * running it again converges (and a server running meanwhile never sees its rights missing).
 * Refuses a role that would still be able to alter the audit tables (a superuser, an owner).
 */
export async function grantRuntimeRole<DB>(db: Kysely<DB>, role: string): Promise<GrantSummary> {
  return db.transaction().execute(async (trx) => {
    const schema = (await sql<{ schema: string | null }>`select current_schema()::text as schema`.execute(trx)).rows[0]?.schema;
    if (!schema) throw new GrantError('the connection has no current schema: set search_path to the schema Keyhold uses');
    const found = (await sql<{ super: boolean; is_me: boolean }>`
      select r.rolsuper or exists (select 1 from pg_roles s where s.rolsuper and pg_has_role(r.oid, s.oid, 'MEMBER')) as super,
        r.rolname = current_user as is_me from pg_roles r where r.rolname = ${role}`.execute(trx)).rows[0];
    if (!found) throw new GrantError(`there is no database role "${role}": create it first (CREATE ROLE ... LOGIN)`);
    if (found.is_me) throw new GrantError(`"${role}" is the user migrating (the owner); the server must run as a different role`);
    if (found.super) throw new GrantError(`"${role}" is (or may SET ROLE to) a superuser, which no privilege restrains; the server must run as an ordinary role`);
    const relations = (await sql<{ name: string; kind: string; owned: boolean }>`
      select c.relname::text as name, c.relkind::text as kind, pg_has_role(${role}, c.relowner, 'MEMBER') as owned
      from pg_class c join pg_namespace n on n.oid = c.relnamespace
      where n.nspname = ${schema} and c.relkind in ('r', 'p', 'S', 'v', 'm') order by c.relname`.execute(trx)).rows;
    const owned = relations.filter((r) => r.owned).map((r) => r.name);
    if (owned.length > 0) {
      throw new GrantError(`"${role}" owns (or has the rights of the owner of) ${owned.join(', ')} in schema "${schema}": `
        + 'make the migrating user the owner (ALTER TABLE ... OWNER TO ...) and run again');
    }
    const ownsSchema = (await sql<{ owns: boolean }>`
      select pg_has_role(${role}, nspowner, 'MEMBER') as owns from pg_namespace where nspname = ${schema}`.execute(trx)).rows[0]?.owns;
    if (ownsSchema) throw new GrantError(`"${role}" owns schema "${schema}" and could drop its tables: ALTER SCHEMA ... OWNER TO the migrating user`);

    await sql`revoke all on all tables in schema ${ident(schema)} from ${ident(role)}`.execute(trx);
    await sql`revoke all on all sequences in schema ${ident(schema)} from ${ident(role)}`.execute(trx);
    await sql`revoke all on schema ${ident(schema)} from ${ident(role)}`.execute(trx);
    await sql`grant usage on schema ${ident(schema)} to ${ident(role)}`.execute(trx);
    const privileges: Record<string, string[]> = {};
    for (const r of relations) {
      const granted = privilegesFor(r.name, r.kind);
      const target = r.kind === 'S' ? sql`sequence` : sql`table`;
      await sql`grant ${sql.raw(granted.join(', '))} on ${target} ${ident(schema)}.${ident(r.name)} to ${ident(role)}`.execute(trx);
      privileges[r.name] = granted;
    }
    // Rights held through another role or PUBLIC are not ours to revoke: say so rather than promise.
    const report = await appendOnlyReport(trx, role);
    if (report.guarantee !== 'privileges') {
      throw new GrantError(`after granting, "${role}" still ${report.reasons.join(', ')} (through membership of another role or PUBLIC): revoke that and run again`);
    }
    return { role, schema, privileges };
  });
}
