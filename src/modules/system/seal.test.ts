import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { sql } from 'kysely';
import { parseShare } from '../../crypto/root/shamir/index.ts';
import { rejects } from '../../../test/helpers/rejects.ts';

describeEachDialect('seal and unseal', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'SEALED_KEY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'SEALED_KEY', 'production', { value: 'behind-the-seal' });
  });
  after(() => h.close());

  test('init runs once', async () => {
    await rejects(h.services.system.initialize({ type: 'shamir', shares: 3, threshold: 2 }), 'ALREADY_INITIALIZED');
  });

  test('a sealed server refuses every secret operation with SEALED and reports progress', async () => {
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    await rejects(h.services.values.read(h.ctx, 'SEALED_KEY', 'production'), 'SEALED');
    await rejects(h.services.values.write(h.ctx, 'SEALED_KEY', 'production', { value: 'x' }), 'SEALED');
    await rejects(h.services.tenants.create('while-sealed'), 'SEALED');
    await rejects(h.services.keys.rotate(h.ctx), 'SEALED');
    const status = await h.services.system.status();
    assert.deepEqual([status.sealed, status.threshold, status.progress], [true, 2, 0]);
  });

  test('a tampered share is refused when given and does not count; the progress of the others stays', async () => {
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    const share = parseShare(h.shares[1]!);
    share[4]! ^= 0x01;
    const tampered = 'khs1.' + share.toString('base64url');
    const mid = await h.services.system.unseal(h.shares[0]!);
    assert.equal(mid.progress, 1);
    await rejects(h.services.system.unseal(tampered), 'INVALID_SHARE');
    const status = await h.services.system.status();
    assert.deepEqual([status.sealed, status.progress], [true, 1]);
  });

  test('a share from another server is refused when given and does not count', async () => {
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    const other = await createHarness('sqlite');
    try {
      await h.services.system.unseal(h.shares[0]!);
      await rejects(h.services.system.unseal(other.shares[1]!), 'INVALID_SHARE');
      assert.equal((await h.services.system.status()).progress, 1);
    } finally {
      await other.close();
    }
  });

  test('the same share twice does not count twice; junk is refused before it counts', async () => {
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    await h.services.system.unseal(h.shares[2]!);
    await rejects(h.services.system.unseal(h.shares[2]!), 'INVALID_SHARE');
    await rejects(h.services.system.unseal('not-a-share'), 'INVALID_SHARE');
    assert.equal((await h.services.system.status()).progress, 1);
  });

  test('the completing share opens the server only once its unseal event is durable', async () => {
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    await h.services.system.unseal(h.shares[0]!);
    const record = h.services.audit.record;
    const seen: Array<[string, boolean]> = [];
    h.services.audit.record = async (inputs) => {
      seen.push(['before the event is written', h.services.seal.isSealed()]);
      await record(inputs);
      seen.push(['event durable, unseal not yet answered', h.services.seal.isSealed()]);
      // A request arriving now is still refused.
      await rejects(h.services.values.read(h.ctx, 'SEALED_KEY', 'production'), 'SEALED');
    };
    try {
      const status = await h.services.system.unseal(h.shares[1]!);
      assert.equal(status.sealed, false);
    } finally {
      h.services.audit.record = record;
    }
    assert.deepEqual(seen, [['before the event is written', true], ['event durable, unseal not yet answered', true]]);
    assert.equal(h.services.seal.isSealed(), false);
    assert.equal((await h.services.values.read(h.ctx, 'SEALED_KEY', 'production')).value, 'behind-the-seal');
  });

  test('a seal while the unseal event is being written wins: the server stays sealed', async () => {
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    await h.services.system.unseal(h.shares[0]!);
    const record = h.services.audit.record;
    h.services.audit.record = async (inputs) => {
      h.services.audit.record = record;
      await record(inputs);
      await h.services.system.seal({ type: 'root', id: 'test-root' });
    };
    try {
      const status = await h.services.system.unseal(h.shares[2]!);
      assert.equal(status.sealed, true, 'the answer is the state the server is in');
    } finally {
      h.services.audit.record = record;
    }
    assert.equal(h.services.seal.isSealed(), true);
    await rejects(h.services.values.read(h.ctx, 'SEALED_KEY', 'production'), 'SEALED');
    await h.services.system.unseal(h.shares[0]!);
    assert.equal((await h.services.system.unseal(h.shares[1]!)).sealed, false);
  });

  test("a stranger's call while the completing share's event is being written does not open the server early", async () => {
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    await h.services.system.unseal(h.shares[0]!);
    const record = h.services.audit.record;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let first = true;
    h.services.audit.record = async (inputs) => {
      if (first) {
        first = false;
        await gate; // the completing share's event, not yet durable
      }
      return record(inputs);
    };
    try {
      const completing = h.services.system.unseal(h.shares[1]!);
      await new Promise((resolve) => setImmediate(resolve));
      const stranger = await h.services.system.unseal('junk');
      assert.equal(stranger.sealed, true);
      assert.equal(h.services.seal.isSealed(), true, 'still sealed: the unseal event is not durable yet');
      await rejects(h.services.values.read(h.ctx, 'SEALED_KEY', 'production'), 'SEALED');
      release();
      assert.equal((await completing).sealed, false);
    } finally {
      release();
      h.services.audit.record = record;
    }
    assert.equal(h.services.seal.isSealed(), false);
  });

  test('any threshold of valid shares unseals, and values decrypt again', async () => {
    const status = await h.services.system.unseal(h.shares[0]!);
    assert.equal(status.sealed, false);
    assert.equal((await h.services.values.read(h.ctx, 'SEALED_KEY', 'production')).value, 'behind-the-seal');
  });

  test("anyone's call to an unsealed server changes nothing, and its event says so: it cannot pass for the unseal", async () => {
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    await h.services.system.unseal(h.shares[0]!);
    await h.services.system.unseal(h.shares[1]!);
    const opened = (await events('system.unseal')).at(-1)!;
    assert.equal((await h.services.system.unseal('junk')).sealed, false);
    const noop = (await events('system.unseal')).at(-1)!;
    assert.notEqual(noop.seq, opened.seq);
    assert.deepEqual(JSON.parse(opened.context), { progress: '0', sealed: 'false' });
    assert.deepEqual(JSON.parse(noop.context), { progress: '0', sealed: 'false', counted: 'false' });
  });

  /** Runs `body` with the audit table gone, as the audit suite breaks it; restores it whatever happens. */
  async function withAuditBroken(body: () => Promise<void>): Promise<void> {
    await sql`alter table audit_events rename to audit_events_gone`.execute(h.storage.db);
    try {
      await body();
    } finally {
      await sql`alter table audit_events_gone rename to audit_events`.execute(h.storage.db);
    }
  }
  const events = (action: string) => h.storage.db.selectFrom('audit_events').selectAll().where('action', '=', action).orderBy('seq').execute();

  test('with the audit log broken, seal still seals, answers AUDIT_UNAVAILABLE saying so, and logs an error', async () => {
    assert.equal((await h.services.system.status()).sealed, false);
    const sealsBefore = (await events('system.seal')).length;
    await withAuditBroken(async () => {
      const res = await h.app.inject({ method: 'POST', url: '/v1/sys/seal', headers: { authorization: `Bearer ${h.rootToken}` } });
      assert.deepEqual([res.statusCode, res.json().error.code], [503, 'AUDIT_UNAVAILABLE']);
      assert.match(res.json().error.message, /the server is sealed/);
      assert.equal(h.services.seal.isSealed(), true, 'sealed although the event was refused');
      await rejects(h.services.values.read(h.ctx, 'SEALED_KEY', 'production'), 'SEALED');
    });
    assert.match(h.logs.text(), /"level":50[^\n]*sealed, but the seal event could not be recorded/);
    assert.equal((await events('system.seal')).length, sealsBefore, 'no event was half written');
  });

  test('with the audit log broken, the share that would unseal is refused and the server stays sealed', async () => {
    const unsealsBefore = (await events('system.unseal')).length;
    assert.equal((await h.services.system.unseal(h.shares[0]!)).progress, 1);
    await withAuditBroken(async () => {
      await rejects(h.services.system.unseal(h.shares[1]!), 'AUDIT_UNAVAILABLE');
      const status = await h.services.system.status();
      assert.deepEqual([status.sealed, status.progress, h.services.seal.isSealed()], [true, 0, true], 'no root key, no progress left behind');
      await rejects(h.services.system.unseal(h.shares[2]!), 'AUDIT_UNAVAILABLE');
      assert.equal((await h.services.system.status()).progress, 0, 'an unrecorded share does not count');
    });
    assert.equal((await events('system.unseal')).length, unsealsBefore + 1, 'only the recorded share left an event');
    await h.services.system.unseal(h.shares[1]!);
    assert.equal((await h.services.system.unseal(h.shares[2]!)).sealed, false);
    assert.equal((await h.services.values.read(h.ctx, 'SEALED_KEY', 'production')).value, 'behind-the-seal');
    assert.deepEqual((await events('system.unseal')).at(-1)!.context.includes('"sealed":"false"'), true);
  });

  test('only root seals: a tenant admin\'s token on POST /v1/sys/seal is FORBIDDEN and the server stays unsealed', async () => {
    assert.equal(h.services.seal.isSealed(), false);
    const admin = await h.services.machines.create(h.ctx, { name: 'would-be-sealer', kind: 'client_secret' });
    await h.services.grants.create(h.ctx, { principalType: 'machine', principalId: admin.id, role: 'tenant-admin' });
    const { token } = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: admin.id, name: 'would-be-sealer', ttlMs: 60_000 });
    const res = await h.app.inject({ method: 'POST', url: '/v1/sys/seal', headers: { authorization: `Bearer ${token}` } });
    assert.deepEqual([res.statusCode, res.json().error?.code], [403, 'FORBIDDEN']);
    assert.equal(h.services.seal.isSealed(), false, 'still unsealed');
    assert.equal((await h.services.values.read(h.ctx, 'SEALED_KEY', 'production')).value, 'behind-the-seal');
  });
});
