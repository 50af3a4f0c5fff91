import { sql, type Kysely } from 'kysely';

/** The tables whose rows are never changed or removed once written. */
export const APPEND_ONLY_TABLES = ['audit_events', 'audit_checkpoints', 'audit_keyed_from'] as const;

/**
 * What keeps the audit tables append-only against the database user the server runs as:
 * `privileges` when that user can neither change, remove nor truncate their rows nor disable the
 * trigger (not a superuser, no ownership of the tables or the schema, no UPDATE, DELETE or TRUNCATE;
 * membership of a role that has any of these counts, inherited or reached by SET ROLE);
 * `trigger` when only the trigger does, which that user can disable (`ALTER TABLE ... DISABLE TRIGGER`).
 */
export type AppendOnlyGuarantee = 'privileges' | 'trigger';

export interface AppendOnlyReport {
  guarantee: AppendOnlyGuarantee;
  /** Why it is only the trigger, e.g. `owns audit_events`, `has UPDATE on audit_checkpoints`. */
  reasons: string[];
}

/**
 * Reads from the catalog what `role` (default: the connection's user) may do to the audit tables of
 * the current schema. Read only: any user may run it.
 */
export async function appendOnlyReport<DB>(db: Kysely<DB>, role?: string): Promise<AppendOnlyReport> {
  const who = role === undefined ? sql`current_user` : sql`${role}`;
  const { rows } = await sql<{ superuser: boolean; owns_schema: boolean; relname: string | null; owner: boolean; can_update: boolean; can_delete: boolean; can_truncate: boolean }>`
    -- MEMBER, not USAGE: a NOINHERIT member holds none of a role's rights until it runs SET ROLE, which it may.
    select r.rolsuper or exists (select 1 from pg_roles s where s.rolsuper and pg_has_role(r.oid, s.oid, 'MEMBER')) as superuser,
      pg_has_role(r.oid, n.nspowner, 'MEMBER') as owns_schema,
      c.relname::text as relname,
      coalesce(pg_has_role(r.oid, c.relowner, 'MEMBER'), false) as owner,
      -- Column grants count: UPDATE on one column of an event is enough to rewrite it. Each role it
      -- is a member of (itself included) counts, whether its rights are inherited or reached by SET ROLE.
      coalesce(bool_or(has_table_privilege(m.oid, c.oid, 'UPDATE') or has_any_column_privilege(m.oid, c.oid, 'UPDATE')), false) as can_update,
      coalesce(bool_or(has_table_privilege(m.oid, c.oid, 'DELETE')), false) as can_delete,
      coalesce(bool_or(has_table_privilege(m.oid, c.oid, 'TRUNCATE')), false) as can_truncate
    from pg_roles r
    join pg_namespace n on n.nspname = current_schema()
    left join pg_class c on c.relnamespace = n.oid and c.relkind in ('r', 'p')
      and c.relname in (${sql.join(APPEND_ONLY_TABLES.map((t) => sql`${t}`))})
    join pg_roles m on pg_has_role(r.oid, m.oid, 'MEMBER')
    where r.rolname = ${who}
    group by r.oid, r.rolsuper, n.nspowner, c.oid, c.relname, c.relowner`.execute(db);
  const first = rows[0];
  if (!first) return { guarantee: 'trigger', reasons: ['the role or the schema was not found'] };
  const reasons: string[] = [];
  if (first.superuser) reasons.push('is a superuser');
  if (first.owns_schema) reasons.push('owns the schema');
  for (const r of rows) {
    if (r.relname === null) continue;
    if (r.owner) reasons.push(`owns ${r.relname}`);
    for (const [can, what] of [[r.can_update, 'UPDATE'], [r.can_delete, 'DELETE'], [r.can_truncate, 'TRUNCATE']] as const) {
      if (can) reasons.push(`has ${what} on ${r.relname}`);
    }
  }
  return { guarantee: reasons.length === 0 ? 'privileges' : 'trigger', reasons };
}

/**
 * Whether the connection's user can apply migrations to the current schema: a superuser, or a user
 * that may create in the schema and owns (or has the privileges of the owner of) every table in it.
 */
export async function canApplyMigrations(db: Kysely<unknown>): Promise<boolean> {
  const { rows } = await sql<{ can: boolean | null }>`
    select r.rolsuper or (
      has_schema_privilege(current_user, current_schema(), 'CREATE')
      and not exists (
        select 1 from pg_class c join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = current_schema() and c.relkind in ('r', 'p', 'S', 'v', 'm')
          and not pg_has_role(current_user, c.relowner, 'USAGE'))
    ) as can
    from pg_roles r where r.rolname = current_user`.execute(db);
  return rows[0]?.can === true;
}

/** The connection's user and current schema, for messages. */
export async function whoAndWhere(db: Kysely<unknown>): Promise<{ user: string; schema: string | null }> {
  const { rows } = await sql<{ user: string; schema: string | null }>`select current_user::text as user, current_schema()::text as schema`.execute(db);
  return rows[0]!;
}
