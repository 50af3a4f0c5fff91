import { isAbsolute, join, resolve } from 'node:path';
import { isLoopbackHost } from '../platform/addresses.ts';
import { isMailAddress } from '../platform/mail-address.ts';
import { parseServerAddress } from '../platform/server-address.ts';
import { ConfigError, DAY, LIFETIME, RETENTION, SECOND, TIMER, int, parseDuration, timeoutSetting } from './parse.ts';

export { ConfigError } from './parse.ts';

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

const LOG_LEVELS: LogLevel[] = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

export interface Limits {
  maxNameLength: number;
  maxValueBytes: number;
  maxBodyBytes: number;
}

/** Server configuration: parsed once from the environment and flags, validated, frozen, passed down. */
export interface Config {
  dataDir: string;
  databaseUrl: string;
  host: string;
  port: number;
  /** `caFile`: the CA that issued the certificate (KEYHOLD_TLS_CA), which script steps trust; null: the certificate itself. */
  tls: { certFile: string; keyFile: string; caFile: string | null } | null;
  /** Where script steps reach this server (KEYHOLD_SCRIPT_ADDR, an origin); null: its own listen address. */
  scriptAddress: string | null;
  dev: boolean;
  logLevel: LogLevel;
  limits: Limits;
  rollbackWindowMs: number;
  retentionSweepMs: number;
  /** How often every tenant KEK is self-tested while unsealed (SPEC §2). */
  selfTestIntervalMs: number;
  /** At stop, how long requests still in flight are waited for before their connections are cut. */
  shutdownGraceMs: number;
  identity: IdentitySettings;
  audit: AuditSettings;
  rotation: RotationSettings;
  notify: NotifySettings;
  database: DatabaseSettings;
}

/**
 * Bounds on every statement of the server's PostgreSQL pool (KEYHOLD_DB_*), so a request waiting on
 * a lock some hung session holds, or a runaway query, gives its connection back. 0: none set by
 * Keyhold (PostgreSQL's own setting applies, off unless the role or database sets one). SQLite has
 * its busy timeout instead and ignores these.
 */
export interface DatabaseSettings {
  /** A statement waiting this long for a lock gives up: TRANSACTION_CONFLICT (409, retry). */
  lockTimeoutMs: number;
  /** A statement running this long is cancelled: DATABASE_TIMEOUT (503). */
  statementTimeoutMs: number;
}

/** How rotations hold their leases and how often the rotation scheduler looks (KEYHOLD_ROTATION_*). */
export interface RotationSettings {
  /** A node that stops renewing a rotation's lease for this long is presumed dead; another takes over. */
  leaseMs: number;
  /** Scheduler pass interval. */
  tickMs: number;
  /** Dependent connector health checks in flight at once. */
  checkConcurrency: number;
  /** How long one rotator call (one protocol step, a restore, a finalize) may take before it is aborted and fails. */
  stepTimeoutMs: number;
}

/** Notification channels (KEYHOLD_NOTIFY_*): a signed webhook and/or SMTP e-mail. */
export interface NotifySettings {
  webhook: { url: string; secret: string } | null;
  /**
   * `secure`: implicit TLS (smtps://). Otherwise `starttls` (smtp://): `required`; `if-offered` to a loopback relay;
   * `off` only when the URL says `?tls=none` (a relay reached in plain text: no credentials unless it is on loopback).
   */
  smtp: { host: string; port: number; secure: boolean; starttls: 'required' | 'if-offered' | 'off'; username: string | null; password: string | null; from: string } | null;
}

/** Where the durable audit log is streamed to, and how often the chain head is signed. */
export interface AuditSettings {
  file: string | null;
  syslog: { transport: 'udp' | 'tcp'; host: string; port: number } | null;
  webhook: { url: string; secret: string | null } | null;
  checkpointIntervalMs: number;
}

export interface IdentitySettings {
  /** How recent a second factor must be for reveal, approve, rotate and admin actions. */
  stepUpWindowMs: number;
  /** A session unused this long expires. */
  sessionIdleMs: number;
  /** A session expires this long after login, however active. */
  sessionAbsoluteMs: number;
  /** Lifetime of machine access tokens from a client-secret or JWT exchange. */
  machineTokenTtlMs: number;
  /**
   * How long an expired or revoked session or machine token stays in the database before the
   * sweep deletes it, so a recent logout or revocation can still be looked up by its id.
   */
  credentialGraceMs: number;
}

/**
 * Reads KEYHOLD_* settings. Unknown KEYHOLD_* variables (in any case) are rejected so a typo never
 * silently falls back to a default.
 */
