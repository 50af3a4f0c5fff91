import pg from 'pg';
import { fail } from '../../../../errors/index.ts';
import { settingsReader, type ConnectorType, type HealthOutcome } from '../connector-type.ts';

export interface PostgresSettings {
  host: string;
  port: number;
  database: string;
  /** disable: plain TCP; require: TLS without certificate checks; verify-full: TLS with them. */
  ssl: 'disable' | 'require' | 'verify-full';
  connectTimeoutMs: number;
}

/** Login credentials for one connection: the connector's own (`user`/`password`) or its privileged pair (`adminUser`/`adminPassword`). */
export interface PostgresCredentials {
  user: string;
  password: string;
}

const HOST = /^[A-Za-z0-9.\-:[\]]{1,253}$/;
const SSL = ['disable', 'require', 'verify-full'] as const;

/**
 * Opens a connection (the caller ends it). Exported for the rotation issue: a privileged connector's
 * `adminUser`/`adminPassword` slots open the session that runs `ALTER ROLE` for the connector's role.
 */
export async function connectPostgres(s: PostgresSettings, creds: PostgresCredentials): Promise<pg.Client> {
  const client = new pg.Client({
    host: s.host, port: s.port, database: s.database, user: creds.user, password: creds.password,
    ssl: s.ssl === 'disable' ? false : { rejectUnauthorized: s.ssl === 'verify-full' },
    connectionTimeoutMillis: s.connectTimeoutMs, query_timeout: s.connectTimeoutMs, statement_timeout: s.connectTimeoutMs,
    application_name: 'keyhold',
  });
  // An error event after connect (server restart) must not crash the process.
  client.on('error', () => {});
  try {
    await client.connect();
  } catch (err) {
    await client.end().catch(() => {});
    throw err;
  }
  return client;
}

/** Maps a pg error to the fixed vocabulary of health results: the server's message can name roles and hosts, so it is not passed on. */
function describe(err: unknown): HealthOutcome {
  const e = err as { code?: string; message?: string };
  if (e.code === '28P01' || e.code === '28000') return { ok: false, reason: 'auth_failed', detail: 'the server refused the credentials' };
  if (e.code === '3D000') return { ok: false, reason: 'connect_failed', detail: 'the database does not exist' };
  if (e.code === 'ECONNREFUSED' || e.code === 'ENOTFOUND' || e.code === 'EHOSTUNREACH' || e.code === 'ECONNRESET') return { ok: false, reason: 'unreachable', detail: 'the server could not be reached' };
  if (/timeout/i.test(e.message ?? '')) return { ok: false, reason: 'timeout', detail: 'the server did not answer within the timeout' };
  if (typeof e.code === 'string' && /^[0-9A-Z]{5}$/.test(e.code)) return { ok: false, reason: 'connect_failed', detail: `the server refused the session (SQLSTATE ${e.code})` };
  return { ok: false, reason: 'connect_failed', detail: 'the connection failed' };
}

/** PostgreSQL: host/port/database/ssl; slots user and password, and optionally a privileged adminUser/adminPassword pair. */
export const postgresType: ConnectorType<PostgresSettings> = {
  name: 'postgres',
  parseSettings(raw) {
    const r = settingsReader(raw, ['host', 'port', 'database', 'ssl', 'connectTimeoutMs']);
    const ssl = r.string('ssl', { max: 16 }) ?? 'disable';
    if (!(SSL as readonly string[]).includes(ssl)) fail('VALIDATION_FAILED', `settings.ssl must be one of ${SSL.join(', ')}`);
    return {
      host: r.string('host', { required: true, max: 253, pattern: HOST, hint: 'a host name or IP address' })!,
      port: r.int('port', 1, 65_535, 5432),
      database: r.string('database', { required: true, max: 63, pattern: /^[A-Za-z0-9_$-]+$/, hint: 'a database name (letters, digits, _ $ -)' })!,
      ssl: ssl as PostgresSettings['ssl'],
      connectTimeoutMs: r.int('connectTimeoutMs', 100, 60_000, 5000),
    };
  },
  slots: () => ({ required: ['user', 'password'], optional: ['adminUser', 'adminPassword'] }),
  async health(s, values) {
    let client: pg.Client | undefined;
    try {
      client = await connectPostgres(s, { user: values.user!, password: values.password! });
      const res = await client.query('select 1 as ok');
      return res.rows[0]?.ok === 1 ? { ok: true, reason: 'ok', detail: 'connected and ran select 1' } : { ok: false, reason: 'query_failed', detail: 'select 1 did not return 1' };
    } catch (err) {
      return describe(err);
    } finally {
      await client?.end().catch(() => {});
    }
  },
};
