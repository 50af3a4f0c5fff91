import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { describeEachDialect } from '../helpers/each-dialect.ts';
import { createTestDatabase, type TestDatabase } from '../helpers/databases.ts';
import { startServer, type Exit, type HttpResult, type RequestOptions, type ServerProcess } from '../helpers/server-process.ts';
import { stallWrite, type StallAt } from '../helpers/write-stall.ts';
import { runCliAt } from '../helpers/cli.ts';
import { eachLimit } from '../helpers/each-limit.ts';
import { PASSWORD, codeAt } from '../helpers/users.ts';
import { kekVersionOf } from '../../src/crypto/envelope.ts';
import { decodeSealedTotp } from '../../src/modules/identity/users/totp.ts';
import type { Storage } from '../../src/storage/database.ts';

/** SPEC §14 for the tenant KEK operations and the audit log: a kill -9 at any point leaves no torn state. */

const TENANT = 'vault';
const SECRETS = Array.from({ length: 12 }, (_, i) => `KEYS_${i}`);
const ENVIRONMENTS = ['development', 'staging', 'production'];
/** Per secret and environment: 12 x 3 x 16 = 576 versions (one destroyed): past a rewrap's first batch by more than the 60 rows the stall needs. */
const VERSIONS = 16;
/** The batch sizes of the HTTP operations (key-service.ts): each stall below is placed inside a later batch. */
const RESEAL_BATCH = 200;
const REWRAP_BATCH = 500;
/** Users with a confirmed TOTP seed and with one pending, one of each per proof that the seeds still open. */
const TOTP_PROOFS = 6;
const STEP_MS = 30_000;

interface Stored { secret: string; env: string; version: number; value: string | null }
interface TotpUser { username: string; secret: string; confirmedStep: number | null; session: string; used: boolean }
interface KeyEvent { action: string; outcome: string; context: Record<string, string> }
type Counts = Record<number, number>;

const countBy = (versions: number[]): Counts => versions.reduce<Counts>((c, v) => ({ ...c, [v]: (c[v] ?? 0) + 1 }), {});
const nowStep = () => Math.floor(Date.now() / STEP_MS);