export function loadConfig(env: Record<string, string | undefined>, flags: { dev?: boolean } = {}): Readonly<Config> {
  const known = new Set([
    'KEYHOLD_DATA_DIR', 'KEYHOLD_DATABASE_URL', 'KEYHOLD_HOST', 'KEYHOLD_PORT', 'KEYHOLD_TLS_CERT', 'KEYHOLD_TLS_KEY', 'KEYHOLD_TLS_CA', 'KEYHOLD_SCRIPT_ADDR',
    'KEYHOLD_DEV', 'KEYHOLD_LOG_LEVEL', 'KEYHOLD_MAX_VALUE_BYTES', 'KEYHOLD_ROLLBACK_WINDOW', 'KEYHOLD_RETENTION_SWEEP', 'KEYHOLD_SELF_TEST_INTERVAL', 'KEYHOLD_SHUTDOWN_GRACE',
    'KEYHOLD_STEP_UP_WINDOW', 'KEYHOLD_SESSION_IDLE', 'KEYHOLD_SESSION_MAX', 'KEYHOLD_MACHINE_TOKEN_TTL', 'KEYHOLD_CREDENTIAL_GRACE',
    'KEYHOLD_ROTATION_LEASE', 'KEYHOLD_ROTATION_TICK', 'KEYHOLD_ROTATION_CHECK_CONCURRENCY', 'KEYHOLD_ROTATION_STEP_TIMEOUT',
    'KEYHOLD_NOTIFY_WEBHOOK', 'KEYHOLD_NOTIFY_WEBHOOK_SECRET', 'KEYHOLD_NOTIFY_SMTP', 'KEYHOLD_NOTIFY_SMTP_FROM',
    'KEYHOLD_DB_LOCK_TIMEOUT', 'KEYHOLD_DB_STATEMENT_TIMEOUT',
    'KEYHOLD_AUDIT_FILE', 'KEYHOLD_AUDIT_SYSLOG', 'KEYHOLD_AUDIT_WEBHOOK', 'KEYHOLD_AUDIT_WEBHOOK_SECRET', 'KEYHOLD_AUDIT_CHECKPOINT_INTERVAL',
    // client-side settings read by the CLI, not the server (`keyhold migrate` reads the schema owner's URL):
    'KEYHOLD_ADDR', 'KEYHOLD_TOKEN', 'KEYHOLD_TENANT', 'KEYHOLD_MIGRATE_DATABASE_URL',
    // read by the SDK in scripts and services (keyhold/sdk), which may share a shell with a server:
    'KEYHOLD_ENVIRONMENT',
  ]);
  // Any case: environment names are case-sensitive, so keyhold_port would otherwise be silently ignored.
  for (const key of Object.keys(env)) {
    const upper = key.toUpperCase();
    if (!upper.startsWith('KEYHOLD_') || known.has(key)) continue;
    throw new ConfigError(key, known.has(upper) ? `is not a known setting (names are upper case: ${upper})` : 'is not a known setting');
  }

  const dataDir = resolve(env.KEYHOLD_DATA_DIR ?? '.keyhold-data');
  const databaseUrl = env.KEYHOLD_DATABASE_URL ?? `sqlite:${join(dataDir, 'keyhold.db')}`;
  if (!/^(sqlite:|postgres(ql)?:\/\/)/.test(databaseUrl)) {
    throw new ConfigError('KEYHOLD_DATABASE_URL', 'must start with sqlite: or postgres://');
  }
  if (databaseUrl.startsWith('sqlite:') && !isAbsolute(databaseUrl.slice(7)) && databaseUrl !== 'sqlite::memory:') {
    throw new ConfigError('KEYHOLD_DATABASE_URL', 'sqlite: paths must be absolute');
  }

  const host = env.KEYHOLD_HOST ?? '127.0.0.1';
  const port = int('KEYHOLD_PORT', env.KEYHOLD_PORT ?? '8200', 0, 65535);
  const cert = env.KEYHOLD_TLS_CERT;
  const key = env.KEYHOLD_TLS_KEY;
  if (Boolean(cert) !== Boolean(key)) throw new ConfigError('KEYHOLD_TLS_CERT/KEYHOLD_TLS_KEY', 'must be set together');
  const tls = cert && key ? { certFile: cert, keyFile: key, caFile: env.KEYHOLD_TLS_CA || null } : null;
  // It names the issuer of the server's own certificate: without one it would silently do nothing.
  if (!tls && env.KEYHOLD_TLS_CA) throw new ConfigError('KEYHOLD_TLS_CA', 'is set without KEYHOLD_TLS_CERT and KEYHOLD_TLS_KEY: it names the CA that issued the server certificate');
  // Loopback by address, not by spelling: "127.evil.example" is a DNS name that may resolve anywhere.
  if (!tls && !isLoopbackHost(host)) {
    throw new ConfigError('KEYHOLD_HOST', `is ${host}: plain HTTP is only allowed on loopback; set KEYHOLD_TLS_CERT and KEYHOLD_TLS_KEY`);
  }

  const logLevel = (env.KEYHOLD_LOG_LEVEL ?? 'info') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('KEYHOLD_LOG_LEVEL', `must be one of ${LOG_LEVELS.join(', ')}`);

  const devEnv = env.KEYHOLD_DEV;
  if (devEnv !== undefined && devEnv !== 'true' && devEnv !== 'false') throw new ConfigError('KEYHOLD_DEV', 'must be true or false');

  const maxValueBytes = int('KEYHOLD_MAX_VALUE_BYTES', env.KEYHOLD_MAX_VALUE_BYTES ?? '65536', 1, 1_048_576);

  const dev = flags.dev ?? devEnv === 'true';
  // Dev mode initialises and unseals itself from a key on disk and keeps a root token beside it: never for anyone else to reach.
  if (dev && !isLoopbackHost(host)) {
    throw new ConfigError(flags.dev ? '--dev' : 'KEYHOLD_DEV', `is refused with KEYHOLD_HOST ${host}: dev mode listens on loopback only (its unseal key and root token are on disk in the clear)`);
  }

  return Object.freeze({
    dataDir,
    databaseUrl,
    host,
    port,
    tls,
    scriptAddress: scriptAddress(env.KEYHOLD_SCRIPT_ADDR),
    dev,
    logLevel,
    limits: Object.freeze({
      maxNameLength: 128,
      maxValueBytes,
      // JSON escaping can grow a value up to 6x (\u00XX); leave room for metadata.
      maxBodyBytes: maxValueBytes * 6 + 64 * 1024,
    }),
    rollbackWindowMs: parseDuration('KEYHOLD_ROLLBACK_WINDOW', env.KEYHOLD_ROLLBACK_WINDOW ?? '7d', RETENTION),
    retentionSweepMs: parseDuration('KEYHOLD_RETENTION_SWEEP', env.KEYHOLD_RETENTION_SWEEP ?? '1h', TIMER),
    selfTestIntervalMs: parseDuration('KEYHOLD_SELF_TEST_INTERVAL', env.KEYHOLD_SELF_TEST_INTERVAL ?? '1h', TIMER),
    // Below the usual stop timeouts (Kubernetes 30 s, systemd 90 s), which then end the process with SIGKILL.
    shutdownGraceMs: parseDuration('KEYHOLD_SHUTDOWN_GRACE', env.KEYHOLD_SHUTDOWN_GRACE ?? '10s', { min: 0, max: 10 * 60_000, text: 'between 0ms and 10m' }),
    identity: Object.freeze(identitySettings(env)),
    audit: Object.freeze(auditSettings(env)),
    rotation: Object.freeze(rotationSettings(env)),
    notify: Object.freeze(notifySettings(env)),
    database: Object.freeze(databaseSettings(env)),
  });
}

