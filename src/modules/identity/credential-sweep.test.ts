import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { call, newUser, sessionFor } from '../../../test/helpers/users.ts';
import { credentialSweepOver, startSweepNodeWorker, sweepNodeHere } from '../../../test/helpers/sweep-node.ts';
import { ConfigError, identitySettings, loadConfig } from '../../config/config.ts';
import { hashToken } from '../auth/token-service.ts';
import type { Storage } from '../../storage/database.ts';
import { createCredentialSweep, type PurgeableCredentials } from './credential-sweep.ts';

const HOUR = 3_600_000;
const { credentialGraceMs: GRACE, sessionAbsoluteMs: SESSION_MAX } = identitySettings();

test('the grace comes from KEYHOLD_CREDENTIAL_GRACE, a day unless set, and a bad value names the setting', () => {
  assert.equal(GRACE, 24 * HOUR);
  assert.equal(loadConfig({ KEYHOLD_CREDENTIAL_GRACE: '2h' }).identity.credentialGraceMs, 2 * HOUR);
  assert.throws(() => loadConfig({ KEYHOLD_CREDENTIAL_GRACE: 'soon' }), (err: Error) => err instanceof ConfigError && err.message.includes('KEYHOLD_CREDENTIAL_GRACE'));
});

test('a negative grace is refused rather than sweeping live credentials', () => {
  const never: PurgeableCredentials = { purgeDead: () => assert.fail('must not be called') };
  assert.throws(() => createCredentialSweep({ tables: { sessions: never, tokens: never }, clock: { now: () => 0 }, graceMs: -1 }), RangeError);
});

