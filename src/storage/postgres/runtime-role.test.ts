import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { PG_URL, skipReason } from '../../../test/helpers/databases.ts';
import { startServer } from '../../../test/helpers/server-process.ts';
import { createMemoryNotifier } from '../../../test/helpers/notifications.ts';
import { entries } from '../../cli/commands/index.ts';
import { createCli } from '../../cli/run.ts';
import { identitySettings } from '../../config/config.ts';
import { createServices } from '../../main/compose.ts';
import { createDbCursorStore } from '../../modules/audit/streaming.ts';
import { createManualClock } from '../../platform/clock.ts';
import { openStorage } from '../database.ts';
import { appendOnlyReport } from './privileges.ts';

/**
 * The production split on PostgreSQL: the schema owner migrates (`keyhold migrate --grant-to`), the
 * server runs as a role that may only read and append to the audit tables. Every test has its own
 * schema and its own login role (roles are cluster-wide), dropped at the end even on failure.
 */

const SERVER_ENTRY = fileURLToPath(new URL('../../main/server.ts', import.meta.url));
const LIMITS = { maxNameLength: 128, maxValueBytes: 65_536, maxBodyBytes: 65_536 * 7 };

/** A connection URL for `user` whose search_path is `schema`. */
function urlFor(user: string | null, schema: string): string {
  const url = new URL(PG_URL);
  if (user) url.username = user;
  url.searchParams.set('options', `-c search_path=${schema}`);
  return url.href;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A fresh schema (owned by postgres) and a login role that owns nothing; both dropped after the test. */
async function setUp(t: TestContext): Promise<{ schema: string; role: string; ownerUrl: string; roleUrl: string } | null> {
  const skip = await skipReason('postgres');
  if (skip) {
    t.skip(skip);
    return null;
  }
  const id = randomBytes(6).toString('hex');
  const schema = `kh_test_${id}`;
  const role = `kh_runtime_${id}`;
  await admin(async (c) => {
    await c.query(`create schema ${schema}`);
    await c.query(`create role ${role} login`);
  });
  t.after(() => admin(async (c) => {
    await c.query(`select pg_terminate_backend(pid) from pg_stat_activity where usename = $1`, [role]);
    await c.query(`drop schema if exists ${schema} cascade`);
    await c.query(`drop owned by ${role}`);
    await c.query(`drop role if exists ${role}`);
  }));
  return { schema, role, ownerUrl: urlFor(null, schema), roleUrl: urlFor(role, schema) };
}

/** `keyhold ...` in-process. */
async function keyhold(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const cli = createCli({
    entries, fetch: globalThis.fetch, stdin: process.stdin, env: {},
    stdout: { write: (s: string) => (stdout += s) }, stderr: { write: (s: string) => (stderr += s) },
  });
  const code = await cli.run(argv);
  return { code, stdout, stderr };
}

/** The PostgreSQL error code a statement fails with, or 'ok'. */
async function outcome(c: pg.Client, statement: string): Promise<string> {
  try {
    await c.query(statement);
    return 'ok';
  } catch (err) {
    return (err as { code?: string }).code ?? String(err);
  }
}

async function asRole<T>(roleUrl: string, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: roleUrl });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

