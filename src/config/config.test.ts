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

test('a setting spelt in the wrong case is refused naming the right spelling, not ignored', () => {
  refused({ keyhold_port: '8300' }, /keyhold_port is not a known setting \(names are upper case: KEYHOLD_PORT\)/);
  refused({ Keyhold_Database_Url: 'sqlite:/tmp/x.db' }, /Keyhold_Database_Url is not a known setting \(names are upper case: KEYHOLD_DATABASE_URL\)/);
  refused({ keyhold_prot: '8300' }, /keyhold_prot is not a known setting$/);
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
  refused({ KEYHOLD_ROTATION_LEASE: '500ms' }, /KEYHOLD_ROTATION_LEASE must be between 1s and 1d/);
});

test('TLS allows any address; --dev wins over KEYHOLD_DEV', () => {
  const c = loadConfig({ KEYHOLD_HOST: '0.0.0.0', KEYHOLD_TLS_CERT: '/c.pem', KEYHOLD_TLS_KEY: '/k.pem' });
  assert.deepEqual([c.host, c.tls, c.dev], ['0.0.0.0', { certFile: '/c.pem', keyFile: '/k.pem', caFile: null }, false]);
  assert.equal(loadConfig({ KEYHOLD_DEV: 'false' }, { dev: true }).dev, true);
  assert.equal(loadConfig({ KEYHOLD_HOST: '::1', KEYHOLD_DEV: 'true' }).dev, true);
});

test('script steps trust KEYHOLD_TLS_CA when given, the certificate itself otherwise; a CA without a certificate is refused', () => {
  const tls = { KEYHOLD_TLS_CERT: '/c.pem', KEYHOLD_TLS_KEY: '/k.pem' };
  assert.equal(loadConfig(tls).tls?.caFile, null, 'null: the certificate is its own CA (self-signed)');
  assert.equal(loadConfig({ ...tls, KEYHOLD_TLS_CA: '/ca.pem' }).tls?.caFile, '/ca.pem');
  assert.equal(loadConfig({ ...tls, KEYHOLD_TLS_CA: '' }).tls?.caFile, null, 'an empty setting is an unset one');
  refused({ KEYHOLD_TLS_CA: '/ca.pem' }, /KEYHOLD_TLS_CA is set without KEYHOLD_TLS_CERT and KEYHOLD_TLS_KEY/);
});

test('KEYHOLD_SCRIPT_ADDR: an https origin, or http only to loopback as for the CLI\'s --addr; unset, scripts use the listen address', () => {
  assert.equal(loadConfig({}).scriptAddress, null);
  const accepted: Array<[string, string]> = [
    ['https://keyhold.internal:8200', 'https://keyhold.internal:8200'],
    ['https://keyhold.internal:8200/', 'https://keyhold.internal:8200'],
    ['https://10.0.0.5', 'https://10.0.0.5'],
    ['http://127.0.0.1:8200', 'http://127.0.0.1:8200'],
    ['http://localhost:8200', 'http://localhost:8200'],
    ['http://[::1]:8200', 'http://[::1]:8200'],
  ];
  for (const [raw, origin] of accepted) assert.equal(loadConfig({ KEYHOLD_SCRIPT_ADDR: raw }).scriptAddress, origin, raw);
  const bad: Array<[string, RegExp]> = [
    ['keyhold.internal:8200', /KEYHOLD_SCRIPT_ADDR must be an http:\/\/ or https:\/\/ URL/],
    ['not a url', /KEYHOLD_SCRIPT_ADDR is not a URL/],
    ['ftp://keyhold.internal', /KEYHOLD_SCRIPT_ADDR must be an http:\/\/ or https:\/\/ URL/],
    ['http://keyhold.internal:8200', /KEYHOLD_SCRIPT_ADDR is http:\/\/keyhold\.internal:8200: plain http only to loopback/],
    ['http://10.0.0.5:8200', /plain http only to loopback/],
    ['http://127.evil.example:8200', /plain http only to loopback/],
    ['https://ops:hunter2-pw@keyhold.internal', /KEYHOLD_SCRIPT_ADDR must not carry a user name or password/],
    ['https://keyhold.internal/?tenant=x', /KEYHOLD_SCRIPT_ADDR must not carry a query or fragment/],
    ['https://keyhold.internal/keyhold', /KEYHOLD_SCRIPT_ADDR must be http\(s\):\/\/host\[:port\] with no path/],
  ];
  for (const [raw, message] of bad) {
    refused({ KEYHOLD_SCRIPT_ADDR: raw }, message);
    assert.throws(() => loadConfig({ KEYHOLD_SCRIPT_ADDR: raw }), (err: Error) => !err.message.includes('hunter2-pw'), 'a password is not echoed');
  }
});

