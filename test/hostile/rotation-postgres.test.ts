import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createHarness, type Harness } from '../helpers/harness.ts';
import { PG_URL } from '../helpers/databases.ts';
import { fakeDependents, rotationFor } from '../helpers/rotation.ts';
import { scramMatches, scramVerifier } from '../../src/modules/rotation/rotators/postgres/scram.ts';

const ENV = 'production';

/**
 * The local PostgreSQL trusts loopback, so a login proves nothing about a password: what the
 * server would accept under scram-sha-256 is read from pg_authid and checked here.
 */
async function accepts(admin: pg.Client, role: string, password: string): Promise<boolean> {
  const row = (await admin.query<{ rolpassword: string | null }>('select rolpassword from pg_authid where rolname = $1', [role])).rows[0];
  return row?.rolpassword ? scramMatches(row.rolpassword, password) : false;
}

/** A connector's health check that really connects as the role in the candidate value and runs select 1. */
const realPgCheck = (format: 'password' | 'json', role?: string) => async (_connector: string, overrides: Record<string, string>) => {
  const v = format === 'json' ? JSON.parse(overrides.credentials!) as { username: string; password: string } : { username: role!, password: overrides.password! };
  const c = new pg.Client({ host: '127.0.0.1', port: 5432, database: 'test', user: v.username, password: v.password });
  try {
    await c.connect();
    await c.query('select 1');
    return { ok: true };
  } catch (err) {
    return { ok: false, detail: `connect failed: ${(err as { code?: string }).code}` };
  } finally {
    await c.end().catch(() => {});
  }
};

