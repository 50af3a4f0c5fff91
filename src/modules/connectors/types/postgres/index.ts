import pg from 'pg';
import { onlyKeys, text, whole, withTimeout } from '../../settings.ts';
import type { ConnectorType } from '../../types.ts';

export interface PostgresSettings {
  host: string;
  port: number;
  database: string;
  ssl: 'disable' | 'require';
  timeoutMs: number;
}

/**
 * A PostgreSQL database: host/port/database settings, `user` and `password` slots. The health
 * check connects and runs `select 1`. Not proxied: credentials reach the database only through
 * Keyhold's own connections (health checks, and the rotation's ALTER ROLE).
 */
export const postgresConnector: ConnectorType<PostgresSettings> = {
  name: 'postgres',
  parseSettings(raw) {
    onlyKeys(raw, ['host', 'port', 'database', 'ssl', 'timeoutMs']);
    const ssl = text(raw, 'ssl', { default: 'disable', pattern: /^(disable|require)$/ }) as PostgresSettings['ssl'];
    return {
      host: text(raw, 'host', { pattern: /^[A-Za-z0-9.:_-]{1,255}$/ }),
      port: whole(raw, 'port', { default: 5432, min: 1, max: 65_535 }),
      database: text(raw, 'database', { pattern: /^[A-Za-z0-9_$-]{1,63}$/ }),
      ssl,
      timeoutMs: whole(raw, 'timeoutMs', { default: 5_000, min: 100, max: 60_000 }),
    };
  },
  requiredSlots: () => ['user', 'password'],
  reservedHeaders: () => [],
  destinations: () => [],
  async healthCheck(s, creds, opts) {
    const timeoutMs = Math.min(opts.timeoutMs, s.timeoutMs);
    const client = new pg.Client({
      host: s.host, port: s.port, database: s.database, user: creds.user, password: creds.password,
      ssl: s.ssl === 'require' ? { rejectUnauthorized: true } : false, connectionTimeoutMillis: timeoutMs,
      query_timeout: timeoutMs, application_name: 'keyhold-health-check',
    });
    client.on('error', () => undefined);
    try {
      await withTimeout(client.connect(), timeoutMs, 'connect');
      const res = await client.query<{ ok: number }>('select 1 as ok');
      const ok = res.rows[0]?.ok === 1;
      return { ok, detail: ok ? `connected to ${s.host}:${s.port}/${s.database} and ran select 1` : 'select 1 returned something else' };
    } catch (err) {
      // pg's messages name the user or database, never the password; the caller redacts anyway.
      const code = (err as { code?: string }).code;
      return { ok: false, detail: `PostgreSQL check failed${code ? ` (${code})` : ''}: ${(err as Error).message.slice(0, 200)}` };
    } finally {
      await client.end().catch(() => undefined);
    }
  },
};