test('the role keyhold migrate grants cannot update, delete, truncate or un-trigger the audit tables', async (t) => {
  const s = await setUp(t);
  if (!s) return;
  const migrated = await keyhold('migrate', '--database-url', s.ownerUrl, '--grant-to', s.role);
  assert.equal(migrated.code, 0, migrated.stderr);
  assert.match(migrated.stdout, /audit_events: SELECT, INSERT\n/);
  assert.match(migrated.stdout, /secrets: SELECT, INSERT, UPDATE, DELETE\n/);

  // One event to aim at, appended as the server would.
  const DENIED = '42501'; // insufficient_privilege
  await asRole(s.roleUrl, async (c) => {
    await c.query(`insert into audit_events (seq, id, time, actor_type, actor_id, action, resource_type, outcome, context, prev_hash, hash)
      values (1, 'e1', 1, 'system', 'k', 'test', 'system', 'allowed', '{}', 'p', 'h')`);
    assert.equal(await outcome(c, `update audit_events set action = 'forged'`), DENIED);
    assert.equal(await outcome(c, 'delete from audit_events'), DENIED);
    assert.equal(await outcome(c, 'truncate audit_events'), DENIED);
    assert.equal(await outcome(c, 'delete from audit_checkpoints'), DENIED);
    assert.equal(await outcome(c, 'truncate audit_checkpoints'), DENIED);
    assert.equal(await outcome(c, 'alter table audit_events disable trigger all'), DENIED);
    assert.equal(await outcome(c, 'alter table audit_checkpoints disable trigger all'), DENIED);
    assert.equal(await outcome(c, 'drop table audit_events'), DENIED);
    assert.equal(await outcome(c, 'create table smuggled (id int)'), DENIED);
    assert.equal(await outcome(c, `insert into kysely_migration (name, timestamp) values ('999-fake', 'x')`), DENIED);
    // Where event MACs start (migration 019): moving it would exempt forged events from the MAC rule.
    assert.equal(await outcome(c, 'update audit_keyed_from set seq = 1000000'), DENIED);
    assert.equal(await outcome(c, 'delete from audit_keyed_from'), DENIED);
    assert.equal(await outcome(c, 'truncate audit_keyed_from'), DENIED);
    assert.equal(await outcome(c, 'insert into audit_keyed_from (id, seq) values (1, 1000000) on conflict (id) do update set seq = excluded.seq'), DENIED);
    assert.equal(Number((await c.query('select seq from audit_keyed_from')).rows[0]?.seq), 0);
    assert.equal((await c.query('select action from audit_events')).rows[0]?.action, 'test');
  });
});

test('the server does its work as the runtime role and reports that privileges keep the audit log append-only', async (t) => {
  const s = await setUp(t);
  if (!s) return;
  assert.equal((await keyhold('migrate', '--database-url', s.ownerUrl, '--grant-to', s.role)).code, 0);
  const storage = await openStorage({ url: s.roleUrl, poolSize: 4 });
  const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-test-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));
  try {
    assert.deepEqual(storage.migrationsApplied, []);
    assert.deepEqual(storage.auditAppendOnly, { guarantee: 'privileges', reasons: [] });
    const clock = createManualClock(Date.UTC(2026, 5, 1));
    const services = createServices({
      config: { dataDir, limits: LIMITS, rollbackWindowMs: 7 * 86_400_000, identity: identitySettings() },
      storage, clock, notifier: createMemoryNotifier(),
    });
    const init = await services.system.initialize({ type: 'shamir', shares: 2, threshold: 2 });
    await services.system.unseal(init.shares[0]!);
    assert.equal((await services.system.unseal(init.shares[1]!)).auditAppendOnly, 'privileges');
    const tenant = (await services.tenants.findByName('default'))!;
    const ctx = { tenantId: tenant.id, actor: { type: 'root' as const, id: 'test-root', name: 'root' }, requestId: 'test' };
    await services.secrets.create(ctx, { name: 'DB_PASSWORD', owner: 'ops' });
    await services.values.write(ctx, 'DB_PASSWORD', 'production', { value: 'first-value' });
    await services.values.write(ctx, 'DB_PASSWORD', 'production', { value: 'second-value' });
    assert.equal((await services.values.read(ctx, 'DB_PASSWORD', 'production')).value, 'second-value');
    assert.ok(await services.checkpoints.checkpoint(), 'a checkpoint was signed');
    const cursors = createDbCursorStore(storage.db);
    await cursors.set('file', 3);
    await cursors.set('file', 5);
    assert.equal(await cursors.get('file'), 5);
    assert.ok((await services.auditUsage.foldAll()) > 0, 'the usage summary folded new events');
    await services.credentialSweep.sweep();
    assert.equal((await services.audit.verify()).ok, true);
    const status = await services.system.status();
    assert.equal(status.auditAppendOnly, 'privileges');
  } finally {
    await storage.close();
  }
});

