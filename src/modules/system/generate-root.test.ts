import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { decodeRootToken } from '../../crypto/root/otp.ts';
import { KeyholdError } from '../../errors/index.ts';
import { createRootGeneration, GENERATE_ROOT_TTL_MS } from './root-generation.ts';
import { createRootGenerationLedger } from './root-generation-ledger.ts';
import { createSystemMetaRepository } from './system-meta-repository.ts';
import type { RequestSource } from '../identity/request-source.ts';
import { until, within } from '../../../test/helpers/deadline.ts';

type Reply = { status: number; body: Record<string, any> };

describeEachDialect('a new root token from unseal shares (generate-root)', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
  });
  after(() => h.close());

  async function call(method: 'GET' | 'POST' | 'DELETE', url: string, body?: object, token?: string): Promise<Reply> {
    const res = await h.app.inject({ method, url, ...(body ? { payload: body } : {}), headers: token ? { authorization: `Bearer ${token}` } : {} });
    return { status: res.statusCode, body: res.body ? res.json() : {} };
  }
  const start = () => call('POST', '/v1/sys/generate-root');
  const give = (nonce: string, share: string) => call('POST', '/v1/sys/generate-root/share', { nonce, share });
  const cancel = () => call('DELETE', '/v1/sys/generate-root');
  const events = async (action: string) => (await h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', action).orderBy('seq').execute());
  /** The events of the attempt `nonce` after its start, as action/actor:outcome:reason. */
  const trailOf = async (nonce: string) => (await h.storage.db.selectFrom('audit_events').selectAll().where('action', 'like', 'system.generate-root%').orderBy('seq').execute())
    .filter((e) => JSON.parse(e.context).nonce === nonce && e.action !== 'system.generate-root-start')
    .map((e) => `${e.action} ${e.actor_type}/${e.actor_id}:${e.outcome}:${e.reason ?? ''}`);
  const openAttempts = async () => (await h.storage.db.selectFrom('root_generation_attempts').select('nonce').execute()).map((r) => r.nonce);
  const unseal = async () => {
    for (const share of h.shares.slice(0, 2)) await h.services.system.unseal(share);
  };
  const source: RequestSource = { requestId: 'test', sourceIp: '127.0.0.1' };

  test('a threshold of shares gives a root token only the starter can open; it works, and the old one can then be revoked', async () => {
    const started = await start();
    assert.equal(started.status, 200);
    const { nonce, otp } = started.body;
    assert.equal((await call('GET', '/v1/sys/generate-root')).body.progress, 0);

    const first = await give(nonce, h.shares[0]!);
    assert.deepEqual([first.status, first.body.complete, first.body.progress, first.body.threshold], [200, false, 1, 2]);
    assert.equal(first.body.encodedToken, undefined);
    const last = await give(nonce, h.shares[2]!);
    assert.deepEqual([last.status, last.body.complete, last.body.progress], [200, true, 2]);
    const encoded: string = last.body.encodedToken;
    assert.ok(!encoded.includes('kh_'), 'the answer to the last share holder does not carry the token in the clear');
    assert.throws(() => decodeRootToken(Buffer.alloc(32, 7).toString('base64url'), encoded), { code: 'INVALID_OTP' });
    const token = decodeRootToken(otp, encoded);
    assert.match(token, /^kh_/);

    // The new token is root: it lists the root tokens (itself marked current) and may revoke the old one.
    const listed = await call('GET', '/v1/sys/root-tokens', undefined, token);
    assert.equal(listed.status, 200);
    assert.equal(listed.body.items.length, 2);
    const mine = listed.body.items.find((t: any) => t.current);
    assert.equal(mine.id, last.body.tokenId);
    const old = listed.body.items.find((t: any) => !t.current);
    assert.equal((await call('DELETE', `/v1/tokens/${old.id}`, undefined, token)).status, 204);
    assert.equal((await call('GET', '/v1/tenants', undefined, h.rootToken)).status, 401);
    assert.equal((await call('GET', '/v1/tenants', undefined, token)).status, 200);
    const after = (await call('GET', '/v1/sys/root-tokens', undefined, token)).body.items;
    assert.ok(after.find((t: any) => t.id === old.id).revokedAt, 'the revoked root token stays on record');
    h.rootToken = token;

    // Every step is an event; the issue names the new token's id (never the token, the key or a share).
    assert.equal((await events('system.generate-root-start')).at(-1)!.outcome, 'allowed');
    assert.equal((await events('system.generate-root-share')).at(-1)!.context.includes('"progress":"1"'), true);
    const issued = (await events('system.generate-root')).at(-1)!;
    assert.deepEqual([issued.outcome, issued.resource_id], ['allowed', last.body.tokenId]);
    // The attempt is over.
    assert.equal((await call('GET', '/v1/sys/generate-root')).body.started, false);
    assert.equal((await give(nonce, h.shares[1]!)).body.error?.code, 'GENERATE_ROOT_NOT_STARTED');
  });

  test('a share for another nonce, a foreign or repeated share, and junk are refused and do not count', async () => {
    const { nonce } = (await start()).body;
    try {
      assert.equal((await give('not-the-nonce', h.shares[0]!)).body.error?.code, 'GENERATE_ROOT_NONCE_MISMATCH');
      const other = await createHarness('sqlite');
      try {
        assert.equal((await give(nonce, other.shares[0]!)).body.error?.code, 'INVALID_SHARE');
      } finally {
        await other.close();
      }
      assert.equal((await give(nonce, h.shares[1]!)).body.progress, 1);
      assert.equal((await give(nonce, h.shares[1]!)).body.error?.code, 'INVALID_SHARE');
      const junk = await give(nonce, 'khs1.AAAA');
      assert.deepEqual([junk.status, junk.body.error?.code], [400, 'INVALID_SHARE']);
      assert.equal((await call('GET', '/v1/sys/generate-root')).body.progress, 1);
      assert.equal((await events('system.generate-root-share')).at(-1)!.outcome, 'denied');
    } finally {
      assert.equal((await cancel()).status, 204);
    }
  });

  test('a nonce is a UUID: a command line takes it after --nonce (a value starting with "-" would read as a flag)', async () => {
    // Through the service: the endpoint's per-address limit would stop a loop (base64url began with '-' once in 64).
    const source = { ...h.ctx, sourceIp: '127.0.0.1' };
    for (let i = 0; i < 200; i++) {
      const { nonce } = await h.services.rootGeneration.start(source);
      assert.match(nonce, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      await h.services.rootGeneration.cancel(source);
    }
  });

  test('one attempt at a time; cancel forgets its shares; a seal ends it; it expires after an hour', async () => {
    const { nonce } = (await start()).body;
    assert.equal((await start()).body.error?.code, 'GENERATE_ROOT_IN_PROGRESS');
    await give(nonce, h.shares[0]!);
    await cancel();
    const status = (await call('GET', '/v1/sys/generate-root')).body;
    assert.deepEqual([status.started, status.nonce, status.progress], [false, null, 0]);
    assert.equal((await events('system.generate-root-cancel')).length >= 1, true);

    const second = (await start()).body;
    await give(second.nonce, h.shares[0]!);
    h.clock.advance(GENERATE_ROOT_TTL_MS - 1);
    h.services.rootGeneration.sweep();
    assert.equal((await call('GET', '/v1/sys/generate-root')).body.progress, 1, 'the sweep leaves a live attempt alone');
    h.clock.advance(1);
    h.services.rootGeneration.sweep();
    assert.equal((await give(second.nonce, h.shares[1]!)).body.error?.code, 'GENERATE_ROOT_NOT_STARTED');

    const third = (await start()).body;
    await give(third.nonce, h.shares[0]!);
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    assert.equal((await give(third.nonce, h.shares[1]!)).body.error?.code, 'SEALED');
    assert.equal((await start()).body.error?.code, 'SEALED');
    for (const share of h.shares.slice(0, 2)) await h.services.system.unseal(share);
    assert.equal((await call('GET', '/v1/sys/generate-root')).body.started, false, 'the seal dropped the attempt and its share');
  });

  test('two completing shares at once issue exactly one token', async () => {
    const { nonce, otp } = (await start()).body;
    await give(nonce, h.shares[0]!);
    const before = (await call('GET', '/v1/sys/root-tokens', undefined, h.rootToken)).body.items.length;
    const [a, b] = await Promise.all([give(nonce, h.shares[1]!), give(nonce, h.shares[2]!)]);
    const done = [a, b].filter((r) => r.body.complete === true);
    assert.equal(done.length, 1);
    assert.equal([a, b].find((r) => r !== done[0])!.body.error?.code, 'GENERATE_ROOT_NOT_STARTED');
    assert.match(decodeRootToken(otp, done[0]!.body.encodedToken), /^kh_/);
    assert.equal((await call('GET', '/v1/sys/root-tokens', undefined, h.rootToken)).body.items.length, before + 1);
  });

  test('fails closed: no token is issued when its event cannot be recorded, and the attempt ends', async () => {
    const { nonce } = (await start()).body;
    await give(nonce, h.shares[0]!);
    const before = (await call('GET', '/v1/sys/root-tokens', undefined, h.rootToken)).body.items.length;
    const appendInTx = h.services.audit.appendInTx;
    h.services.audit.appendInTx = async () => {
      throw Object.assign(new Error('disk full'), { code: 'SQLITE_FULL' });
    };
    try {
      const res = await give(nonce, h.shares[1]!);
      assert.ok(res.status >= 400 && res.body.encodedToken === undefined);
    } finally {
      h.services.audit.appendInTx = appendInTx;
    }
    assert.equal((await call('GET', '/v1/sys/root-tokens', undefined, h.rootToken)).body.items.length, before);
    assert.equal((await call('GET', '/v1/sys/generate-root')).body.started, false);
  });

  test('a share whose event is still being written when the threshold is reached counts only once it is durable', async () => {
    const { nonce } = (await start()).body;
    const before = (await call('GET', '/v1/sys/root-tokens', undefined, h.rootToken)).body.items.length;
    const appendInTx = h.services.audit.appendInTx;
    let refuseFirst: ((err: Error) => void) | undefined;
    h.services.audit.appendInTx = (trx, inputs) => (inputs[0]!.action === 'system.generate-root-share' && inputs[0]!.outcome === 'allowed'
      ? new Promise((_, reject) => (refuseFirst = reject))
      : appendInTx(trx, inputs));
    try {
      const first = give(nonce, h.shares[0]!);
      for (const until = Date.now() + 10_000; !refuseFirst;) {
        assert.ok(Date.now() < until, 'the first share never reached its audit event');
        await new Promise((r) => setImmediate(r));
      }
      // The completing share arrives while the first share's event is unwritten; then that event fails.
      const last = give(nonce, h.shares[1]!);
      await within(last, 200, undefined);
      refuseFirst(new KeyholdError('AUDIT_UNAVAILABLE', 'the audit log cannot record this action, so it was refused'));
      assert.equal((await first).body.error?.code, 'AUDIT_UNAVAILABLE');
      const res = await last;
      // SQLite: a share's event is written in a transaction with the check its attempt is open, and SQLite's one
      // connection makes the completing share's reads wait for it: it finds the attempt ended by then.
      const refused = dialect === 'postgres' ? [503, 'AUDIT_UNAVAILABLE'] : [409, 'GENERATE_ROOT_NOT_STARTED'];
      assert.deepEqual([res.status, res.body.error?.code, res.body.encodedToken], [...refused, undefined]);
    } finally {
      h.services.audit.appendInTx = appendInTx;
    }
    assert.equal((await call('GET', '/v1/sys/root-tokens', undefined, h.rootToken)).body.items.length, before);
    assert.equal((await call('GET', '/v1/sys/generate-root')).body.started, false);
  });

  test('a start a seal or a cancel overtakes before its event is durable answers an error, never a wiped one-time key', async () => {
    // Each lands in memory at once; what it records waits for the start's event (a cancel's answer, a seal's end).
    let cancelled: Promise<boolean> | null = null;
    const cases: Array<[string, () => void, string, string]> = [
      ['seal', () => h.services.seal.seal(), 'SEALED', 'system.generate-root-end system/keyhold:allowed:SEALED'],
      ['cancel', () => void (cancelled = h.services.rootGeneration.cancel(source)), 'GENERATE_ROOT_NOT_STARTED', 'system.generate-root-cancel anonymous/unknown:allowed:'],
    ];
    for (const [what, overtake, code, end] of cases) {
      const appendInTx = h.services.audit.appendInTx;
      // The start's event is written (under the key) before the seal or cancel lands; it commits after.
      h.services.audit.appendInTx = async (trx, inputs) => {
        const appended = await appendInTx(trx, inputs);
        if (inputs[0]!.action === 'system.generate-root-start') overtake();
        return appended;
      };
      let res: Reply;
      try {
        res = await start();
      } finally {
        h.services.audit.appendInTx = appendInTx;
      }
      if (h.services.seal.isSealed()) await unseal();
      assert.deepEqual([res.status >= 400, res.body.error?.code, res.body.otp], [true, code, undefined], what);
      assert.equal((await call('GET', '/v1/sys/generate-root')).body.started, false, what);
      // Its trail ends once: with the cancel, or (a sealed log takes no end) at the first sweep after the unseal.
      if (cancelled) assert.equal(await cancelled, true);
      await h.services.rootGeneration.sweep();
      const nonce = (await events('system.generate-root-start')).at(-1)!.context;
      assert.deepEqual(await trailOf(JSON.parse(nonce).nonce), [end], what);
    }
    assert.deepEqual(await openAttempts(), []);
  });

  test('no share counts before the start of its attempt is durable', async () => {
    const ledger = h.services.rootGenerationLedger;
    const open = ledger.open;
    let letStart: (() => void) | undefined;
    // Held before its row and event are written (a transaction held open here would hold SQLite's one connection).
    ledger.open = (nonce, event) => new Promise<void>((resolve) => (letStart = resolve)).then(() => open(nonce, event));
    let settled = false;
    const started = start().finally(() => (settled = true));
    try {
      // Bounded: a start that neither records nor settles would otherwise spin here after the test timed out.
      for (const until = Date.now() + 10_000; !letStart && !settled;) {
        assert.ok(Date.now() < until, 'the start neither recorded its event nor settled');
        await new Promise((r) => setImmediate(r));
      }
    } finally {
      ledger.open = open;
    }
    assert.ok(letStart, 'the start is waiting for its event');
    // Anyone can read the nonce; a share given with it now must wait for the start like everyone else.
    const { nonce } = (await call('GET', '/v1/sys/generate-root')).body;
    assert.equal((await give(nonce, h.shares[0]!)).body.error?.code, 'GENERATE_ROOT_NOT_STARTED');
    letStart();
    assert.equal((await started).status, 200);
    assert.equal((await give(nonce, h.shares[0]!)).body.progress, 1);
    assert.equal((await cancel()).status, 204);
  });

  test('a cancel whose event cannot be recorded still cancels, and its answer says so', async () => {
    const { nonce } = (await start()).body;
    await give(nonce, h.shares[0]!);
    const appendInTx = h.services.audit.appendInTx;
    // As the log answers when it cannot write: the action "was refused".
    h.services.audit.appendInTx = async () => {
      throw new KeyholdError('AUDIT_UNAVAILABLE', 'the audit log cannot record this action, so it was refused');
    };
    let res: Reply;
    try {
      res = await cancel();
    } finally {
      h.services.audit.appendInTx = appendInTx;
    }
    assert.deepEqual([res.status, res.body.error?.code], [503, 'AUDIT_UNAVAILABLE']);
    assert.match(res.body.error.message, /is cancelled/);
    assert.equal((await call('GET', '/v1/sys/generate-root')).body.started, false);
    // The cancel is owed to the trail: the next sweep records it, once.
    assert.deepEqual(await trailOf(nonce), ['system.generate-root-share anonymous/unknown:allowed:']);
    await h.services.rootGeneration.sweep();
    await h.services.rootGeneration.sweep();
    assert.deepEqual(await trailOf(nonce), ['system.generate-root-share anonymous/unknown:allowed:', 'system.generate-root-cancel anonymous/unknown:allowed:']);
    assert.deepEqual(await openAttempts(), []);
  });

  test('an attempt that runs out of time, or that a seal ends, ends in the trail once, by the system', async () => {
    const first = (await start()).body;
    h.clock.advance(GENERATE_ROOT_TTL_MS);
    await h.services.rootGeneration.sweep();
    assert.deepEqual(await trailOf(first.nonce), ['system.generate-root-end system/keyhold:allowed:EXPIRED']);

    const second = (await start()).body;
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    await h.services.rootGeneration.sweep();
    assert.deepEqual(await trailOf(second.nonce), [], 'a sealed log takes no end');
    await unseal();
    await h.services.rootGeneration.sweep();
    await h.services.rootGeneration.sweep();
    assert.deepEqual(await trailOf(second.nonce), ['system.generate-root-end system/keyhold:allowed:SEALED']);
    assert.deepEqual(await trailOf(first.nonce), ['system.generate-root-end system/keyhold:allowed:EXPIRED']);
    assert.deepEqual(await openAttempts(), []);
  });

  test('an attempt a dead process left open is ended once, though two nodes find it at once; one a live process holds is left alone', async () => {
    // Another node: its own ledger and generation over the same database.
    const ledger = createRootGenerationLedger({ db: h.storage.db, dialect, clock: h.clock, audit: h.services.audit });
    const other = createRootGeneration({
      db: h.storage.db, clock: h.clock, tokens: h.services.tokens, meta: createSystemMetaRepository(h.storage.db), seal: h.services.seal, audit: h.services.audit, ledger,
    });
    const nonce = '00000000-0000-4000-8000-000000000001';
    const claim = await ledger.open(nonce, {
      tenantId: null, actor: { type: 'anonymous', id: 'unknown' }, action: 'system.generate-root-start', resource: { type: 'system', id: null, name: null }, outcome: 'allowed', context: { nonce },
    });
    if (dialect === 'postgres') {
      // Its process lives (it holds the nonce's lock): no other node ends it.
      assert.equal(await h.services.rootGeneration.sweep(), 0);
      assert.deepEqual(await trailOf(nonce), []);
    }
    await claim.release(); // the process died: the server drops its lock
    const closed = await Promise.all([h.services.rootGeneration.sweep(), other.sweep(), h.services.rootGeneration.sweep()]);
    assert.equal(closed.reduce((a, b) => a + b, 0), 1);
    assert.deepEqual(await trailOf(nonce), ['system.generate-root-end system/keyhold:allowed:INTERRUPTED']);
    assert.equal(await other.sweep(), 0);
    assert.deepEqual(await openAttempts(), []);
  });

  /** Another node: its own ledger and generation over the same database. */
  const anotherNode = () => createRootGeneration({
    db: h.storage.db, clock: h.clock, tokens: h.services.tokens, meta: createSystemMetaRepository(h.storage.db), seal: h.services.seal, audit: h.services.audit,
    ledger: createRootGenerationLedger({ db: h.storage.db, dialect, clock: h.clock, audit: h.services.audit }),
  });
  /** PostgreSQL: the backend holding the attempt's advisory lock (root-generation-ledger.ts). */
  const lockHolder = async (nonce: string) => (await sql<{ pid: number }>`select l.pid from pg_locks l where l.locktype = 'advisory' and l.granted
    and ((l.classid::bigint << 32) | l.objid::bigint) = hashtextextended('keyhold/generate-root/' || current_schema() || '/' || ${nonce}, 0)`.execute(h.storage.db)).rows[0]?.pid;
  /** The holder of `nonce` lives on but loses its lock, and `other`'s sweep ends the attempt INTERRUPTED. */
  async function endedElsewhere(other: ReturnType<typeof anotherNode>, nonce: string) {
    if (dialect === 'postgres') {
      assert.equal(await other.sweep(), 0, 'its holder\'s lock keeps it');
      // Failover, a killed backend, idle_session_timeout: the lock goes with its connection, the holder lives on.
      const pid = await lockHolder(nonce);
      assert.ok(pid !== undefined);
      await sql`select pg_terminate_backend(${pid})`.execute(h.storage.db);
      await until('the lock gone with its connection', async () => (await lockHolder(nonce)) === undefined);
    }
    // SQLite: as a second process on the file would (docs/operations.md: one process serves a file).
    assert.equal(await other.sweep(), 1);
    assert.deepEqual(await trailOf(nonce), ['system.generate-root-end system/keyhold:allowed:INTERRUPTED']);
  }

  test('an attempt another node ended while its holder lives (its lock connection lost) takes no share after its end', async () => {
    const other = anotherNode();
    // A share that would count (the threshold is 2: a second one would complete, which was refused already), and junk.
    for (const [what, share] of [['a share', h.shares[0]!], ['junk', 'khs1.AAAA']] as const) {
      const { nonce } = (await start()).body;
      await endedElsewhere(other, nonce);
      const refused = await give(nonce, share);
      assert.deepEqual([refused.status, refused.body.error?.code], [409, 'GENERATE_ROOT_NOT_STARTED'], what);
      assert.deepEqual(await trailOf(nonce), ['system.generate-root-end system/keyhold:allowed:INTERRUPTED'], 'nothing after its end');
      assert.equal((await call('GET', '/v1/sys/generate-root')).body.started, false, 'the holder forgot it');
    }
    // The holder is free for a new attempt, which completes.
    const { nonce, otp } = (await start()).body;
    await give(nonce, h.shares[0]!);
    assert.match(decodeRootToken(otp, (await give(nonce, h.shares[1]!)).body.encodedToken), /^kh_/);
    assert.deepEqual(await openAttempts(), []);
  });

  test('an attempt another node ended while its holder lives is let go by the holder\'s next sweep or start, unrecorded', async () => {
    const other = anotherNode();
    const trail = async () => (await h.storage.db.selectFrom('audit_events').select('seq').execute()).length;
    for (const by of ['sweep', 'start'] as const) {
      const stale = (await start()).body.nonce;
      await endedElsewhere(other, stale);
      // Until its holder looks (status reads nothing), it still shows the attempt.
      assert.equal((await call('GET', '/v1/sys/generate-root')).body.nonce, stale);
      const events = await trail();
      if (by === 'sweep') {
        assert.equal(await h.services.rootGeneration.sweep(), 0, by);
        assert.equal(await trail(), events, `${by}: no event of its own`);
        assert.deepEqual((await call('GET', '/v1/sys/generate-root')).body.started, false, `${by}: the holder let it go`);
      }
      const started = await start();
      assert.equal(started.status, 200, by);
      assert.deepEqual(await trailOf(stale), ['system.generate-root-end system/keyhold:allowed:INTERRUPTED'], `${by}: its end only`);
      assert.equal(await trail(), events + 1, `${by}: the new start's event only`);
      assert.deepEqual(await openAttempts(), [started.body.nonce], by);
      if (dialect === 'postgres') assert.ok((await lockHolder(started.body.nonce)) !== undefined, `${by}: the new attempt holds its lock`);
      assert.equal((await cancel()).status, 204);
    }
    assert.deepEqual(await openAttempts(), []);
  });

  test('a seal while the completing share makes its token issues nothing, even if the server is unsealed again at once', async () => {
    const { nonce } = (await start()).body;
    await give(nonce, h.shares[0]!);
    const before = (await call('GET', '/v1/sys/root-tokens', undefined, h.rootToken)).body.items.length;
    // The seal (and an unseal right after it) lands after the shares were taken and before the token is issued.
    const issue = h.services.tokens.issue;
    h.services.tokens.issue = async (...args: Parameters<typeof issue>) => {
      h.services.tokens.issue = issue;
      const seal = h.services.seal;
      seal.seal();
      for (const share of h.shares.slice(0, 2)) await seal.submitShare(share);
      assert.equal(seal.openStaged(), true);
      return issue(...args);
    };
    try {
      const res = await give(nonce, h.shares[1]!);
      assert.deepEqual([res.status, res.body.error?.code, res.body.encodedToken], [503, 'SEALED', undefined]);
    } finally {
      h.services.tokens.issue = issue;
    }
    assert.equal(h.services.seal.isSealed(), false);
    assert.equal((await call('GET', '/v1/sys/root-tokens', undefined, h.rootToken)).body.items.length, before);
    assert.equal((await events('system.generate-root')).at(-1)!.reason, 'SEALED');
  });

  test('start and cancel pairs however fast hold one attempt at a time: a start waits until the end of the one before is recorded', async () => {
    // Each attempt holds a claim until its end is recorded: on PostgreSQL a pinned pool connection with the nonce's lock,
    // taken before the start's transaction needs another connection. Unbounded, a burst of anonymous start/cancel pairs
    // pins the whole pool and each start then waits for a connection that never comes free.
    const ledger = createRootGenerationLedger({ db: h.storage.db, dialect, clock: h.clock, audit: h.services.audit });
    let claims = 0;
    let most = 0;
    const counted: typeof ledger = {
      ...ledger,
      async open(nonce, start) {
        most = Math.max(most, ++claims);
        let held = true;
        const let_go = () => {
          if (held) claims--;
          held = false;
        };
        try {
          const claim = await ledger.open(nonce, start);
          return { release: () => (let_go(), claim.release()) };
        } catch (err) {
          let_go();
          throw err;
        }
      },
    };
    // Its seal config at once (no query): every start of the burst reaches its claim in the same turn.
    const config = await createSystemMetaRepository(h.storage.db).getSealConfig();
    const generation = createRootGeneration({
      db: h.storage.db, clock: h.clock, tokens: h.services.tokens, meta: { getSealConfig: async () => config }, seal: h.services.seal, audit: h.services.audit, ledger: counted,
    });
    const since = (await h.storage.db.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
    const outcomes: Array<Promise<string>> = [];
    for (let i = 0; i < 6; i++) {
      outcomes.push(generation.start(source).then((s) => s.nonce, (err: KeyholdError) => err.code));
      for (let k = 0; k < 20 && !(await generation.status()).started; k++);
      outcomes.push(generation.cancel(source).then(String, (err: KeyholdError) => err.code));
    }
    const answers = await Promise.all(outcomes);
    await generation.cancel(source);
    await generation.sweep();
    assert.equal(most, 1, `claims held at once: ${most} (${answers.join(', ')})`);
    // No start waited for a pool connection in vain (DATABASE_TIMEOUT); each recorded ends once, with its cancel.
    assert.deepEqual(answers.filter((a) => !/^[0-9a-f-]{36}$/.test(a) && !['true', 'false', 'GENERATE_ROOT_IN_PROGRESS', 'GENERATE_ROOT_NOT_STARTED'].includes(a)), []);
    const starts = (await events('system.generate-root-start')).filter((e) => e.seq > since);
    assert.ok(starts.length >= 1);
    for (const e of starts) assert.deepEqual(await trailOf(JSON.parse(e.context).nonce), ['system.generate-root-cancel anonymous/unknown:allowed:']);
    assert.deepEqual(await openAttempts(), []);
  });

  test('while the end of an attempt is owed to the trail no other starts: a log that fails now and then cannot pile up open attempts', async () => {
    const generation = h.services.rootGeneration;
    const appendInTx = h.services.audit.appendInTx;
    // The log takes the starts and fails each cancel: each cancelled attempt's end is owed (and its claim held).
    h.services.audit.appendInTx = async (trx, inputs) => {
      if (inputs.some((e) => e.action === 'system.generate-root-cancel')) throw new KeyholdError('AUDIT_UNAVAILABLE', 'the audit log cannot record this action, so it was refused');
      return appendInTx(trx, inputs);
    };
    const answers: string[] = [];
    try {
      for (let i = 0; i < 3; i++) {
        answers.push(await generation.start(source).then((s) => s.nonce, (err: KeyholdError) => err.code));
        await generation.cancel(source).catch(() => {});
      }
    } finally {
      h.services.audit.appendInTx = appendInTx;
    }
    const [first, ...rest] = answers;
    assert.deepEqual(rest, ['AUDIT_UNAVAILABLE', 'AUDIT_UNAVAILABLE']);
    assert.deepEqual(await openAttempts(), [first]);
    // The log takes events again: the next start records the owed cancel first, then starts.
    const next = await generation.start(source);
    assert.deepEqual(await trailOf(first!), ['system.generate-root-cancel anonymous/unknown:allowed:']);
    assert.deepEqual(await openAttempts(), [next.nonce]);
    assert.equal(await generation.cancel(source), true);
    assert.deepEqual(await openAttempts(), []);
  });

  test('only root lists root tokens; the list never holds a token', async () => {
    assert.equal((await call('GET', '/v1/sys/root-tokens')).status, 401);
    const res = await call('GET', '/v1/sys/root-tokens', undefined, h.rootToken);
    for (const item of res.body.items) assert.deepEqual(Object.keys(item).sort(), ['createdAt', 'current', 'id', 'revokedAt']);
  });
});