/**
 * KEYHOLD_SCRIPT_ADDR: an origin, held to the CLI's --addr rule (https, or http only to loopback) since a script's
 * SDK sends its run token there, and with no path, which the SDK refuses (it takes http(s)://host[:port]).
 */
function scriptAddress(raw: string | undefined): string | null {
  if (!raw) return null;
  const parsed = parseServerAddress(raw);
  if (!parsed.ok) throw new ConfigError('KEYHOLD_SCRIPT_ADDR', parsed.message);
  if (parsed.url.pathname !== '/') throw new ConfigError('KEYHOLD_SCRIPT_ADDR', `must be http(s)://host[:port] with no path (got "${raw}")`);
  return parsed.url.origin;
}

/**
 * PostgreSQL statement bounds: a lock waited for 5 s, a statement running 30 s. Each at most what
 * PostgreSQL takes (2^31-1 ms) by far; a lock bound must be shorter than the statement bound, which
 * would otherwise always fire first and turn every lock wait into a 503.
 */
export function databaseSettings(env: Record<string, string | undefined> = {}): DatabaseSettings {
  const lockText = env.KEYHOLD_DB_LOCK_TIMEOUT ?? '5s';
  const statementText = env.KEYHOLD_DB_STATEMENT_TIMEOUT ?? '30s';
  const lockTimeoutMs = timeoutSetting('KEYHOLD_DB_LOCK_TIMEOUT', lockText, { min: 100, max: 3_600_000, text: 'between 100ms and 1h' });
  const statementTimeoutMs = timeoutSetting('KEYHOLD_DB_STATEMENT_TIMEOUT', statementText, { min: SECOND, max: DAY, text: 'between 1s and 24h' });
  if (lockTimeoutMs > 0 && statementTimeoutMs > 0 && lockTimeoutMs >= statementTimeoutMs) {
    throw new ConfigError('KEYHOLD_DB_LOCK_TIMEOUT', `(${lockText}) must be shorter than KEYHOLD_DB_STATEMENT_TIMEOUT (${statementText}), or a lock wait ends as a statement timeout`);
  }
  return { lockTimeoutMs, statementTimeoutMs };
}

