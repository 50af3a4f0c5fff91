import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, loadConfig } from './config.ts';

/** Start-up settings: defaults, and every refusal naming the variable (a typo never falls back to a default). */

const refused = (env: Record<string, string>, setting: RegExp) =>
  assert.throws(() => loadConfig(env), (err: unknown) => err instanceof ConfigError && setting.test((err as Error).message), JSON.stringify(env));

test('defaults: loopback, port 8200, SQLite in the data directory, 64 KiB values, 15 minute machine tokens', () => {
  const c = loadConfig({ KEYHOLD_DATA_DIR: '/var/lib/keyhold' });
  assert.deepEqual([c.host, c.port, c.databaseUrl, c.tls, c.dev, c.logLevel], ['127.0.0.1', 8200, 'sqlite:/var/lib/keyhold/keyhold.db', null, false, 'info']);
  assert.equal(c.limits.maxValueBytes, 65_536);
  assert.equal(c.identity.machineTokenTtlMs, 15 * 60_000);
  assert.equal(c.audit.checkpointIntervalMs, 60_000);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.audit), 'read once, then frozen');
});

test('an unknown KEYHOLD_* variable stops start-up; the CLI\'s and the SDK\'s own variables do not', () => {
  refused({ KEYHOLD_PROT: '8300' }, /KEYHOLD_PROT is not a known setting/);
  assert.doesNotThrow(() => loadConfig({ KEYHOLD_ADDR: 'http://127.0.0.1:8200', KEYHOLD_TOKEN: 'kh_x', KEYHOLD_TENANT: 'default', KEYHOLD_ENVIRONMENT: 'production' }));
  assert.doesNotThrow(() => loadConfig({ OTHER_VARIABLE: 'x' }), 'only the KEYHOLD_ prefix is checked');
});

test('bad values are refused naming the setting', () => {
  refused({ KEYHOLD_HOST: '0.0.0.0' }, /KEYHOLD_HOST is 0\.0\.0\.0: plain HTTP is only allowed on loopback/);
  refused({ KEYHOLD_TLS_CERT: '/etc/cert.pem' }, /KEYHOLD_TLS_CERT\/KEYHOLD_TLS_KEY must be set together/);
  refused({ KEYHOLD_PORT: '70000' }, /KEYHOLD_PORT/);
  refused({ KEYHOLD_DATABASE_URL: 'mysql://db' }, /KEYHOLD_DATABASE_URL must start with sqlite: or postgres:\/\//);
  refused({ KEYHOLD_DATABASE_URL: 'sqlite:relative.db' }, /sqlite: paths must be absolute/);
  refused({ KEYHOLD_LOG_LEVEL: 'loud' }, /KEYHOLD_LOG_LEVEL/);
  refused({ KEYHOLD_DEV: 'yes' }, /KEYHOLD_DEV must be true or false/);
  refused({ KEYHOLD_ROLLBACK_WINDOW: 'a week' }, /KEYHOLD_ROLLBACK_WINDOW/);
  refused({ KEYHOLD_AUDIT_FILE: 'audit.jsonl' }, /KEYHOLD_AUDIT_FILE must be an absolute path/);
  refused({ KEYHOLD_AUDIT_SYSLOG: 'syslog.example:514' }, /KEYHOLD_AUDIT_SYSLOG must look like/);
  refused({ KEYHOLD_ROTATION_LEASE: '500ms' }, /KEYHOLD_ROTATION_LEASE must be at least 1s/);
});

test('TLS allows any address; --dev wins over KEYHOLD_DEV', () => {
  const c = loadConfig({ KEYHOLD_HOST: '0.0.0.0', KEYHOLD_TLS_CERT: '/c.pem', KEYHOLD_TLS_KEY: '/k.pem', KEYHOLD_DEV: 'false' }, { dev: true });
  assert.deepEqual([c.host, c.tls, c.dev], ['0.0.0.0', { certFile: '/c.pem', keyFile: '/k.pem' }, true]);
});

test('SMTP notifications go over TLS: smtps:// is implicit TLS, smtp:// requires STARTTLS unless told ?tls=none, and credentials never go plain off loopback', () => {
  const smtp = (url: string) => loadConfig({ KEYHOLD_NOTIFY_SMTP: url, KEYHOLD_NOTIFY_SMTP_FROM: 'keyhold@example.com' }).notify.smtp!;
  const pick = (s: ReturnType<typeof smtp>) => [s.host, s.port, s.secure, s.starttls, s.username, s.password];
  assert.deepEqual(pick(smtp('smtps://bot:p%40ss@smtp.example.com')), ['smtp.example.com', 465, true, 'off', 'bot', 'p@ss']);
  assert.deepEqual(pick(smtp('smtp://bot:pass@smtp.example.com:587')), ['smtp.example.com', 587, false, 'required', 'bot', 'pass']);
  assert.deepEqual(pick(smtp('smtp://relay.internal?tls=none')), ['relay.internal', 25, false, 'off', null, null]);
  assert.deepEqual(pick(smtp('smtp://127.0.0.1:2525')), ['127.0.0.1', 2525, false, 'if-offered', null, null], 'a local MTA may not offer STARTTLS');
  assert.deepEqual(pick(smtp('smtp://u:p@[::1]:25?tls=none')), ['::1', 25, false, 'off', 'u', 'p']);
  refused({ KEYHOLD_NOTIFY_SMTP: 'smtp://bot:pass@smtp.example.com?tls=none', KEYHOLD_NOTIFY_SMTP_FROM: 'k@example.com' }, /KEYHOLD_NOTIFY_SMTP with \?tls=none may carry credentials only to a loopback relay/);
  refused({ KEYHOLD_NOTIFY_SMTP: 'smtps://smtp.example.com?tls=none', KEYHOLD_NOTIFY_SMTP_FROM: 'k@example.com' }, /KEYHOLD_NOTIFY_SMTP takes only \?tls=none/);
  refused({ KEYHOLD_NOTIFY_SMTP: 'smtp://smtp.example.com?tls=maybe', KEYHOLD_NOTIFY_SMTP_FROM: 'k@example.com' }, /KEYHOLD_NOTIFY_SMTP takes only \?tls=none/);
});
