import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.ts';
import { startServer, type HttpResult, type RequestOptions, type ServerProcess } from '../helpers/server-process.ts';
import { stallWrite, type StallAt } from '../helpers/write-stall.ts';
import { runCliAt } from '../helpers/cli.ts';
import { decodeRootToken } from '../../src/crypto/root/otp.ts';
import type { Storage } from '../../src/storage/database.ts';

/**
 * generate-root (SPEC §14): a kill -9 between shares or around the final one leaves no root token
 * nobody was given that is not listed (and revocable), no attempt that a later one can finish with
 * fewer new shares than the threshold, an audit chain that verifies, and no share, one-time key or
 * token in the server's logs. Every attempt's trail ends in exactly one event (SPEC §7): the token's,
 * or, for one a kill cut off, a `system.generate-root-end` the next server records once unsealed; a
 * graceful stop records its own.
 */
describeEachDialect('generate-root survives kill -9 and a graceful stop', (dialect) => {
  let database: TestDatabase;
  let storage: Storage;
  let server: ServerProcess;
  let shares: string[];
  let rootToken: string;
  /** Every credential the test saw: none may appear in any server's output. */
  const credentials: string[] = [];
  /** Output of every server process so far (killed ones included). */
  const logs: string[] = [];

  const ok = (res: HttpResult, status = 200) => {
    assert.equal(res.status, status, res.text);
    return res.json;
  };
  const call = (method: string, path: string, opts: RequestOptions = {}) => server.request(method, path, { token: rootToken, ...opts });
  const anonymous = (method: string, path: string, body?: unknown) => server.request(method, path, { token: null, ...(body ? { body } : {}) });

  /** Starts the server on the same data directory and database, and unseals it with a threshold of shares. */
  async function start(): Promise<void> {
    server = await startServer({ dataDir: database.dataDir, databaseUrl: database.url, logLevel: 'info', dev: false });
    if (!shares) return;
    for (const share of shares.slice(0, 2)) ok(await anonymous('POST', '/v1/sys/unseal', { share }));
    assert.equal(ok(await anonymous('GET', '/v1/sys/status')).sealed, false);
  }

  async function kill(): Promise<void> {
    const exit = await server.kill('SIGKILL');
    assert.deepEqual(exit, { code: null, signal: 'SIGKILL' });
    logs.push(server.logs());
  }

  /** The `system.generate-root-end` events of the attempt `nonce`: actor, outcome and reason. */
  async function endsOf(nonce: string): Promise<string[]> {
    const rows = await storage.db.selectFrom('audit_events').select(['actor_type', 'actor_id', 'outcome', 'reason', 'context'])
      .where('action', '=', 'system.generate-root-end').orderBy('seq').execute();
    return rows.filter((r) => JSON.parse(r.context).nonce === nonce).map((r) => `${r.actor_type}/${r.actor_id}:${r.outcome}:${r.reason}`);
  }
  /** Attempts whose start is in the trail and whose end is not. */
  const openAttempts = async () => (await storage.db.selectFrom('root_generation_attempts').select('nonce').execute()).map((r) => r.nonce);

  /** The restarted server, once unsealed, ends the attempt the kill cut off: once, as `system`, and for good. */
  async function endedOnceAfterRestart(nonce: string): Promise<void> {
    for (const deadline = Date.now() + 45_000; (await endsOf(nonce)).length === 0;) {
      assert.ok(Date.now() < deadline, 'the restarted server never recorded the end of the attempt the kill cut off');
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.deepEqual(await endsOf(nonce), ['system/keyhold:allowed:INTERRUPTED']);
    assert.deepEqual(await openAttempts(), []);
  }

  before(async () => {
    database = await createTestDatabase(dialect);
    await start();
    const init = ok(await anonymous('POST', '/v1/sys/init', { shares: 3, threshold: 2 }));
    shares = init.shares;
    rootToken = init.rootToken;
    credentials.push(...shares, rootToken);
    for (const share of shares.slice(0, 2)) ok(await anonymous('POST', '/v1/sys/unseal', { share }));
    storage = await database.open();
  });
  after(async () => {
    await server?.kill('SIGKILL');
    await storage?.close();
    await database?.cleanup();
  });

  const rootTokenIds = async () => (await storage.db.selectFrom('tokens').select('id').where('kind', '=', 'root').orderBy('id').execute()).map((t) => t.id);

  async function begin(): Promise<{ nonce: string; otp: string }> {
    const started = ok(await anonymous('POST', '/v1/sys/generate-root'));
    credentials.push(started.otp);
    return started;
  }

  const give = (nonce: string, share: string) => anonymous('POST', '/v1/sys/generate-root/share', { nonce, share });

  /** What must hold after every restart: nothing of the attempt the kill cut off is left to finish. */
  async function attemptGone(nonce: string): Promise<void> {
    const status = ok(await anonymous('GET', '/v1/sys/generate-root'));
    assert.deepEqual([status.started, status.progress, status.nonce], [false, 0, null], 'the attempt ended with the process');
    const late = await give(nonce, shares[2]!);
    assert.equal(late.json?.error?.code, 'GENERATE_ROOT_NOT_STARTED', `a share for the killed attempt counts towards nothing: ${late.text}`);
    // A new attempt needs a whole threshold of shares again: one is not enough.
    const next = await begin();
    const one = ok(await give(next.nonce, shares[0]!));
    assert.deepEqual([one.complete, one.progress], [false, 1]);
    ok(await anonymous('DELETE', '/v1/sys/generate-root'), 204);
  }

  /** The chain proves intact, over HTTP and through `keyhold audit verify`. */
  async function auditIntact(): Promise<void> {
    const res = ok(await call('GET', '/v1/audit/verify'));
    assert.equal(res.ok, true, JSON.stringify(res));
    const cli = await runCliAt(server.address, ['audit', 'verify'], { token: rootToken });
    assert.equal(cli.code, 0, cli.stdout + cli.stderr);
    assert.match(cli.stdout, /Audit log intact/);
  }

  /** The generate-root events since `since`, as action/outcome pairs. */
  async function events(since: number): Promise<string[]> {
    const rows = await storage.db.selectFrom('audit_events').select(['action', 'outcome']).where('seq', '>', since).where('action', 'like', 'system.generate-root%').orderBy('seq').execute();
    return rows.map((r) => `${r.action}:${r.outcome}`);
  }
  const headSeq = async () => (await storage.db.selectFrom('audit_head').select('seq').where('id', '=', 1).executeTakeFirstOrThrow()).seq;

  test('killed between two shares: the attempt and its share are gone, and a new attempt needs the threshold again', async () => {
    const since = await headSeq();
    const tokensBefore = await rootTokenIds();
    const { nonce } = await begin();
    const first = ok(await give(nonce, shares[0]!));
    assert.deepEqual([first.complete, first.progress], [false, 1]);
    await kill();
    await start();
    assert.deepEqual(await rootTokenIds(), tokensBefore);
    await endedOnceAfterRestart(nonce);
    assert.deepEqual(await events(since), ['system.generate-root-start:allowed', 'system.generate-root-share:allowed', 'system.generate-root-end:allowed']);
    await attemptGone(nonce);
    await auditIntact();
    // Another restart finds nothing left open: no second end.
    await kill();
    await start();
    await auditIntact();
    assert.deepEqual(await endsOf(nonce), ['system/keyhold:allowed:INTERRUPTED']);
  });

  for (const [where, stall] of [
    ['while the new root token row is written', { table: 'tokens', when: "new.kind = 'root'", at: 1 }],
    ['while the event that issues it is written', { table: 'audit_events', when: "new.action = 'system.generate-root'", at: 1 }],
  ] as Array<[string, StallAt]>) {
    test(`killed on the final share ${where}: no new root token, no attempt left, the log verifies`, async () => {
      const since = await headSeq();
      const tokensBefore = await rootTokenIds();
      const { nonce } = await begin();
      ok(await give(nonce, shares[0]!));
      const stalled = await stallWrite(database, stall);
      const answer = give(nonce, shares[1]!).catch(() => null);
      try {
        // The share events before it are group commits, durable before the last share is taken.
        await stalled.reached(async () => (await events(since)).length === 2);
      } finally {
        await kill();
        assert.equal(await answer, null, 'the final share was not answered: the server died inside it');
        await stalled.remove();
        await start();
      }
      assert.deepEqual(await rootTokenIds(), tokensBefore, 'the token and its event commit together, or neither does');
      await endedOnceAfterRestart(nonce);
      assert.deepEqual(await events(since), ['system.generate-root-start:allowed', 'system.generate-root-share:allowed', 'system.generate-root-end:allowed']);
      await attemptGone(nonce);
      await auditIntact();
    });
  }

  test('killed as the final share commits: a root token that was issued is listed, revocable, and the one its event names', async () => {
    const since = await headSeq();
    const tokensBefore = await rootTokenIds();
    const { nonce, otp } = await begin();
    ok(await give(nonce, shares[0]!));
    const answer = give(nonce, shares[1]!).catch(() => null);
    // Killed the moment the token is seen committed: the answer may or may not have left.
    for (const deadline = Date.now() + 20_000; (await rootTokenIds()).length === tokensBefore.length;) {
      assert.ok(Date.now() < deadline, 'the final share issued no token');
      // A macrotask between reads: node:sqlite reads are synchronous, and the request must get out.
      await new Promise((resolve) => setImmediate(resolve));
    }
    await kill();
    const answered = await answer;
    await start();

    const created = (await rootTokenIds()).filter((id) => !tokensBefore.includes(id));
    assert.equal(created.length, 1, 'exactly one new root token');
    const issued = await storage.db.selectFrom('audit_events').select(['resource_id', 'outcome']).where('seq', '>', since).where('action', '=', 'system.generate-root').execute();
    assert.deepEqual(issued.map((e) => ({ ...e })), [{ resource_id: created[0], outcome: 'allowed' }], 'its event names it');
    // The token's event ended the attempt, in the token's transaction: nothing is left for the restart to end.
    assert.deepEqual(await openAttempts(), []);
    assert.deepEqual(await events(since), ['system.generate-root-start:allowed', 'system.generate-root-share:allowed', 'system.generate-root:allowed']);
    const listed = ok(await call('GET', '/v1/sys/root-tokens')).items.find((t: { id: string }) => t.id === created[0]);
    assert.ok(listed && listed.revokedAt === null, 'the new token is listed, live');
    let token: string | null = null;
    if (answered?.status === 200) {
      credentials.push(answered.json.encodedToken);
      token = decodeRootToken(otp, answered.json.encodedToken);
      credentials.push(token);
      ok(await server.request('GET', '/v1/sys/root-tokens', { token }));
    }
    ok(await call('DELETE', `/v1/tokens/${created[0]}`), 204);
    assert.notEqual(ok(await call('GET', '/v1/sys/root-tokens')).items.find((t: { id: string }) => t.id === created[0]).revokedAt, null);
    if (token) assert.equal((await server.request('GET', '/v1/sys/root-tokens', { token })).status, 401, 'revoked');
    await attemptGone(nonce);
    await auditIntact();
  });

  test('stopped gracefully (SIGTERM) during an attempt: the trail ends it before the process exits, and the next start adds nothing', async () => {
    const since = await headSeq();
    const { nonce } = await begin();
    ok(await give(nonce, shares[0]!));
    assert.deepEqual(await server.stop(), { code: 0, signal: null }, server.stderr());
    logs.push(server.logs());
    assert.deepEqual(await endsOf(nonce), ['system/keyhold:allowed:SHUTDOWN']);
    assert.deepEqual(await openAttempts(), []);
    assert.deepEqual(await events(since), ['system.generate-root-start:allowed', 'system.generate-root-share:allowed', 'system.generate-root-end:allowed']);
    await start();
    await attemptGone(nonce);
    await auditIntact();
    assert.deepEqual(await endsOf(nonce), ['system/keyhold:allowed:SHUTDOWN']);
  });

  test('after all of it: a whole new attempt issues a working token, and no share, one-time key or token was ever logged', async () => {
    const { nonce, otp } = await begin();
    ok(await give(nonce, shares[1]!));
    const done = ok(await give(nonce, shares[2]!));
    assert.equal(done.complete, true);
    credentials.push(done.encodedToken);
    const token = decodeRootToken(otp, done.encodedToken);
    credentials.push(token);
    ok(await server.request('GET', '/v1/sys/root-tokens', { token }));
    await auditIntact();
    await kill();
    const everything = logs.join('\n');
    assert.deepEqual(credentials.filter((c) => everything.includes(c)), [], 'no credential in any server output');
    const texts = await storage.db.selectFrom('audit_events').select(['context', 'resource_name', 'reason', 'actor_id']).execute();
    const audit = JSON.stringify(texts);
    assert.deepEqual(credentials.filter((c) => audit.includes(c)), [], 'no credential in the audit log');
    await start();
  });
});