test('loopback is an address, not a spelling: a DNS name starting with 127. needs TLS', () => {
  refused({ KEYHOLD_HOST: '127.evil.example' }, /KEYHOLD_HOST is 127\.evil\.example: plain HTTP is only allowed on loopback/);
  for (const host of ['127.0.0.1', '127.1.2.3', '::1', 'localhost']) assert.equal(loadConfig({ KEYHOLD_HOST: host }).host, host);
});

test('dev mode, with its unseal key and root token in the clear, never listens beyond loopback', () => {
  const tls = { KEYHOLD_TLS_CERT: '/c.pem', KEYHOLD_TLS_KEY: '/k.pem' };
  refused({ KEYHOLD_HOST: '0.0.0.0', ...tls, KEYHOLD_DEV: 'true' }, /KEYHOLD_DEV .*loopback/);
  assert.throws(() => loadConfig({ KEYHOLD_HOST: '10.1.2.3', ...tls }, { dev: true }), (err: unknown) => err instanceof ConfigError && /--dev.*loopback/.test((err as Error).message));
});

test('durations are bounded: timers fire between 100ms and 24 days apart, lifetimes stay within ten years', () => {
  for (const setting of ['KEYHOLD_RETENTION_SWEEP', 'KEYHOLD_AUDIT_CHECKPOINT_INTERVAL', 'KEYHOLD_ROTATION_TICK']) {
    refused({ [setting]: '0s' }, new RegExp(`${setting} must be between 100ms and 24d`));
    refused({ [setting]: '25d' }, new RegExp(`${setting} must be between 100ms and 24d`));
    assert.doesNotThrow(() => loadConfig({ [setting]: '24d' }), setting);
  }
  refused({ KEYHOLD_ROTATION_LEASE: '2d' }, /KEYHOLD_ROTATION_LEASE must be between 1s and 1d/);
  assert.equal(loadConfig({}).rotation.stepTimeoutMs, 60_000);
  assert.equal(loadConfig({ KEYHOLD_ROTATION_STEP_TIMEOUT: '5m' }).rotation.stepTimeoutMs, 300_000);
  refused({ KEYHOLD_ROTATION_STEP_TIMEOUT: '500ms' }, /KEYHOLD_ROTATION_STEP_TIMEOUT must be between 1s and 1h/);
  refused({ KEYHOLD_ROTATION_STEP_TIMEOUT: '2h' }, /KEYHOLD_ROTATION_STEP_TIMEOUT must be between 1s and 1h/);
  assert.equal(loadConfig({}).shutdownGraceMs, 10_000);
  assert.equal(loadConfig({ KEYHOLD_SHUTDOWN_GRACE: '0s' }).shutdownGraceMs, 0);
  refused({ KEYHOLD_SHUTDOWN_GRACE: '11m' }, /KEYHOLD_SHUTDOWN_GRACE must be between 0ms and 10m/);
  for (const setting of ['KEYHOLD_STEP_UP_WINDOW', 'KEYHOLD_SESSION_IDLE', 'KEYHOLD_SESSION_MAX', 'KEYHOLD_MACHINE_TOKEN_TTL']) {
    refused({ [setting]: '0ms' }, new RegExp(`${setting} must be between 1s and 3650d`));
    refused({ [setting]: '99999999999999999999d' }, new RegExp(`${setting} must be between 1s and 3650d`));
  }
  for (const setting of ['KEYHOLD_ROLLBACK_WINDOW', 'KEYHOLD_CREDENTIAL_GRACE']) {
    refused({ [setting]: '3651d' }, new RegExp(`${setting} must be between 0ms and 3650d`));
    assert.doesNotThrow(() => loadConfig({ [setting]: '0s' }), setting);
  }
});