describeEachDialect('rotating a real PostgreSQL role', (dialect) => {
  let h: Harness;
  let admin: pg.Client;
  const roles: string[] = [];
  const newRole = async (opts: { login?: boolean } = {}) => {
    const role = `kh_rot_${randomBytes(5).toString('hex')}`;
    const password = randomBytes(18).toString('base64url');
    await admin.query(`create role ${role} ${opts.login === false ? 'nologin' : 'login'} password '${scramVerifier(password)}'`);
    roles.push(role);
    return { role, password };
  };
  const settings = (extra: Record<string, unknown>) => ({ host: '127.0.0.1', port: 5432, database: 'test', adminUser: 'postgres', ...extra });

  before(async () => {
    h = await createHarness(dialect);
    admin = new pg.Client({ connectionString: PG_URL });
    await admin.connect();
  });
  after(async () => {
    for (const r of roles) await admin.query(`drop role if exists ${r}`);
    await admin.end();
    await h.close();
  });

  test('single user: the connector works before and after, and the old password stops working', async () => {
    const { role, password } = await newRole();
    await h.services.secrets.create(h.ctx, { name: 'PG_SINGLE', owner: 'dba' });
    await h.services.values.write(h.ctx, 'PG_SINGLE', ENV, { value: password });
    const deps = fakeDependents({ connectors: { orders_db: { password: 'PG_SINGLE' } }, check: realPgCheck('password', role) });
    const rot = rotationFor(h, { dependents: deps });
    await rot.service.setPolicy(h.ctx, 'PG_SINGLE', ENV, { rotator: 'postgres', settings: settings({ role }) });
    assert.equal((await realPgCheck('password', role)('orders_db', { password })).ok, true, 'works before');
    const r = await rot.service.rotate(h.ctx, 'PG_SINGLE', ENV);
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    const fresh = (await h.services.values.read(h.ctx, 'PG_SINGLE', ENV)).value;
    assert.equal(await accepts(admin, role, fresh), true, 'the new password is what the server now accepts');
    assert.equal(await accepts(admin, role, password), false, 'the old password stopped working');
    assert.equal((await realPgCheck('password', role)('orders_db', { password: fresh })).ok, true, 'works after');
    assert.deepEqual(r.checks.map((c) => [c.connector, c.ok]), [['orders_db', true]]);
  });

  test('alternating users: each rotation moves to the other role, and the previous credential keeps working for its window', async () => {
    const a = await newRole();
    const b = await newRole();
    await h.services.secrets.create(h.ctx, { name: 'PG_ALT', owner: 'dba' });
    await h.services.values.write(h.ctx, 'PG_ALT', ENV, { value: JSON.stringify({ username: a.role, password: a.password }) });
    const deps = fakeDependents({ connectors: { reporting: { credentials: 'PG_ALT' } }, check: realPgCheck('json') });
    const rot = rotationFor(h, { dependents: deps });
    await rot.service.setPolicy(h.ctx, 'PG_ALT', ENV, { rotator: 'postgres', settings: settings({ strategy: 'alternating', roles: [a.role, b.role] }) });

    assert.equal((await rot.service.rotate(h.ctx, 'PG_ALT', ENV)).state, 'succeeded');
    const first = JSON.parse((await h.services.values.read(h.ctx, 'PG_ALT', ENV)).value) as { username: string; password: string };
    assert.equal(first.username, b.role, 'the second role is handed out');
    assert.equal(await accepts(admin, b.role, first.password), true);
    assert.equal(await accepts(admin, a.role, a.password), true, 'the role handed out before keeps its password through the next interval');

    assert.equal((await rot.service.rotate(h.ctx, 'PG_ALT', ENV)).state, 'succeeded');
    const second = JSON.parse((await h.services.values.read(h.ctx, 'PG_ALT', ENV)).value) as { username: string; password: string };
    assert.equal(second.username, a.role);
    assert.equal(await accepts(admin, a.role, a.password), false, 'two intervals on, the oldest password is gone');
    assert.equal(await accepts(admin, b.role, first.password), true, 'and the previous one still works');
  });

  test('alternating users: rolling back to a value written by hand sets the password of the role that value names, and no other', async () => {
    const a = await newRole();
    const b = await newRole();
    await h.services.secrets.create(h.ctx, { name: 'PG_ALT_BACK', owner: 'dba' });
    // Written by hand (no rotation recorded which role it is for): it names the second role.
    await h.services.values.write(h.ctx, 'PG_ALT_BACK', ENV, { value: JSON.stringify({ username: b.role, password: b.password }) });
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, 'PG_ALT_BACK', ENV, { rotator: 'postgres', settings: settings({ strategy: 'alternating', roles: [a.role, b.role] }) });
    assert.equal((await rot.service.rotate(h.ctx, 'PG_ALT_BACK', ENV)).state, 'succeeded');
    const rotated = JSON.parse((await h.services.values.read(h.ctx, 'PG_ALT_BACK', ENV)).value) as { username: string; password: string };
    assert.equal(rotated.username, a.role);

    await rot.service.rollback(h.ctx, 'PG_ALT_BACK', ENV);
    assert.equal(JSON.parse((await h.services.values.read(h.ctx, 'PG_ALT_BACK', ENV)).value).username, b.role);
    assert.equal(await accepts(admin, b.role, b.password), true, 'the role handed out again takes its password');
    assert.equal(await accepts(admin, a.role, b.password), false, "the other role never gets the second role's password");
    assert.equal(await accepts(admin, a.role, rotated.password), true, 'the credential handed out before the rollback keeps working for its window');
  });

  test('a failing test step (the role may not log in) leaves current untouched and sets the old password back at the source', async () => {
    const { role, password } = await newRole({ login: false });
    await h.services.secrets.create(h.ctx, { name: 'PG_NOLOGIN', owner: 'dba' });
    await h.services.values.write(h.ctx, 'PG_NOLOGIN', ENV, { value: password });
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, 'PG_NOLOGIN', ENV, { rotator: 'postgres', settings: settings({ role }) });
    const r = await rot.service.rotate(h.ctx, 'PG_NOLOGIN', ENV);
    assert.equal(r.state, 'rolled_back');
    assert.equal(r.error?.step, 'test');
    assert.match(r.error!.detail, /login as kh_rot_\w+ failed/);
    assert.equal((await h.services.values.read(h.ctx, 'PG_NOLOGIN', ENV)).value, password, 'current untouched');
    assert.equal(await accepts(admin, role, password), true, 'the source has the old password again');
    const event = await h.storage.db.selectFrom('audit_events').select('context').where('action', '=', 'rotation.rolled_back').where('resource_name', '=', 'PG_NOLOGIN').executeTakeFirstOrThrow();
    assert.equal((JSON.parse(event.context) as Record<string, string>).sourceRestored, 'true');
  });

  test('a password set by hand and written to Keyhold during the rotation wins: the role ends with the password Keyhold hands out', async () => {
    const { role, password } = await newRole();
    await h.services.secrets.create(h.ctx, { name: 'PG_RACED', owner: 'dba' });
    await h.services.values.write(h.ctx, 'PG_RACED', ENV, { value: password });
    const byHand = randomBytes(18).toString('base64url');
    const deps = fakeDependents({
      connectors: { orders_db: { password: 'PG_RACED' } },
      check: async () => {
        // While the rotation verifies its dependents, a DBA changes the password and records it in Keyhold.
        await admin.query(`alter role ${role} password '${scramVerifier(byHand)}'`);
        await h.services.values.write(h.ctx, 'PG_RACED', ENV, { value: byHand });
        return { ok: true };
      },
    });
    const rot = rotationFor(h, { dependents: deps });
    await rot.service.setPolicy(h.ctx, 'PG_RACED', ENV, { rotator: 'postgres', settings: settings({ role }) });
    const r = await rot.service.rotate(h.ctx, 'PG_RACED', ENV);
    assert.deepEqual([r.state, r.error?.code], ['rolled_back', 'CURRENT_CHANGED']);
    assert.equal((await h.services.values.read(h.ctx, 'PG_RACED', ENV)).value, byHand, 'the write won');
    assert.equal(await accepts(admin, role, byHand), true, 'the role accepts what Keyhold hands out');
    assert.equal(await accepts(admin, role, password), false, 'not the password from before the rotation');
  });

  test('a rehearsal rotates a scratch copy of the role and leaves the real role and every version alone', async () => {
    const { role, password } = await newRole();
    await h.services.secrets.create(h.ctx, { name: 'PG_REHEARSE', owner: 'dba' });
    await h.services.values.write(h.ctx, 'PG_REHEARSE', 'staging', { value: password });
    const rot = rotationFor(h);
    await rot.service.setPolicy(h.ctx, 'PG_REHEARSE', 'staging', { rotator: 'postgres', settings: settings({ role }) });
    const before = (await admin.query('select rolpassword from pg_authid where rolname = $1', [role])).rows[0];
    const r = await rot.service.rotate(h.ctx, 'PG_REHEARSE', 'staging', { rehearse: true });
    assert.equal(r.state, 'succeeded', JSON.stringify(r.error));
    assert.deepEqual((await admin.query('select rolpassword from pg_authid where rolname = $1', [role])).rows[0], before, 'the real role is untouched');
    assert.equal((await admin.query(`select count(*)::int as n from pg_roles where rolname like $1`, [`${role}_rh_%`])).rows[0].n, 0, 'the scratch role was dropped');
    const history = await h.services.values.history(h.ctx, 'PG_REHEARSE', 'staging');
    assert.deepEqual(history.map((v) => v.version), [1]);
  });
});