/** Rotation defaults: 30 s leases, a scheduler pass every 15 s, 32 health checks at once, 60 s for a rotator's step. */
export function rotationSettings(env: Record<string, string | undefined> = {}): RotationSettings {
  // Renewed every third of it, so a day keeps that timer far inside Node's limit.
  const leaseMs = parseDuration('KEYHOLD_ROTATION_LEASE', env.KEYHOLD_ROTATION_LEASE ?? '30s', { min: SECOND, max: DAY, text: 'between 1s and 1d' });
  return {
    leaseMs,
    tickMs: parseDuration('KEYHOLD_ROTATION_TICK', env.KEYHOLD_ROTATION_TICK ?? '15s', TIMER),
    checkConcurrency: int('KEYHOLD_ROTATION_CHECK_CONCURRENCY', env.KEYHOLD_ROTATION_CHECK_CONCURRENCY ?? '32', 1, 512),
    stepTimeoutMs: parseDuration('KEYHOLD_ROTATION_STEP_TIMEOUT', env.KEYHOLD_ROTATION_STEP_TIMEOUT ?? '60s', { min: SECOND, max: 3_600_000, text: 'between 1s and 1h' }),
  };
}

/**
 * KEYHOLD_NOTIFY_WEBHOOK=url (+ _SECRET, required), KEYHOLD_NOTIFY_SMTP=smtps://[user:pass@]host[:465] (implicit TLS)
 * or smtp://[user:pass@]host[:25] (STARTTLS required; `?tls=none` for a relay without TLS) (+ _FROM, required).
 */
