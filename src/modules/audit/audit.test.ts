import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { userContext } from '../../../test/helpers/identities.ts';
import { dropAuditGuards, rewriteChain } from '../../../test/helpers/audit-tampering.ts';
import { auditFrom, type AuditHealth } from './audit-log.ts';
import { deriveSigningKey, publicKeyText } from './checkpoints.ts';
import { createAuditQueryService } from './query-service.ts';
import { VERIFY_MAX_AGE_MS } from './verify-gate.ts';
import { toKeyObject } from '../../crypto/aead.ts';
import { randomKey } from '../../crypto/bytes.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';

const VALUE = 'audit-canary-7f3a9c21';

describeEachDialect('audit log: chained, append-only, fail-closed, never holding a value', (dialect) => {
  let h: Harness;
  before(async () => {
    h = await createHarness(dialect);
    await h.services.secrets.create(h.ctx, { name: 'AUDITED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'AUDITED', 'production', { value: VALUE, reason: 'initial load' });
    await h.services.values.write(h.ctx, 'AUDITED', 'production', { value: `${VALUE}-2` });
    await h.services.values.read(h.ctx, 'AUDITED', 'production');
    await h.services.values.rollback(h.ctx, 'AUDITED', 'production');
  });
  after(() => h.close());

  const events = () => h.storage.db.selectFrom('audit_events').selectAll().orderBy('seq').execute();
  const dropGuards = () => dropAuditGuards(h.storage.db, dialect);

  test('writes, reads, rollbacks and denials are events with actor, resource, environment, version and outcome', async () => {
    const ann = await userContext(h, h.ctx.tenantId, 'ann');
    assert.equal(await codeOf(h.services.values.read(ann.ctx(), 'AUDITED', 'production')), 'SECRET_NOT_FOUND');
    const all = await events();
    assert.deepEqual(all.map((e) => [e.action, e.outcome, e.secret_version]), [
      ['tenant.create', 'allowed', null], ['system.init', 'allowed', null], ['system.unseal', 'allowed', null], ['system.unseal', 'allowed', null],
      ['secret.create', 'allowed', null], ['secret.write', 'allowed', 1], ['secret.write', 'allowed', 2],
      ['secret.reveal', 'allowed', 2], ['secret.rollback', 'allowed', 1], ['authz.reveal', 'denied', null],
    ]);
    assert.deepEqual(all.slice(2, 4).map((e) => JSON.parse(e.context).sealed), ['true', 'false'], 'unseal progress, never the share');
    const denied = all[9]!;
    assert.deepEqual([denied.actor_type, denied.actor_id, denied.reason, denied.environment, denied.resource_name], ['user', ann.id, 'FORBIDDEN', 'production', 'AUDITED']);
    assert.equal(JSON.parse(all[5]!.context).reason, 'initial load');
    assert.equal(JSON.parse(all[5]!.context).requestId, 'test');
  });

  test('no event holds a value, a share or a token, in any column or encoding', async () => {
    const text = JSON.stringify(await events());
    for (const form of [VALUE, Buffer.from(VALUE).toString('base64'), Buffer.from(VALUE).toString('hex')]) assert.equal(text.includes(form), false, form);
    for (const share of h.shares) assert.equal(text.includes(share.slice(5, 30)), false, 'an unseal share');
    assert.equal(text.includes(h.rootToken.slice(3, 30)), false, 'the root token');
  });

  test('concurrent reads are group-committed: every read has its event and the chain stays whole', async () => {
    const before = (await events()).length;
    await Promise.all(Array.from({ length: 40 }, () => h.services.values.read(h.ctx, 'AUDITED', 'production')));
    assert.equal((await events()).length, before + 40);
    const verified = await h.services.audit.verify();
    assert.equal(verified.ok, true, JSON.stringify(verified));
  });

  test('a verify walk that events are appended during is not reported as broken', async () => {
    const key = h.services.checkpoints.publicKey();
    const floor = () => h.services.checkpoints.highestSigned();
    // Small pages, so the walk crosses many awaits while reads keep landing.
    for (let round = 0; round < 5; round++) {
      const reads = Promise.all(Array.from({ length: 20 }, () => h.services.values.read(h.ctx, 'AUDITED', 'production')));
      const verified = await h.services.audit.verify({ trustedPublicKey: key, checkpointFloor: floor(), macKey: h.services.macKeys.current()!.key, batch: 2 });
      await reads;
      assert.equal(verified.ok, true, JSON.stringify(verified));
    }
  });

  // On SQLite, read events are committed by a second connection: a transaction that reads before it
  // writes (a rollback reads the labels first) must wait for that connection, never fail on it.
  test('reads audited while writes and rollbacks run (transactions that read before writing) all succeed, chain whole', async () => {
    await h.services.secrets.create(h.ctx, { name: 'RACED', owner: 'ops' });
    await h.services.values.write(h.ctx, 'RACED', 'production', { value: `${VALUE}-raced-1` });
    const before = (await events()).length;
    let done = false;
    let reads = 0;
    const reader = async () => {
      while (!done) {
        await h.services.values.read(h.ctx, 'AUDITED', 'production');
        reads++;
      }
    };
    const rounds = 30;
    const changes = (async () => {
      try {
        for (let i = 0; i < rounds; i++) {
          await h.services.values.write(h.ctx, 'RACED', 'production', { value: `${VALUE}-raced-${i + 2}` });
          await h.services.values.rollback(h.ctx, 'RACED', 'production');
        }
      } finally {
        done = true;
      }
    })();
    const outcomes = await Promise.allSettled([...Array.from({ length: 16 }, reader), changes]);
    assert.deepEqual(outcomes.filter((o) => o.status === 'rejected'), []);
    assert.equal((await events()).length, before + reads + rounds * 2);
    const verified = await h.services.audit.verify();
    assert.equal(verified.ok, true, JSON.stringify(verified));
  });

  test('a transaction that reads, then writes after an audit batch was committed meanwhile, still commits', async () => {
    const recorded = await h.storage.db.transaction().execute(async (trx) => {
      await trx.selectFrom('tenants').select('id').where('id', '=', h.ctx.tenantId).execute();
      // A read's event, committed (on SQLite by the appender's own connection) while this transaction is open.
      const event = h.services.audit.record([{ ...auditFrom(h.ctx), action: 'secret.reveal', resource: { type: 'secret', id: null, name: 'X' }, outcome: 'allowed' }]);
      await new Promise((resolve) => setTimeout(resolve, 100));
      await trx.updateTable('tenants').set((eb) => ({ name: eb.ref('name') })).where('id', '=', h.ctx.tenantId).execute();
      return { event }; // not the promise itself: the transaction would wait for it
    });
    await recorded.event;
    assert.equal((await h.services.audit.verify()).ok, true);
  });

  test('the database itself refuses to update or delete audit events', async () => {
    await assert.rejects(sql`update audit_events set outcome = 'denied' where seq = 1`.execute(h.storage.db), /append-only/);
    await assert.rejects(sql`delete from audit_events where seq = 1`.execute(h.storage.db), /append-only/);
    assert.equal((await h.services.audit.verify()).ok, true);
  });

  test('with the audit table unwritable, reads and writes fail closed, nothing is written, and the operator is told once', async () => {
    const changes: AuditHealth[] = [];
    h.services.audit.onHealthChange((health) => changes.push(health));
    assert.equal((await h.services.system.status()).auditWritable, true);
    await sql`alter table audit_events rename to audit_events_gone`.execute(h.storage.db);
    try {
      h.clock.advance(5_000); // past the sealed-row cache: the read goes the whole way
      assert.equal(await codeOf(h.services.values.read(h.ctx, 'AUDITED', 'production')), 'AUDIT_UNAVAILABLE');
      assert.equal(await codeOf(h.services.values.write(h.ctx, 'AUDITED', 'production', { value: 'unaudited' })), 'AUDIT_UNAVAILABLE');
      const status = await h.services.system.status();
      assert.equal(status.auditWritable, false, 'the status endpoint says so');
      assert.deepEqual(changes.map((c) => c.writable), [false], 'two refusals, one announcement');
      assert.match((changes[0] as { cause: string }).cause, /audit_events/);
    } finally {
      await sql`alter table audit_events_gone rename to audit_events`.execute(h.storage.db);
    }
    const history = await h.services.values.history(h.ctx, 'AUDITED', 'production');
    assert.equal(history.length, 2, 'the unaudited write left no version behind');
    await h.services.values.read(h.ctx, 'AUDITED', 'production');
    assert.deepEqual(changes.map((c) => c.writable), [false, true], 'the next event that lands announces the recovery');
    assert.equal((await h.services.system.status()).auditWritable, true);
  });

  // Tampering needs the guards gone, as an attacker with the database owner's rights would have them.
  test('verify names the first altered, removed, inserted or reordered event, and a cut tail', async () => {
    await dropGuards();
    const all = await events();
    const target = all[2]!;
    const restore = async () => {
      await sql`delete from audit_events`.execute(h.storage.db);
      await h.storage.db.insertInto('audit_events').values(all).execute();
    };

    await sql`update audit_events set outcome = 'denied' where seq = ${target.seq}`.execute(h.storage.db);
    let r = await h.services.audit.verify();
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.firstBadSeq, target.seq);
    assert.match(!r.ok ? r.problem : '', /altered/);
    await restore();

    await sql`delete from audit_events where seq = ${target.seq}`.execute(h.storage.db);
    r = await h.services.audit.verify();
    assert.equal(!r.ok && r.firstBadSeq, target.seq + 1);
    await restore();

    await sql`update audit_events set seq = seq + 1000000 where seq = ${all[1]!.seq}`.execute(h.storage.db);
    await sql`update audit_events set seq = ${all[1]!.seq} where seq = ${all[3]!.seq}`.execute(h.storage.db);
    await sql`update audit_events set seq = ${all[3]!.seq} where seq = ${all[1]!.seq + 1000000}`.execute(h.storage.db);
    r = await h.services.audit.verify();
    assert.equal(!r.ok && r.firstBadSeq, all[1]!.seq, 'swapped events');
    await restore();

    // An event slipped in after the third: everything after it moves up one, as an insertion would.
    const at = all[2]!.seq + 1;
    await sql`update audit_events set seq = seq + 1000000 where seq >= ${at}`.execute(h.storage.db);
    await sql`update audit_events set seq = seq - 999999 where seq >= 1000000`.execute(h.storage.db);
    await h.storage.db.insertInto('audit_events').values({ ...all[1]!, seq: at, id: 'forged' }).execute();
    r = await h.services.audit.verify();
    assert.equal(!r.ok && r.firstBadSeq, at, 'an inserted event is named');
    assert.match(!r.ok ? r.problem : '', /does not link/);
    await restore();

    await sql`delete from audit_events where seq > ${all[all.length - 3]!.seq}`.execute(h.storage.db);
    r = await h.services.audit.verify();
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.problem : '', /removed from the end/);
    await restore();
    assert.equal((await h.services.audit.verify()).ok, true);
  });

  test("auditors' verify calls share one walk, and an edit in place under a kept answer is reported once the bound has passed", async () => {
    // (runs after the tamper test: the guards are already dropped, as a database owner could)
    let walks = 0;
    const log = { verify: (opts: { trustedPublicKey: string | null }) => (walks++, h.services.audit.verify(opts)), fingerprint: () => h.services.audit.fingerprint(), record: h.services.audit.record };
    const queries = createAuditQueryService({ db: h.storage.db, authz: h.services.authz, log, usage: h.services.auditUsage, clock: h.clock, identifiers: h.services.identifiers });
    const other = await h.services.tenants.create('verify-other');
    const auditors = [await userContext(h, h.ctx.tenantId, 'verify-a'), await userContext(h, other.id, 'verify-b')];
    await h.services.grants.create(h.ctx, { principalType: 'user', principalId: auditors[0]!.id, role: 'auditor' });
    await h.services.grants.create(h.contextFor(other.id), { principalType: 'user', principalId: auditors[1]!.id, role: 'auditor' });

    const answers = await Promise.all(Array.from({ length: 20 }, (_, i) => queries.verify(auditors[i % 2]!.ctx())));
    assert.equal(walks, 1, 'twenty calls from two tenants, one walk');
    assert.ok(answers.every((a) => a.ok && JSON.stringify(a) === JSON.stringify(answers[0])), JSON.stringify(answers[0]));

    const target = (await events())[3]!;
    await sql`update audit_events set outcome = 'denied' where seq = ${target.seq}`.execute(h.storage.db);
    try {
      h.clock.advance(VERIFY_MAX_AGE_MS - 1);
      assert.equal((await queries.verify(auditors[0]!.ctx())).ok, true, 'inside the bound the kept answer stands: the head did not move');
      assert.equal(walks, 1);
      h.clock.advance(1);
      const r = await queries.verify(auditors[1]!.ctx());
      assert.deepEqual([r.ok, r.firstBadSeq, walks], [false, target.seq, 2], 'reported once the bound has passed');
    } finally {
      await sql`update audit_events set outcome = ${target.outcome} where seq = ${target.seq}`.execute(h.storage.db);
    }
    await h.services.values.read(h.ctx, 'AUDITED', 'production');
    const r = await queries.verify(auditors[0]!.ctx());
    assert.deepEqual([r.ok, r.headSeq, walks], [true, (await events()).length, 3], 'an append moves the head: walked again at once');
  });

  test('signed checkpoints catch what a rewritten chain hides: a re-hashed history, a cut tail, a forged checkpoint', async () => {
    // (runs after the tamper test: the guards are already dropped, as a database owner could)
    const key = h.services.checkpoints.publicKey();
    assert.ok(await h.services.checkpoints.checkpoint());
    assert.equal((await h.services.audit.verify({ trustedPublicKey: key })).ok, true);
    const original = await events();

    // Alter event 2 and recompute every hash after it and the head: the chain alone looks whole.
    const rehash = (rows: typeof original) => rewriteChain(h.storage.db, rows);
    await rehash(original.map((r) => (r.seq === 2 ? { ...r, outcome: 'denied' } : r)));
    let r = await h.services.audit.verify({ trustedPublicKey: key });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.problem : '', /does not match the signed checkpoint/);

    // Cut the tail and rewrite the head to match: the last checkpoint still covers the missing events.
    await rehash(original.slice(0, original.length - 2));
    r = await h.services.audit.verify({ trustedPublicKey: key });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.problem : '', /signed checkpoint covers/);
    await rehash(original);
    assert.equal((await h.services.audit.verify({ trustedPublicKey: key })).ok, true);

    // A checkpoint signed by any other key (an attacker's) is refused against the pinned key.
    const other = deriveSigningKey(toKeyObject(randomKey()));
    const cp = await h.storage.db.selectFrom('audit_checkpoints').selectAll().orderBy('seq', 'desc').executeTakeFirstOrThrow();
    await dropGuards();
    await sql`delete from audit_checkpoints where seq = ${cp.seq}`.execute(h.storage.db);
    await h.storage.db.insertInto('audit_checkpoints').values({ ...cp, public_key: publicKeyText(other.publicKey) }).execute();
    r = await h.services.audit.verify({ trustedPublicKey: key });
    assert.equal(r.ok, false);
    assert.match(!r.ok ? r.problem : '', /not signed by the trusted audit key/);
  });
});