test('the owner connection (the development default) still migrates at start, and is reported as protected by the trigger only', async (t) => {
  const s = await setUp(t);
  if (!s) return;
  const storage = await openStorage({ url: s.ownerUrl, poolSize: 2 });
  try {
    assert.ok(storage.migrationsApplied.includes('003-audit'));
    assert.equal(storage.auditAppendOnly.guarantee, 'trigger');
    assert.ok(storage.auditAppendOnly.reasons.includes('is a superuser'));
  } finally {
    await storage.close();
  }
});

test('migrate run again revokes what was granted by hand and covers tables added since', async (t) => {
  const s = await setUp(t);
  if (!s) return;
  assert.equal((await keyhold('migrate', '--database-url', s.ownerUrl, '--grant-to', s.role)).code, 0);
  await admin(async (c) => {
    await c.query(`grant update, truncate on ${s.schema}.audit_events to ${s.role}`);
    await c.query(`create table ${s.schema}.added_later (id int primary key)`);
  });
  const owner = await openStorage({ url: s.ownerUrl, poolSize: 1 });
  try {
    assert.deepEqual(await appendOnlyReport(owner.db, s.role), {
      guarantee: 'trigger', reasons: ['has UPDATE on audit_events', 'has TRUNCATE on audit_events'],
    });
    const again = await keyhold('migrate', '--database-url', s.ownerUrl, '--grant-to', s.role, '--json');
    assert.equal(again.code, 0, again.stderr);
    const report = JSON.parse(again.stdout) as { applied: string[]; grants: { privileges: Record<string, string[]> } };
    assert.deepEqual(report.applied, []);
    assert.deepEqual(report.grants.privileges.added_later, ['SELECT', 'INSERT', 'UPDATE', 'DELETE']);
    assert.deepEqual(await appendOnlyReport(owner.db, s.role), { guarantee: 'privileges', reasons: [] });
    // UPDATE on a single column is enough to rewrite an event: it counts, and migrate takes it back.
    await admin((c) => c.query(`grant update (outcome) on ${s.schema}.audit_events to ${s.role}`));
    assert.deepEqual(await appendOnlyReport(owner.db, s.role), { guarantee: 'trigger', reasons: ['has UPDATE on audit_events'] });
    assert.equal((await keyhold('migrate', '--database-url', s.ownerUrl, '--grant-to', s.role)).code, 0);
    assert.deepEqual(await appendOnlyReport(owner.db, s.role), { guarantee: 'privileges', reasons: [] });
  } finally {
    await owner.close();
  }
  await asRole(s.roleUrl, async (c) => {
    assert.equal(await outcome(c, "update audit_events set outcome = 'denied'"), '42501');
    assert.equal(await outcome(c, 'insert into added_later values (1)'), 'ok');
    assert.equal(await outcome(c, 'truncate audit_events'), '42501');
  });
});