describeEachDialect('credential sweep', (dialect) => {
  let h: Harness;
  let user: { id: string; tenantId: string };
  before(async () => {
    h = await createHarness(dialect);
    user = { id: (await newUser(h, 'sweep')).id, tenantId: h.ctx.tenantId };
  });
  after(() => h.close());

  const ids = async (table: 'sessions' | 'tokens') => new Set((await h.storage.db.selectFrom(table).select('id').execute()).map((r) => r.id));
  const whoami = async (token: string) => (await call(h, 'GET', '/v1/auth/whoami', { token })).status;
  const machineToken = (name: string, ttlMs?: number) =>
    h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: 'sweep-machine', name, ...(ttlMs ? { ttlMs } : {}) });

  /** Dead credentials inserted straight into a table, as a server that never swept would have piled them up. */
  async function backlog(storage: Storage, n: number, deadAt: number): Promise<void> {
    const rows = Array.from({ length: n }, () => ({ id: randomBytes(12).toString('hex'), token_hash: hashToken(randomBytes(16).toString('hex')) }));
    for (let i = 0; i < n; i += 500) {
      const chunk = rows.slice(i, i + 500);
      await storage.db.insertInto('tokens').values(chunk.map((r) => ({
        ...r, tenant_id: user.tenantId, name: 'old', kind: 'machine', principal_id: 'sweep-machine', created_at: deadAt - HOUR, expires_at: deadAt, revoked_at: null,
      }))).execute();
      await storage.db.insertInto('sessions').values(chunk.map((r) => ({
        ...r, tenant_id: user.tenantId, user_id: user.id, created_at: deadAt - HOUR, last_seen_at: deadAt - HOUR, expires_at: deadAt + HOUR, mfa_at: null, revoked_at: deadAt,
      }))).execute();
    }
  }

  test('sessions past their absolute expiry or revoked longer ago than the grace are deleted; live and recently ended ones stay', async () => {
    const expired = await h.services.sessions.issue(user, null);
    const loggedOut = await h.services.sessions.issue(user, null);
    await h.services.sessions.revoke(loggedOut.id, user.id);
    h.clock.advance(GRACE);
    const expiredRecently = await h.services.sessions.issue(user, null);
    h.clock.advance(SESSION_MAX + 1);
    const live = await h.services.sessions.issue(user, null);
    const loggedOutRecently = await h.services.sessions.issue(user, null);
    await h.services.sessions.revoke(loggedOutRecently.id, user.id);

    const result = await h.services.credentialSweep.sweep();
    assert.ok(result.sessions >= 2, JSON.stringify(result));
    const left = await ids('sessions');
    assert.deepEqual([expired, loggedOut].map((s) => left.has(s.id)), [false, false], 'dead for longer than the grace');
    assert.deepEqual([expiredRecently, live, loggedOutRecently].map((s) => left.has(s.id)), [true, true, true], 'live, or dead within the grace');
    assert.equal(await whoami(live.token), 200);
  });

  test('machine tokens expired or revoked longer ago than the grace are deleted; live, recently ended and root tokens stay', async () => {
    const expired = await machineToken('expired', 60_000);
    const revoked = await machineToken('revoked', HOUR);
    await h.services.tokens.revoke(revoked.id, h.ctx.tenantId);
    const revokedRoot = await h.services.tokens.issue({ tenantId: null, kind: 'root', name: 'second root' });
    await h.services.tokens.revoke(revokedRoot.id, null);
    h.clock.advance(GRACE + 60_000);
    const expiredRecently = await machineToken('expired recently', 1_000);
    const revokedRecently = await machineToken('revoked recently', HOUR);
    await h.services.tokens.revoke(revokedRecently.id, h.ctx.tenantId);
    h.clock.advance(1_001);
    const live = await machineToken('live', HOUR);
    const everlasting = await machineToken('no expiry');

    const result = await h.services.credentialSweep.sweep();
    assert.ok(result.tokens >= 2, JSON.stringify(result));
    const left = await ids('tokens');
    assert.deepEqual([expired, revoked].map((t) => left.has(t.id)), [false, false], 'dead for longer than the grace');
    assert.deepEqual([expiredRecently, revokedRecently, live, everlasting, revokedRoot].map((t) => left.has(t.id)), [true, true, true, true, true]);
    assert.ok(await h.services.tokens.authenticate(h.rootToken), 'the root token from init (no expiry) still works');
    assert.equal(await whoami(live.token), 200);
  });

  test('a swept token answers like a revoked one, over HTTP and at the service, even where a cache still held it', async () => {
    const sweepNow = createCredentialSweep({ tables: { sessions: h.services.sessions, tokens: h.services.tokens }, clock: h.clock, graceMs: 0 });
    const t = await machineToken('cached', HOUR);
    assert.equal(await whoami(t.token), 200);
    assert.ok(h.services.authenticator.cached(t.token), 'in the lookup cache after its first use');
    // Revoked by another node: this process's cache may answer for a few more seconds, as documented.
    await h.storage.db.updateTable('tokens').set({ revoked_at: h.clock.now() }).where('id', '=', t.id).execute();
    assert.ok(h.services.authenticator.cached(t.token));
    assert.equal((await sweepNow.sweep()).tokens >= 1, true);
    assert.equal(h.services.authenticator.cached(t.token), undefined, 'the sweep drops what it deleted from the cache');
    assert.equal(await h.services.tokens.authenticate(t.token), null);
    assert.equal(await whoami(t.token), 401);
    const revokeAgain = await h.app.inject({ method: 'DELETE', url: `/v1/auth/tokens/${t.id}`, headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.equal(revokeAgain.json().error.code, 'TOKEN_NOT_FOUND', 'the same answer as for an already revoked token');
  });

  test('a session logged out and then swept no longer authenticates, and the audit chain still verifies', async () => {
    const { username } = await newUser(h, 'sweep-logout');
    const token = await sessionFor(h, username);
    assert.equal(await whoami(token), 200);
    assert.equal((await call(h, 'POST', '/v1/auth/logout', { token })).status, 204);
    h.clock.advance(GRACE + 1);
    assert.ok((await h.services.credentialSweep.sweep()).sessions >= 1);
    assert.equal(await h.storage.db.selectFrom('sessions').select('id').where('token_hash', '=', hashToken(token)).executeTakeFirst(), undefined);
    assert.equal(await h.services.sessions.authenticate(token), null);
    assert.equal(await whoami(token), 401);
    const logout = (await h.storage.db.selectFrom('audit_events').select('context').where('action', '=', 'auth.logout').execute()).at(-1);
    assert.ok(logout && JSON.parse(logout.context).credentialId, 'the logout event still names the swept session by id');
    assert.equal((await h.services.audit.verify()).ok, true);
  });

  test('a backlog larger than one batch is deleted in one sweep, a batch at a time, leaving live credentials', async () => {
    await h.services.credentialSweep.sweep();
    await backlog(h.storage, 1_250, h.clock.now() - GRACE - 1);
    const live = await machineToken('survivor', HOUR);
    const calls: Array<{ table: string; n: number }> = [];
    const counted = (table: string, real: PurgeableCredentials): PurgeableCredentials => ({
      async purgeDead(deadBefore, limit) {
        const n = await real.purgeDead(deadBefore, limit);
        assert.ok(n <= limit);
        calls.push({ table, n });
        return n;
      },
    });
    const sweep = createCredentialSweep({
      tables: { sessions: counted('sessions', h.services.sessions), tokens: counted('tokens', h.services.tokens) }, clock: h.clock, graceMs: GRACE,
    });
    assert.deepEqual(await sweep.sweep(100), { sessions: 1_250, tokens: 1_250 });
    assert.deepEqual(calls.filter((c) => c.table === 'tokens').map((c) => c.n), [...Array(12).fill(100), 50]);
    assert.equal(calls.filter((c) => c.table === 'sessions').length, 13);
    assert.equal(await whoami(live.token), 200);
    assert.deepEqual(await sweep.sweep(100), { sessions: 0, tokens: 0 });
  });

  test('two server processes sweeping one database at the same time both finish, and every dead row goes exactly once', async () => {
    await h.services.credentialSweep.sweep();
    await backlog(h.storage, 2_000, h.clock.now() - GRACE - 1);
    // On SQLite the other server sweeps from a worker thread, as a second process would (test/helpers/sweep-node.ts).
    const here = credentialSweepOver(h.storage, h.clock);
    const other = dialect === 'sqlite' ? await startSweepNodeWorker({ url: h.database.url }, h.clock.now()) : sweepNodeHere(await h.database.open(), h.clock);
    try {
      const results = await Promise.all([here.sweep(50), other.sweep(50), here.sweep(50), other.sweep(50)]);
      const total = (table: 'sessions' | 'tokens') => results.reduce((sum, r) => sum + r[table], 0);
      assert.deepEqual([total('sessions'), total('tokens')], [2_000, 2_000]);
      assert.deepEqual(await h.services.credentialSweep.sweep(), { sessions: 0, tokens: 0 });
    } finally {
      await other.close();
    }
  });
});
