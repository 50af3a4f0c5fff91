import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../database.ts';

/** Users with password + TOTP, sessions, machine identities, role grants, tenant policy versions. */
export async function up(db: Kysely<unknown>, dialect: DialectName): Promise<void> {
  const blob = dialect === 'postgres' ? sql`bytea` : sql`blob`;

  await db.schema.createTable('users')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('username', 'text', (c) => c.notNull())
    .addColumn('password_hash', 'text', (c) => c.notNull())
    // TOTP secret sealed under the tenant KEK (never stored in the clear); null until enrolment starts.
    .addColumn('totp_secret', blob)
    .addColumn('totp_enabled', 'integer', (c) => c.notNull().defaultTo(0))
    // Last accepted TOTP time step: a code for this step or an earlier one is a replay.
    .addColumn('totp_last_step', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('password_changed_at', 'bigint', (c) => c.notNull())
    .addColumn('disabled_at', 'bigint')
    .addUniqueConstraint('users_tenant_username', ['tenant_id', 'username'])
    .execute();

  await db.schema.createTable('sessions')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('user_id', 'text', (c) => c.notNull().references('users.id'))
    .addColumn('token_hash', 'text', (c) => c.notNull().unique())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('last_seen_at', 'bigint', (c) => c.notNull())
    .addColumn('expires_at', 'bigint', (c) => c.notNull())
    // When a second factor was last verified in this session (step-up freshness).
    .addColumn('mfa_at', 'bigint')
    .addColumn('revoked_at', 'bigint')
    .execute();
  await db.schema.createIndex('sessions_user').on('sessions').columns(['user_id']).execute();

  await db.schema.createTable('machine_identities')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('name', 'text', (c) => c.notNull())
    // 'client_secret' or 'oidc'
    .addColumn('kind', 'text', (c) => c.notNull())
    // Public identifier used in token exchanges; globally unique.
    .addColumn('client_id', 'text', (c) => c.notNull().unique())
    .addColumn('client_secret_hash', 'text')
    // OIDC federation: trusted issuer, its JWKS, and the claims a token must carry (JSON).
    .addColumn('oidc_issuer', 'text')
    .addColumn('oidc_jwks_url', 'text')
    .addColumn('oidc_audience', 'text')
    .addColumn('oidc_subject', 'text')
    .addColumn('oidc_claims', 'text')
    .addColumn('token_ttl_ms', 'bigint', (c) => c.notNull())
    // The person who owns this identity (separation of duties counts it as them).
    .addColumn('owner_user_id', 'text')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('disabled_at', 'bigint')
    .addUniqueConstraint('machine_identities_tenant_name', ['tenant_id', 'name'])
    .execute();

  // Machine access tokens live beside root tokens; a principal id ties them to their identity.
  await db.schema.alterTable('tokens').addColumn('principal_id', 'text').execute();

  await db.schema.createTable('grants')
    .addColumn('id', 'text', (c) => c.primaryKey())
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    // 'user' or 'machine'
    .addColumn('principal_type', 'text', (c) => c.notNull())
    .addColumn('principal_id', 'text', (c) => c.notNull())
    .addColumn('role', 'text', (c) => c.notNull())
    // JSON arrays; null = every environment / every secret name.
    .addColumn('environments', 'text')
    .addColumn('name_patterns', 'text')
    .addColumn('expires_at', 'bigint')
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addColumn('revoked_at', 'bigint')
    .execute();
  await db.schema.createIndex('grants_principal').on('grants').columns(['tenant_id', 'principal_id']).execute();

  await db.schema.createTable('tenant_policies')
    .addColumn('tenant_id', 'text', (c) => c.notNull().references('tenants.id'))
    .addColumn('version', 'integer', (c) => c.notNull())
    .addColumn('text', 'text', (c) => c.notNull())
    .addColumn('comment', 'text', (c) => c.notNull())
    .addColumn('created_at', 'bigint', (c) => c.notNull())
    .addColumn('created_by', 'text', (c) => c.notNull())
    .addPrimaryKeyConstraint('tenant_policies_pk', ['tenant_id', 'version'])
    .execute();

  // Which policy version is in force, and a generation bumped on every grant/identity/policy change
  // (the decision cache keys on it).
  await db.schema.alterTable('tenants').addColumn('policy_version', 'integer', (c) => c.notNull().defaultTo(0)).execute();
  await db.schema.alterTable('tenants').addColumn('authz_generation', 'integer', (c) => c.notNull().defaultTo(0)).execute();
}