test('a runtime role that can SET ROLE to the owner of the audit tables, without inheriting its rights, is not reported as restrained, and migrate refuses it', async (t) => {
  const s = await setUp(t);
  if (!s) return;
  assert.equal((await keyhold('migrate', '--database-url', s.ownerUrl, '--grant-to', s.role)).code, 0);
  const owner = `${s.role}_owner`;
  await admin(async (c) => {
    await c.query(`create role ${owner} nologin`);
    await c.query(`grant usage on schema ${s.schema} to ${owner}`);
    await c.query(`alter table ${s.schema}.audit_events owner to ${owner}`);
    // NOINHERIT: none of the owner's rights by default, but SET ROLE to it is allowed.
    await c.query(`alter role ${s.role} noinherit`);
    await c.query(`grant ${owner} to ${s.role}`);
    await c.query(`grant select, update on ${s.schema}.audit_checkpoints to ${owner}`);
  });
  t.after(() => admin(async (c) => {
    await c.query(`reassign owned by ${owner} to postgres`);
    await c.query(`drop role if exists ${owner}`);
  }));
  // What that membership is worth: the trigger, and the events, are the role's to remove.
  await asRole(s.roleUrl, async (c) => {
    assert.equal(await outcome(c, `set role ${owner}`), 'ok');
    assert.equal(await outcome(c, 'alter table audit_events disable trigger all'), 'ok');
    assert.equal(await outcome(c, 'alter table audit_events enable trigger all'), 'ok');
    assert.equal(await outcome(c, 'select 1 from audit_checkpoints for update'), 'ok', 'holds UPDATE on it');
  });
  const storage = await openStorage({ url: s.ownerUrl, poolSize: 1 });
  try {
    const report = await appendOnlyReport(storage.db, s.role);
    assert.equal(report.guarantee, 'trigger');
    assert.ok(report.reasons.includes('owns audit_events'), report.reasons.join(', '));
    assert.ok(report.reasons.includes('has UPDATE on audit_checkpoints'), report.reasons.join(', '));
  } finally {
    await storage.close();
  }
  const again = await keyhold('migrate', '--database-url', s.ownerUrl, '--grant-to', s.role);
  assert.equal(again.code, 2, again.stdout);
  assert.match(again.stderr, /owns \(or has the rights of the owner of\) audit_events/);
});

test('migrate refuses a runtime role that no privilege would restrain, or that does not exist', async (t) => {
  const s = await setUp(t);
  if (!s) return;
  const superuser = await keyhold('migrate', '--database-url', s.ownerUrl, '--grant-to', 'postgres');
  assert.equal(superuser.code, 2);
  assert.match(superuser.stderr, /"postgres" is the user migrating|superuser/);
  const missing = await keyhold('migrate', '--database-url', s.ownerUrl, '--grant-to', `${s.role}_nobody`);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /there is no database role/);
  const sqlite = await keyhold('migrate', '--database-url', 'sqlite:/tmp/x.db');
  assert.equal(sqlite.code, 2);
});

test('the server runs as the runtime role when nothing is pending, and refuses to start (exit 2) when migrations are pending that it cannot apply', async (t) => {
  const s = await setUp(t);
  if (!s) return;
  assert.equal((await keyhold('migrate', '--database-url', s.ownerUrl, '--grant-to', s.role)).code, 0);
  const dataDir = mkdtempSync(join(tmpdir(), 'keyhold-test-'));
  t.after(() => rmSync(dataDir, { recursive: true, force: true }));

  const server = await startServer({ dataDir, databaseUrl: s.roleUrl });
  try {
    const status = await server.request('GET', '/v1/sys/status');
    assert.equal(status.json.auditAppendOnly, 'privileges');
    assert.doesNotMatch(server.logs(), /append-only by a trigger only/);
  } finally {
    await server.stop();
  }

  // An upgrade brings a migration the schema has not had: the server's user cannot apply it.
  const last = await admin(async (c) =>
    (await c.query<{ name: string }>(`delete from ${s.schema}.kysely_migration where name = (select max(name) from ${s.schema}.kysely_migration) returning name`)).rows[0]!.name);
  const child = spawn(process.execPath, ['--disable-warning=ExperimentalWarning', SERVER_ENTRY], {
    env: { PATH: process.env.PATH, KEYHOLD_DATA_DIR: dataDir, KEYHOLD_PORT: '0', KEYHOLD_DATABASE_URL: s.roleUrl },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.once('close', (c) => resolve(c)));
  assert.equal(code, 2, stderr);
  assert.match(stderr, /KEYHOLD_DATABASE_URL/);
  assert.match(stderr, new RegExp(`keyhold migrate --database-url .* --grant-to ${s.role}`));
  assert.match(stderr, new RegExp(last));
  // Refused before touching anything: the migration is still pending.
  const still = await admin(async (c) => (await c.query(`select 1 from ${s.schema}.kysely_migration where name = $1`, [last])).rowCount);
  assert.equal(still, 0);
});