test('a notification channel that could never deliver stops start-up naming its setting', () => {
  const secret = { KEYHOLD_NOTIFY_WEBHOOK_SECRET: '0123456789abcdef0123' };
  refused({ KEYHOLD_NOTIFY_WEBHOOK: 'not a url', ...secret }, /KEYHOLD_NOTIFY_WEBHOOK is not a URL/);
  refused({ KEYHOLD_NOTIFY_WEBHOOK: 'http://hooks.example.com/keyhold', ...secret }, /KEYHOLD_NOTIFY_WEBHOOK must use https unless it points at loopback/);
  refused({ KEYHOLD_NOTIFY_WEBHOOK: 'ftp://hooks.example.com/', ...secret }, /KEYHOLD_NOTIFY_WEBHOOK must be an http\(s\) URL/);
  assert.equal(loadConfig({ KEYHOLD_NOTIFY_WEBHOOK: 'http://127.0.0.1:9/hook', ...secret }).notify.webhook?.url, 'http://127.0.0.1:9/hook');
  // fetch refuses a URL with credentials in it: every delivery would fail (as "TypeError") and none arrive.
  for (const url of ['https://bot:hunter2@hooks.example.com/keyhold', 'https://bot@hooks.example.com/keyhold']) {
    refused({ KEYHOLD_NOTIFY_WEBHOOK: url, ...secret }, /KEYHOLD_NOTIFY_WEBHOOK must not carry a user name or password/);
  }
  // Without TLS a password would cross the network in the clear: the client would refuse every send.
  const from = { KEYHOLD_NOTIFY_SMTP_FROM: 'keyhold@example.com' };
  refused({ KEYHOLD_NOTIFY_SMTP: 'smtp://mailer:hunter2@mail.example.com:587?tls=none', ...from }, /KEYHOLD_NOTIFY_SMTP .*loopback/);
  refused({ KEYHOLD_NOTIFY_SMTP: 'not a url', ...from }, /KEYHOLD_NOTIFY_SMTP must look like/);
  assert.doesNotThrow(() => loadConfig({ KEYHOLD_NOTIFY_SMTP: 'smtp://mail.example.com:25', ...from }));
  assert.equal(loadConfig({ KEYHOLD_NOTIFY_SMTP: 'smtp://mailer:pw@127.0.0.1:2525', ...from }).notify.smtp?.password, 'pw');
  // A sender the client refuses (it goes into MAIL FROM and the From header) would fail every e-mail.
  for (const sender of ['"keyhold"@example.com', 'keyhold(bot)@example.com', 'a;b@example.com', 'keyhold@example.com,x@example.com']) {
    refused({ KEYHOLD_NOTIFY_SMTP: 'smtp://127.0.0.1:2525', KEYHOLD_NOTIFY_SMTP_FROM: sender }, /KEYHOLD_NOTIFY_SMTP_FROM must be an e-mail address/);
  }
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

test('PostgreSQL statement bounds: a 5 s lock wait and a 30 s statement by default, 0 for none, any duration in their range', () => {
  assert.deepEqual(loadConfig({}).database, { lockTimeoutMs: 5_000, statementTimeoutMs: 30_000 });
  assert.ok(Object.isFrozen(loadConfig({}).database));
  assert.deepEqual(loadConfig({ KEYHOLD_DB_LOCK_TIMEOUT: '250ms', KEYHOLD_DB_STATEMENT_TIMEOUT: '2m' }).database, { lockTimeoutMs: 250, statementTimeoutMs: 120_000 });
  assert.deepEqual(loadConfig({ KEYHOLD_DB_LOCK_TIMEOUT: '0', KEYHOLD_DB_STATEMENT_TIMEOUT: '0s' }).database, { lockTimeoutMs: 0, statementTimeoutMs: 0 });
  // Without a statement bound any lock bound is meaningful, however long.
  assert.deepEqual(loadConfig({ KEYHOLD_DB_LOCK_TIMEOUT: '1h', KEYHOLD_DB_STATEMENT_TIMEOUT: '0' }).database, { lockTimeoutMs: 3_600_000, statementTimeoutMs: 0 });
});

test('a bad PostgreSQL statement bound stops start-up naming the setting and what it takes', () => {
  for (const setting of ['KEYHOLD_DB_LOCK_TIMEOUT', 'KEYHOLD_DB_STATEMENT_TIMEOUT']) {
    for (const bad of ['5', 'five seconds', '-5s', '1.5s', '']) refused({ [setting]: bad }, new RegExp(`${setting} must be 0 \\(none\\) or a duration like`));
  }
  refused({ KEYHOLD_DB_LOCK_TIMEOUT: '50ms' }, /KEYHOLD_DB_LOCK_TIMEOUT must be 0 \(none\) or between 100ms and 1h \(got "50ms"\)/);
  refused({ KEYHOLD_DB_LOCK_TIMEOUT: '2h', KEYHOLD_DB_STATEMENT_TIMEOUT: '0' }, /KEYHOLD_DB_LOCK_TIMEOUT must be 0 \(none\) or between 100ms and 1h/);
  refused({ KEYHOLD_DB_STATEMENT_TIMEOUT: '500ms' }, /KEYHOLD_DB_STATEMENT_TIMEOUT must be 0 \(none\) or between 1s and 24h \(got "500ms"\)/);
  refused({ KEYHOLD_DB_STATEMENT_TIMEOUT: '2d' }, /KEYHOLD_DB_STATEMENT_TIMEOUT must be 0 \(none\) or between 1s and 24h/);
  // A lock wait is part of its statement: bounded at or past the statement, it never fires and a wait answers 503, not 409.
  refused({ KEYHOLD_DB_LOCK_TIMEOUT: '30s' }, /KEYHOLD_DB_LOCK_TIMEOUT \(30s\) must be shorter than KEYHOLD_DB_STATEMENT_TIMEOUT \(30s\)/);
  refused({ KEYHOLD_DB_LOCK_TIMEOUT: '10s', KEYHOLD_DB_STATEMENT_TIMEOUT: '5s' }, /KEYHOLD_DB_LOCK_TIMEOUT \(10s\) must be shorter than KEYHOLD_DB_STATEMENT_TIMEOUT \(5s\)/);
});