describeEachDialect('KEK operations and the audit log survive kill -9', (dialect) => {
  let database: TestDatabase;
  let storage: Storage;
  let server: ServerProcess;
  let tenantId: string;
  const stored: Stored[] = [];
  const totpUsers: TotpUser[] = [];

  const start = async (env: Record<string, string> = {}) => {
    server = await startServer({ dataDir: database.dataDir, databaseUrl: database.url, logLevel: 'warn', env });
    return server;
  };
  /** A root request in the test tenant. */
  const api = (method: string, path: string, opts: RequestOptions = {}) =>
    server.request(method, path, { ...opts, headers: { 'x-keyhold-tenant': TENANT, ...opts.headers } });
  const ok = (res: HttpResult, status = 200) => {
    assert.equal(res.status, status, res.text);
    return res.json;
  };
  const live = () => stored.filter((s) => s.value !== null);

  before(async () => {
    database = await createTestDatabase(dialect);
    await start();
    storage = await database.open();
    tenantId = ok(await server.request('POST', '/v1/tenants', { body: { name: TENANT } }), 201).id;
    for (const name of SECRETS) ok(await api('POST', '/v1/secrets', { body: { name, owner: 'ops' } }), 201);
    const writes = SECRETS.flatMap((secret) => ENVIRONMENTS.flatMap((env) => Array.from({ length: VERSIONS }, (_, n) => ({ secret, env, n }))));
    await eachLimit(writes, 8, async ({ secret, env, n }) => {
      const value = `${secret}.${env}.${n}.${randomBytes(8 + ((n * 131) % 300)).toString('base64url')}`;
      const { version } = ok(await api('PUT', `/v1/secrets/${secret}/values/${env}`, { body: { value } }));
      stored.push({ secret, env, version, value });
    });
    ok(await api('POST', `/v1/secrets/${SECRETS[0]}/destroy`, { body: { environment: 'production', versions: [1] } }));
    stored.find((s) => s.secret === SECRETS[0] && s.env === 'production' && s.version === 1)!.value = null;
    for (let i = 0; i < TOTP_PROOFS * 2; i++) totpUsers.push(await enrol(`totp-${i}`, i % 2 === 0));
  });
  after(async () => {
    await server?.kill('SIGKILL');
    await storage?.close();
    await database?.cleanup();
  });

  /** A user with a TOTP seed sealed under the tenant KEK: confirmed, or left pending with a session to confirm it later. */
  async function enrol(username: string, confirm: boolean): Promise<TotpUser> {
    const { id } = ok(await api('POST', '/v1/users', { body: { username, password: PASSWORD } }), 201);
    const { ticket } = ok(await api('POST', `/v1/users/${id}/totp-ticket`, { body: {} }));
    const { token: session } = ok(await server.request('POST', '/v1/auth/login', { token: null, body: { tenant: TENANT, username, password: PASSWORD } }));
    const { secret } = ok(await server.request('POST', '/v1/auth/totp/enroll', { token: session, body: { ticket } }));
    let confirmedStep: number | null = null;
    if (confirm) {
      confirmedStep = nowStep();
      ok(await server.request('POST', '/v1/auth/totp/confirm', { token: session, body: { code: codeAt(secret, confirmedStep * STEP_MS) } }));
    }
    return { username, secret, confirmedStep, session, used: false };
  }

  /** The seeds still open: a confirmed user signs in with a code, a pending one confirms (each user once: codes do not replay). */
  async function seedsOpen(): Promise<void> {
    const confirmed = totpUsers.find((u) => !u.used && u.confirmedStep !== null)!;
    const pending = totpUsers.find((u) => !u.used && u.confirmedStep === null)!;
    confirmed.used = pending.used = true;
    const step = Math.max(confirmed.confirmedStep! + 1, nowStep());
    ok(await server.request('POST', '/v1/auth/login', {
      token: null, body: { tenant: TENANT, username: confirmed.username, password: PASSWORD, totp: codeAt(confirmed.secret, step * STEP_MS) },
    }));
    ok(await server.request('POST', '/v1/auth/totp/confirm', { token: pending.session, body: { code: codeAt(pending.secret, nowStep() * STEP_MS) } }));
  }

  /** Every value written reads back exactly; the destroyed version stays destroyed. */
  async function valuesReadBack(): Promise<void> {
    const wrong: string[] = [];
    await eachLimit(stored, 8, async (s) => {
      const res = await api('GET', `/v1/secrets/${s.secret}/values/${s.env}?version=${s.version}`);
      const fine = s.value === null ? res.status === 410 : res.status === 200 && res.json.value === s.value;
      if (!fine) wrong.push(`${s.secret}/${s.env} v${s.version}: ${res.status}${res.status === 200 ? ' another value' : ` ${res.text}`}`);
    });
    assert.deepEqual(wrong, [], 'every value reads back as written');
  }

  /** The chain proves intact, over HTTP and through `keyhold audit verify`. */
  async function auditIntact(): Promise<void> {
    const res = ok(await api('GET', '/v1/audit/verify'));
    assert.equal(res.ok, true, JSON.stringify(res));
    const cli = await runCliAt(server.address, ['audit', 'verify'], { token: server.token, env: { KEYHOLD_TENANT: TENANT } });
    assert.equal(cli.code, 0, cli.stdout + cli.stderr);
    assert.match(cli.stdout, /Audit log intact/);
  }

  const headSeq = async () => (await storage.db.selectFrom('audit_head').select('seq').where('id', '=', 1).executeTakeFirstOrThrow()).seq;

  async function keyEvents(since: number): Promise<KeyEvent[]> {
    const rows = await storage.db.selectFrom('audit_events').select(['action', 'outcome', 'context'])
      .where('seq', '>', since).where('tenant_id', '=', tenantId).where('action', 'like', 'key.%').orderBy('seq').execute();
    return rows.map((r) => ({ action: r.action, outcome: r.outcome, context: JSON.parse(r.context) }));
  }

  /**
   * The tenant's keys as stored, after asserting what must hold at every instant: each data key and
   * TOTP seed is wrapped under the KEK version its row names, a version that exists, is not retired
   * and still has its material; the current version is usable; below the minimum all is retired.
   */
  async function keyState() {
    const db = storage.db;
    const tenant = await db.selectFrom('tenants').select(['kek_version', 'kek_min_version']).where('id', '=', tenantId).executeTakeFirstOrThrow();
    const keks = await db.selectFrom('tenant_keks').select(['version', 'wrapped_key', 'retired_at']).where('tenant_id', '=', tenantId).orderBy('version').execute();
    const rows = await db.selectFrom('secret_versions').select(['id', 'kek_version', 'wrapped_dek']).where('tenant_id', '=', tenantId).where('wrapped_dek', 'is not', null).execute();
    const users = await db.selectFrom('users').select(['totp_secret', 'totp_pending_secret']).where('tenant_id', '=', tenantId).execute();
    const usable = new Set(keks.filter((k) => k.wrapped_key !== null && k.retired_at === null).map((k) => k.version));
    const retired = keks.filter((k) => k.retired_at !== null).map((k) => k.version);
    assert.ok(usable.has(tenant.kek_version), `the current KEK version ${tenant.kek_version} is usable`);
    assert.deepEqual(keks.filter((k) => k.version >= tenant.kek_min_version && !usable.has(k.version)).map((k) => k.version), [], 'no KEK at or above the minimum is retired');
    assert.deepEqual(keks.filter((k) => k.version < tenant.kek_min_version && (k.wrapped_key !== null || k.retired_at === null)).map((k) => k.version), [], 'every KEK below the minimum is retired and wiped');
    const dangling = rows.filter((r) => kekVersionOf(r.wrapped_dek!) !== r.kek_version || !usable.has(r.kek_version) || r.kek_version < tenant.kek_min_version);
    assert.deepEqual(dangling.map((r) => `${r.id}: row v${r.kek_version}, key v${kekVersionOf(r.wrapped_dek!)}`), [], 'no data key under a missing, retired or mismatched KEK');
    const seeds = users.flatMap((u) => [u.totp_secret, u.totp_pending_secret]).filter((b) => b !== null).map((b) => kekVersionOf(decodeSealedTotp(b)!.wrappedDek));
    assert.deepEqual(seeds.filter((v) => !usable.has(v)), [], 'no TOTP seed under a missing or retired KEK');
    return { current: tenant.kek_version, min: tenant.kek_min_version, retired, dataKeys: countBy(rows.map((r) => r.kek_version)), seeds: countBy(seeds) };
  }

  /**
   * Starts `POST path` with the server held at the write `stall` names (write-stall.ts),
   * kills it there once `committed` holds for the key events since the start, and restarts it on the
   * same data directory and database (dev mode unseals). Returns the head seq before the operation.
   */
  async function killDuring(path: string, stall: StallAt, committed: (events: KeyEvent[]) => boolean | Promise<boolean>): Promise<number> {
    const since = await headSeq();
    const stalled = await stallWrite(database, stall);
    const answer = api('POST', path).catch(() => null);
    let exit: Exit;
    let answered: HttpResult | null;
    try {
      await stalled.reached(async () => committed(await keyEvents(since)));
    } finally {
      // Whether or not it got there: a stall left in place would hold every later test.
      exit = await server.kill('SIGKILL');
      answered = await answer;
      await stalled.remove();
      await start();
    }
    assert.deepEqual(exit, { code: null, signal: 'SIGKILL' });
    assert.equal(answered, null, `${path} was not answered: the server died inside it`);
    return since;
  }

  /** After a finished operation: every data key and seed under `version`, every older KEK retired and wiped. */
  async function allUnder(version: number) {
    const state = await keyState();
    assert.deepEqual([state.current, state.min], [version, version]);
    assert.deepEqual(state.dataKeys, { [version]: live().length }, 'every data key is under the newest KEK');
    assert.deepEqual(state.seeds, { [version]: totpUsers.length }, 'every TOTP seed is under the newest KEK');
    assert.deepEqual(state.retired, Array.from({ length: version - 1 }, (_, i) => i + 1), 'every older KEK is retired');
  }

  const isBatch = (action: string) => (e: KeyEvent) => e.action === action && e.outcome === 'allowed';

  test('killed inside the second batch of a re-encrypt: values and seeds open, nothing dangles, the log accounts for the batch that committed, and a re-run finishes', async () => {
    const before = await keyState();
    const since = await killDuring('/v1/keys/reencrypt', { table: 'secret_versions', columns: ['wrapped_dek'], at: RESEAL_BATCH + RESEAL_BATCH / 2 },
      (events) => events.some(isBatch('key.reencrypt-batch')));

    const events = await keyEvents(since);
    assert.deepEqual(events.map((e) => e.action), ['key.reencrypt-start', 'key.rotate', 'key.reencrypt-batch'], 'started, rotated, one batch committed, no end');
    const toVersion = before.current + 1;
    const state = await keyState();
    assert.deepEqual([state.current, state.min, state.retired], [toVersion, before.min, before.retired], 'rotated, nothing retired');
    assert.equal(state.dataKeys[toVersion], RESEAL_BATCH, 'exactly the committed batch moved');
    assert.equal(events[2]!.context.resealed, String(RESEAL_BATCH), 'its event counts what moved');
    assert.equal(Object.values(state.dataKeys).reduce((a, b) => a + b, 0), live().length, 'no data key lost');
    await valuesReadBack();
    await seedsOpen();
    await auditIntact();

    const from = await headSeq();
    const cli = await runCliAt(server.address, ['keys', 'reencrypt', '--json'], { token: server.token, env: { KEYHOLD_TENANT: TENANT } });
    assert.equal(cli.code, 0, cli.stdout + cli.stderr);
    assert.equal(JSON.parse(cli.stdout).resealed, live().length);
    const end = (await keyEvents(from)).at(-1)!;
    assert.deepEqual([end.action, end.outcome], ['key.reencrypt', 'allowed'], 'the re-run ends with its closing event');
    await allUnder(toVersion + 1);
    await valuesReadBack();
    await seedsOpen();
    await auditIntact();
  });

  test('killed inside the second batch of a rewrap after a rotate: the same, and the re-run moves the rest and the seeds', async () => {
    const before = await keyState();
    const rotated = ok(await api('POST', '/v1/keys/rotate'));
    const toVersion = before.current + 1;
    assert.equal(rotated.currentVersion, toVersion);
    const since = await killDuring('/v1/keys/rewrap', { table: 'secret_versions', columns: ['wrapped_dek'], at: REWRAP_BATCH + 60 },
      (events) => events.some(isBatch('key.rewrap-batch')));

    const events = await keyEvents(since);
    assert.deepEqual(events.map((e) => e.action), ['key.rewrap-start', 'key.rewrap-batch'], 'started, one batch committed, no end');
    assert.equal(events[1]!.context.rewrapped, String(REWRAP_BATCH));
    const state = await keyState();
    assert.deepEqual([state.current, state.min, state.retired], [toVersion, before.min, before.retired], 'nothing retired');
    assert.deepEqual(state.dataKeys, { [before.current]: live().length - REWRAP_BATCH, [toVersion]: REWRAP_BATCH });
    assert.deepEqual(state.seeds, { [before.current]: totpUsers.length }, 'the seeds move at the end, which was not reached');
    await valuesReadBack();
    await seedsOpen();
    await auditIntact();

    const rerun = ok(await api('POST', '/v1/keys/rewrap'));
    assert.equal(rerun.rewrapped, live().length - REWRAP_BATCH + totpUsers.length, 'the re-run moves what is left, seeds included');
    await allUnder(toVersion);
    await valuesReadBack();
    await seedsOpen();
    await auditIntact();
  });

  test('killed while a re-encrypt reseals the TOTP seeds: every user can still sign in, and a re-run finishes', async () => {
    const before = await keyState();
    const batches = Math.ceil(live().length / RESEAL_BATCH);
    // The second seed stalls: the first is resealed under the new KEK, the others are still under the old one.
    // Each seed commits on its own, so the first one's write also holds the lock for a moment: on SQLite, where
    // only the lock can be seen, the kill waits until that seed is seen committed.
    const since = await killDuring('/v1/keys/reencrypt', { table: 'users', columns: ['totp_secret', 'totp_pending_secret'], at: 2 },
      async (events) => events.filter(isBatch('key.reencrypt-batch')).length === batches && ((await keyState()).seeds[before.current + 1] ?? 0) >= 1);

    const events = await keyEvents(since);
    assert.deepEqual(events.map((e) => e.action), ['key.reencrypt-start', 'key.rotate', ...Array<string>(batches).fill('key.reencrypt-batch')]);
    const toVersion = before.current + 1;
    const state = await keyState();
    assert.deepEqual([state.current, state.min, state.retired], [toVersion, before.min, before.retired]);
    assert.deepEqual(state.dataKeys, { [toVersion]: live().length });
    // On PostgreSQL the stalled UPDATE was sent on its own (autocommit): freed after the kill, the database finishes it without its client.
    const resealed = dialect === 'postgres' ? 2 : 1;
    assert.deepEqual(state.seeds, { [before.current]: totpUsers.length - resealed, [toVersion]: resealed }, 'seeds on both KEKs');
    await valuesReadBack();
    await seedsOpen();
    await auditIntact();

    const rerun = ok(await api('POST', '/v1/keys/reencrypt'));
    assert.equal(rerun.resealed, live().length);
    await allUnder(toVersion + 1);
    await valuesReadBack();
    await seedsOpen();
    await auditIntact();
  });

  test('a kill -9 during a burst of reads and writes loses no audit event of a request answered 2xx, and the chain verifies', async (t) => {
    // Checkpoints signed every 100 ms: the kill may land in one too.
    await server.stop();
    await start({ KEYHOLD_AUDIT_CHECKPOINT_INTERVAL: '100ms' });
    const since = await headSeq();
    const CLIENTS = 8;
    const KILL_AFTER = 240;
    const MAX_PER_CLIENT = 200;
    const acked: Array<{ requestId: string; action: string }> = [];
    const unexpected: string[] = [];
    let inFlight = 0;
    let inFlightAtKill = -1;
    let killed: Promise<unknown> | null = null;
    const current = server;

    const client = async (c: number) => {
      for (let n = 0; n < MAX_PER_CLIENT && !killed; n++) {
        const s = stored[(c * 97 + n * 31) % stored.length]!;
        const path = `/v1/secrets/${s.secret}/values/${s.env}`;
        const write = c % 2 === 0;
        inFlight++;
        let res: HttpResult;
        try {
          res = await (write ? api('PUT', path, { body: { value: `burst.${c}.${n}.${randomBytes(12).toString('base64url')}` } }) : api('GET', path));
        } catch {
          return; // the server died under this request: its outcome is unknown
        } finally {
          inFlight--;
        }
        if (res.status !== 200) {
          if (!killed) unexpected.push(`${res.status} ${res.text}`);
          return;
        }
        // An answer that arrives after the kill was still sent by the server, so it still counts.
        acked.push({ requestId: res.headers.get('x-request-id')!, action: write ? 'secret.write' : 'secret.reveal' });
        if (acked.length === KILL_AFTER) {
          inFlightAtKill = inFlight;
          killed = current.kill('SIGKILL');
        }
      }
    };
    await Promise.all(Array.from({ length: CLIENTS }, (_, c) => client(c)));
    assert.deepEqual(unexpected, [], 'no request failed before the kill');
    assert.ok(killed, `the server was killed (after ${acked.length} answers)`);
    assert.deepEqual(await killed, { code: null, signal: 'SIGKILL' });
    assert.ok(inFlightAtKill > 0, 'requests were in flight at the kill');

    await start();
    const rows = await storage.db.selectFrom('audit_events').select(['action', 'outcome', 'context']).where('seq', '>', since).orderBy('seq').execute();
    const byRequest = new Map<string, string[]>();
    for (const r of rows) {
      const requestId = JSON.parse(r.context).requestId as string | undefined;
      if (requestId !== undefined) byRequest.set(requestId, [...(byRequest.get(requestId) ?? []), `${r.action} ${r.outcome}`]);
    }
    const lost = acked.filter((a) => JSON.stringify(byRequest.get(a.requestId)) !== JSON.stringify([`${a.action} allowed`]));
    assert.deepEqual(lost.map((a) => `${a.action} ${a.requestId}: ${JSON.stringify(byRequest.get(a.requestId) ?? null)}`), [],
      'every request answered 2xx has exactly its one event');
    t.diagnostic(`${acked.length} answered, ${inFlightAtKill} in flight at the kill, ${rows.filter((r) => r.action === 'audit.checkpoint').length} checkpoints during the burst`);
    await auditIntact();
  });
});