export function notifySettings(env: Record<string, string | undefined> = {}): NotifySettings {
  let webhook: NotifySettings['webhook'] = null;
  if (env.KEYHOLD_NOTIFY_WEBHOOK) {
    const secret = env.KEYHOLD_NOTIFY_WEBHOOK_SECRET;
    if (!secret || secret.length < 16) throw new ConfigError('KEYHOLD_NOTIFY_WEBHOOK_SECRET', 'must be set (at least 16 characters) when KEYHOLD_NOTIFY_WEBHOOK is');
    let url: URL;
    try {
      url = new URL(env.KEYHOLD_NOTIFY_WEBHOOK);
    } catch {
      throw new ConfigError('KEYHOLD_NOTIFY_WEBHOOK', 'is not a URL');
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new ConfigError('KEYHOLD_NOTIFY_WEBHOOK', 'must be an http(s) URL');
    if (url.protocol === 'http:' && !isLoopbackHost(url.hostname)) {
      throw new ConfigError('KEYHOLD_NOTIFY_WEBHOOK', 'must use https unless it points at loopback (127.0.0.0/8, ::1, localhost)');
    }
    if (url.username || url.password) {
      throw new ConfigError('KEYHOLD_NOTIFY_WEBHOOK', 'must not carry a user name or password (fetch refuses such a URL; the receiver checks the signature made with KEYHOLD_NOTIFY_WEBHOOK_SECRET)');
    }
    webhook = { url: env.KEYHOLD_NOTIFY_WEBHOOK, secret };
  }
  let smtp: NotifySettings['smtp'] = null;
  if (env.KEYHOLD_NOTIFY_SMTP) {
    let url: URL;
    try {
      url = new URL(env.KEYHOLD_NOTIFY_SMTP);
    } catch {
      throw new ConfigError('KEYHOLD_NOTIFY_SMTP', 'must look like smtp://user:password@host:587');
    }
    if ((url.protocol !== 'smtp:' && url.protocol !== 'smtps:') || !url.hostname) throw new ConfigError('KEYHOLD_NOTIFY_SMTP', 'must look like smtp://user:password@host:587');
    const secure = url.protocol === 'smtps:';
    const tls = url.searchParams.get('tls');
    if (tls !== null && (tls !== 'none' || secure)) throw new ConfigError('KEYHOLD_NOTIFY_SMTP', 'takes only ?tls=none, and only with smtp://');
    // The relay check the client makes again at send time, here so a setting that can never work stops start-up.
    if (tls === 'none' && url.username && !isLoopbackHost(url.hostname)) {
      throw new ConfigError('KEYHOLD_NOTIFY_SMTP', 'with ?tls=none may carry credentials only to a loopback relay');
    }
    const from = env.KEYHOLD_NOTIFY_SMTP_FROM;
    if (!from || !isMailAddress(from)) throw new ConfigError('KEYHOLD_NOTIFY_SMTP_FROM', 'must be an e-mail address when KEYHOLD_NOTIFY_SMTP is set');
    smtp = {
      host: url.hostname.replace(/^\[|\]$/g, ''), port: int('KEYHOLD_NOTIFY_SMTP port', url.port || (secure ? '465' : '25'), 1, 65535),
      secure, starttls: secure || tls === 'none' ? 'off' : isLoopbackHost(url.hostname) ? 'if-offered' : 'required',
      username: url.username ? decodeURIComponent(url.username) : null, password: url.password ? decodeURIComponent(url.password) : null, from,
    };
  }
  return { webhook, smtp };
}

/**
 * Identity defaults: step-up within 10 minutes, sessions idle 30 min / absolute 12 h, machine tokens
 * 15 min, dead credentials kept a day before the sweep deletes them.
 */
export function identitySettings(env: Record<string, string | undefined> = {}): IdentitySettings {
  return {
    stepUpWindowMs: parseDuration('KEYHOLD_STEP_UP_WINDOW', env.KEYHOLD_STEP_UP_WINDOW ?? '10m', LIFETIME),
    sessionIdleMs: parseDuration('KEYHOLD_SESSION_IDLE', env.KEYHOLD_SESSION_IDLE ?? '30m', LIFETIME),
    sessionAbsoluteMs: parseDuration('KEYHOLD_SESSION_MAX', env.KEYHOLD_SESSION_MAX ?? '12h', LIFETIME),
    machineTokenTtlMs: parseDuration('KEYHOLD_MACHINE_TOKEN_TTL', env.KEYHOLD_MACHINE_TOKEN_TTL ?? '15m', LIFETIME),
    credentialGraceMs: parseDuration('KEYHOLD_CREDENTIAL_GRACE', env.KEYHOLD_CREDENTIAL_GRACE ?? '24h', RETENTION),
  };
}

/** Audit streaming: KEYHOLD_AUDIT_FILE=/abs/path.jsonl, KEYHOLD_AUDIT_SYSLOG=udp://host:port|tcp://host:port, KEYHOLD_AUDIT_WEBHOOK=url. */
export function auditSettings(env: Record<string, string | undefined> = {}): AuditSettings {
  const file = env.KEYHOLD_AUDIT_FILE ?? null;
  if (file !== null && !isAbsolute(file)) throw new ConfigError('KEYHOLD_AUDIT_FILE', 'must be an absolute path');
  let syslog: AuditSettings['syslog'] = null;
  if (env.KEYHOLD_AUDIT_SYSLOG) {
    const m = /^(udp|tcp):\/\/([^:/]+):(\d{1,5})$/.exec(env.KEYHOLD_AUDIT_SYSLOG);
    if (!m) throw new ConfigError('KEYHOLD_AUDIT_SYSLOG', 'must look like udp://127.0.0.1:514 or tcp://127.0.0.1:601');
    syslog = { transport: m[1] as 'udp' | 'tcp', host: m[2]!, port: int('KEYHOLD_AUDIT_SYSLOG port', m[3]!, 1, 65535) };
  }
  const webhook = env.KEYHOLD_AUDIT_WEBHOOK ? { url: env.KEYHOLD_AUDIT_WEBHOOK, secret: env.KEYHOLD_AUDIT_WEBHOOK_SECRET ?? null } : null;
  return {
    file, syslog, webhook,
    checkpointIntervalMs: parseDuration('KEYHOLD_AUDIT_CHECKPOINT_INTERVAL', env.KEYHOLD_AUDIT_CHECKPOINT_INTERVAL ?? '1m', TIMER),
  };
}
