import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql, type Kysely } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createUnmigratedDatabase } from '../../../test/helpers/databases.ts';
import { dropAuditGuards } from '../../../test/helpers/audit-tampering.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { KeyholdError } from '../../errors/index.ts';
import type { AuditEventsTable, Database } from '../../storage/schema.ts';
import { createAuditLog, fromRow } from './audit-log.ts';
import { chainHash, createChainVerifier, GENESIS_HASH } from './chain.ts';
import { commitMac, createEventMacKeys, createMacWalk } from './event-mac.ts';
import { toKeyObject } from '../../crypto/aead.ts';
import { randomKey } from '../../crypto/bytes.ts';

/**
 * Appends by someone who holds the server's database credentials but not the root key: with the
 * rights the runtime role has (insert an event, move the head) they can write a well-formed event
 * with a correct chain hash. Only its MAC gives it away, and the checkpointer must not sign it.
 */
type Forgery = 'no MAC' | 'a made-up MAC' | 'the MAC of the server\'s last commit';

/** A reveal of PAYMENTS_KEY by root, as a row; `shape` overrides columns. */
function revealRow(seq: number, prevHash: string, shape: Partial<AuditEventsTable> = {}): AuditEventsTable {
  return {
    seq, id: 'forged-event', time: Date.UTC(2026, 5, 1), tenant_id: null, actor_type: 'root', actor_id: 'root',
    action: 'secret.reveal', resource_type: 'secret', resource_id: null, resource_name: 'PAYMENTS_KEY', environment: 'production',
    secret_version: 1, outcome: 'allowed', reason: null, context: '{}', prev_hash: prevHash, hash: '', mac: null, ...shape,
  };
}

/** An unseal attempt exactly as a sealed server records one (system-service.ts). */
const UNSEAL_SHAPE: Partial<AuditEventsTable> = {
  action: 'system.unseal', actor_type: 'system', actor_id: 'keyhold', resource_type: 'system', resource_name: null,
  environment: null, secret_version: null, outcome: 'denied', reason: 'UNSEAL_FAILED', context: '{"reason":"UNSEAL_FAILED"}',
};

/** Appends `row` after the head, as the runtime role could: the hash over `hashedAs` (default: the row itself), the head moved to it. */
async function appendRow(db: Kysely<Database>, make: (seq: number, prevHash: string) => AuditEventsTable, hashedAs?: AuditEventsTable): Promise<number> {
  const head = await db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirstOrThrow();
  const row = make(head.seq + 1, head.hash);
  row.hash = chainHash(head.hash, fromRow(hashedAs ?? row));
  await db.insertInto('audit_events').values(row).execute();
  await db.updateTable('audit_head').set({ seq: row.seq, hash: row.hash }).where('id', '=', 1).execute();
  return row.seq;
}

/** Appends one reveal after the head, as the runtime role could, with the MAC `forgery` says. */
async function forgeAppend(db: Kysely<Database>, forgery: Forgery): Promise<number> {
  const head = await db.selectFrom('audit_head').select(['seq', 'hash']).where('id', '=', 1).executeTakeFirstOrThrow();
  const last = await db.selectFrom('audit_events').select('mac').where('mac', 'is not', null).orderBy('seq', 'desc').limit(1).executeTakeFirstOrThrow();
  const row = revealRow(head.seq + 1, head.hash);
  row.hash = chainHash(head.hash, fromRow(row));
  const foreignKey = toKeyObject(randomKey());
  row.mac = {
    'no MAC': null,
    'a made-up MAC': commitMac(foreignKey, row.seq, row.seq, row.hash),
    'the MAC of the server\'s last commit': last.mac,
  }[forgery];
  await db.insertInto('audit_events').values(row).execute();
  await db.updateTable('audit_head').set({ seq: row.seq, hash: row.hash }).where('id', '=', 1).execute();
  return row.seq;
}

describeEachDialect('event MACs: the log holds only what a server with the root key wrote', (dialect) => {
  let h: Harness;
  let publicKey: string;
  before(async () => {
    h = await createHarness(dialect);
    publicKey = h.services.checkpoints.publicKey();
    await h.services.secrets.create(h.ctx, { name: 'PAYMENTS_KEY', owner: 'ops' });
    await h.services.values.write(h.ctx, 'PAYMENTS_KEY', 'production', { value: 'mac-canary-1' });
  });
  after(() => h.close());

  const db = () => h.storage.db;
  const macKey = () => h.services.macKeys.current()!.key;
  const verify = (withKey = true) => h.services.audit.verify({ trustedPublicKey: publicKey, ...(withKey ? { macKey: macKey() } : {}) });

  /** Removes what a test forged after `seq` (guards dropped, as only the owner could) and puts the head back. */
  async function removeAfter(on: Kysely<Database>, seq: number): Promise<void> {
    await dropAuditGuards(on, dialect);
    await sql`delete from audit_events where seq > ${seq}`.execute(on);
    const last = await on.selectFrom('audit_events').select(['seq', 'hash']).where('seq', '=', seq).executeTakeFirstOrThrow();
    await on.updateTable('audit_head').set({ seq: last.seq, hash: last.hash }).where('id', '=', 1).execute();
  }

  test('the last event of every commit carries the MAC of its range, whether written in a transaction or by group commit', async () => {
    await h.services.values.write(h.ctx, 'PAYMENTS_KEY', 'production', { value: 'mac-canary-2' }); // in the write's transaction
    await Promise.all(Array.from({ length: 10 }, () => h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production'))); // group commit
    const rows = await db().selectFrom('audit_events').selectAll().orderBy('seq').execute();
    const reads = rows.filter((r) => r.action === 'secret.reveal').slice(-10);
    assert.equal(reads.length, 10, 'the reads were recorded');
    // Concurrent reads share commits (on PostgreSQL the first commits alone while the others gather):
    // one MAC per commit, on its last event, covering its range.
    assert.ok(reads.at(-1)!.mac !== null, 'the last read ends a commit');
    const shared = reads.find((r) => r.mac !== null && Number(r.mac.split(':')[0]) < r.seq);
    assert.ok(shared, 'some commit holds more than one read');
    assert.equal(shared.mac, commitMac(macKey(), Number(shared.mac!.split(':')[0]), shared.seq, shared.hash));
    assert.equal(rows.find((r) => r.seq === shared.seq - 1)!.mac, null, 'the event before it is covered by that MAC');
    // The harness unsealed its server with shares: those events were recorded before the key existed.
    assert.deepEqual([...new Set(rows.filter((r) => r.action === 'system.unseal').map((r) => r.mac))], [null]);
    assert.ok(rows.some((r) => r.mac !== null && r.action === 'system.init'), 'init is written with the key it creates');
    const walk = createMacWalk(macKey(), 0);
    assert.deepEqual([...rows.map((r) => walk.push({ ...fromRow(r), mac: r.mac })).filter(Boolean), walk.end()], [null], 'every event is covered');
    const r = await verify();
    assert.equal(r.ok, true, r.ok ? '' : r.problem);
    assert.ok(await h.services.checkpoints.checkpoint(), 'the checkpointer signs the server\'s own events');
  });

  for (const forgery of ['no MAC', 'a made-up MAC', 'the MAC of the server\'s last commit'] as const) {
    test(`a well-formed event appended with the database's rights and ${forgery} is never signed, and verify names it`, async () => {
      // A server of its own: removing the forgery afterwards removes events this server committed, which is itself tampering.
      const own = await createHarness(dialect);
      const odb = own.storage.db;
      try {
        await own.services.secrets.create(own.ctx, { name: 'PAYMENTS_KEY', owner: 'ops' });
        await own.services.values.write(own.ctx, 'PAYMENTS_KEY', 'production', { value: 'mac-canary-3' });
        await own.services.values.read(own.ctx, 'PAYMENTS_KEY', 'production');
        const genuine = (await odb.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
        const forged = await forgeAppend(odb, forgery);
        const signed = async () => (await odb.selectFrom('audit_checkpoints').select('seq').execute()).length;
        const signedBefore = await signed();

        await assert.rejects(own.services.checkpoints.checkpoint(), (err: unknown) => {
          assert.ok(err instanceof KeyholdError);
          assert.equal(err.code, 'AUDIT_TAMPERED');
          assert.match(err.message, new RegExp(`event ${forged} carries (no|a wrong) MAC`));
          return true;
        });
        assert.equal(await signed(), signedBefore, 'no checkpoint was written');
        const status = await own.app.inject({ method: 'GET', url: '/v1/sys/status' });
        assert.equal(status.json().auditTampered, true, 'the status says so');

        const key = own.services.macKeys.current()!.key;
        const ownKey = own.services.checkpoints.publicKey();
        const r = await own.services.audit.verify({ trustedPublicKey: ownKey, macKey: key });
        assert.equal(r.ok, false);
        assert.equal(!r.ok && r.firstBadSeq, forged);
        assert.match(!r.ok ? r.problem : '', /a server holding the root key did not write it/);
        // Without the key (as offline) the chain alone cannot tell: this is the gap the MAC closes.
        assert.equal((await own.services.audit.verify({ trustedPublicKey: ownKey })).ok, true);

        // The server's own events appended after the forgery do not launder it.
        await own.services.values.read(own.ctx, 'PAYMENTS_KEY', 'production');
        await assert.rejects(own.services.checkpoints.checkpoint(), new RegExp(`event ${forged} carries`));
        await removeAfter(odb, genuine);
      } finally {
        await own.close();
      }
    });
  }

  for (const context of ['not json', 'null']) {
    test(`an event whose stored context is rewritten to ${JSON.stringify(context)} is named by verify and by the checkpointer, not a crash`, async () => {
      // Written in the write's transaction, so the checkpointer reads it back.
      await h.services.values.write(h.ctx, 'PAYMENTS_KEY', 'production', { value: 'mac-canary-5' });
      const victim = await db().selectFrom('audit_events').selectAll().where('action', '=', 'secret.write').orderBy('seq', 'desc').limit(1).executeTakeFirstOrThrow();
      await dropAuditGuards(db(), dialect);
      await sql`update audit_events set context = ${context} where seq = ${victim.seq}`.execute(db());
      try {
        await assert.rejects(h.services.checkpoints.checkpoint(), (err: unknown) => {
          assert.ok(err instanceof KeyholdError, String(err));
          assert.equal(err.code, 'AUDIT_TAMPERED');
          assert.match(err.message, new RegExp(`event ${victim.seq} was altered \\(its context is not a JSON object\\)`));
          return true;
        });
        const res = await h.app.inject({ method: 'GET', url: '/v1/audit/verify', headers: { authorization: `Bearer ${h.rootToken}` } });
        assert.equal(res.statusCode, 200, res.body);
        assert.equal(res.json().firstBadSeq, victim.seq);
        assert.match(res.json().problem, /its context is not a JSON object/);
        // The read side shows the row, marked, rather than failing: a page, an export, a sink's feed.
        const [read] = await h.services.audit.readAfter(victim.seq - 1, 1);
        assert.equal(read!.seq, victim.seq);
        assert.match(read!.context.unreadable!, /not a JSON object/);
        const page = await h.app.inject({ method: 'GET', url: `/v1/audit/events?action=secret.write&limit=5`, headers: { authorization: `Bearer ${h.rootToken}` } });
        assert.equal(page.statusCode, 200, page.body);
        const exported = await h.app.inject({ method: 'GET', url: '/v1/audit/export?format=csv', headers: { authorization: `Bearer ${h.rootToken}` } });
        assert.equal(exported.statusCode, 200);
        assert.ok(exported.body.includes('not a JSON object'), 'the export carries the mark');
      } finally {
        await sql`update audit_events set context = ${victim.context} where seq = ${victim.seq}`.execute(db());
      }
      assert.equal((await verify()).ok, true);
      assert.ok(await h.services.checkpoints.checkpoint());
    });
  }

  test('a row inserted past the head, which no commit appended, is named by verify', async () => {
    const own = await createHarness(dialect);
    const odb = own.storage.db;
    try {
      const head = await odb.selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
      // The runtime role may insert a row without moving the head.
      const row = revealRow(head.seq + 1, head.hash);
      row.hash = chainHash(head.hash, fromRow(row));
      await odb.insertInto('audit_events').values(row).execute();
      const r = await own.services.audit.verify({ trustedPublicKey: own.services.checkpoints.publicKey(), macKey: own.services.macKeys.current()!.key });
      assert.equal(!r.ok && r.firstBadSeq, row.seq, JSON.stringify(r));
      assert.match(!r.ok ? r.problem : '', new RegExp(`event ${row.seq} lies past the head \\(event ${head.seq}\\)`));
      await removeAfter(odb, head.seq);
    } finally {
      await own.close();
    }
  });

  test('a row inserted before the first event (seq 0 or below), which the walk from 1 never reaches, is named by verify', async () => {
    const own = await createHarness(dialect);
    const odb = own.storage.db;
    try {
      for (const seq of [0, -5]) await odb.insertInto('audit_events').values(revealRow(seq, '0'.repeat(64))).execute();
      const r = await own.services.audit.verify({ trustedPublicKey: own.services.checkpoints.publicKey(), macKey: own.services.macKeys.current()!.key });
      assert.equal(!r.ok && r.firstBadSeq, -5, JSON.stringify(r));
      assert.match(!r.ok ? r.problem : '', /event -5 lies before the first event/);
      await dropAuditGuards(odb, dialect);
      await sql`delete from audit_events where seq < 1`.execute(odb);
    } finally {
      await own.close();
    }
  });

  test('unseal attempts, recorded with no key, are the only unkeyed events; the seal is MACed with the key it drops', async () => {
    const before = (await db().selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
    await h.services.system.seal({ type: 'root', id: 'test-root' });
    await assert.rejects(h.services.system.unseal('not-a-share'));
    for (const share of h.shares.slice(0, 2)) await h.services.system.unseal(share);
    const sealedTime = await db().selectFrom('audit_events').select(['seq', 'action', 'mac']).where('seq', '>', before).orderBy('seq').execute();
    assert.deepEqual(sealedTime.map((e) => [e.action, e.mac === null]), [['system.seal', false], ['system.unseal', true], ['system.unseal', true], ['system.unseal', true]]);
    assert.equal((await verify()).ok, true);
    assert.ok(await h.services.checkpoints.checkpoint());
  });

  test('an unkeyed event passes only as an unseal attempt in the exact shape the server writes, and only with the content its hash covers', async () => {
    const own = await createHarness(dialect);
    const odb = own.storage.db;
    const ownVerify = () => own.services.audit.verify({ trustedPublicKey: own.services.checkpoints.publicKey(), macKey: own.services.macKeys.current()!.key });
    try {
      const head = (await odb.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
      // The documented limit: an unseal attempt in the server's own shape (anyone can cause one at the endpoint).
      await appendRow(odb, (seq, prev) => revealRow(seq, prev, UNSEAL_SHAPE));
      assert.equal((await ownVerify()).ok, true);
      assert.ok(await own.services.checkpoints.checkpoint());
      // The same action with another actor, tenant or resource is not one the server writes unkeyed.
      for (const shape of [{ actor_type: 'root', actor_id: 'root' }, { tenant_id: own.ctx.tenantId }, { resource_type: 'secret' }]) {
        const at = (await odb.selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
        const forged = await appendRow(odb, (seq, prev) => revealRow(seq, prev, { ...UNSEAL_SHAPE, ...shape }));
        await assert.rejects(own.services.checkpoints.checkpoint(), new RegExp(`event ${forged} carries no MAC`), JSON.stringify(shape));
        assert.equal((await ownVerify()).ok, false);
        await removeAfter(odb, at);
      }
      // A row that says "unseal attempt" but whose hash covers a reveal: never signed, whatever its columns say.
      const at = (await odb.selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow());
      const disguised = await appendRow(odb, (seq, prev) => revealRow(seq, prev, UNSEAL_SHAPE), revealRow(at.seq + 1, at.hash));
      await assert.rejects(own.services.checkpoints.checkpoint(), new RegExp(`event ${disguised} was altered`));
      await removeAfter(odb, head);
    } finally {
      await own.close();
    }
  });

  test('an unkeyed unseal attempt rewritten after the server committed on top of it is never signed: the commit followed another hash', async () => {
    const own = await createHarness(dialect);
    const odb = own.storage.db;
    try {
      await own.services.secrets.create(own.ctx, { name: 'PAYMENTS_KEY', owner: 'ops' });
      await own.services.values.write(own.ctx, 'PAYMENTS_KEY', 'production', { value: 'mac-canary-6' });
      assert.ok(await own.services.checkpoints.checkpoint());
      // An unseal attempt as another node records one while sealed, then this server's own group commit after it.
      const attempt = await appendRow(odb, (seq, prev) => revealRow(seq, prev, UNSEAL_SHAPE));
      await own.services.values.read(own.ctx, 'PAYMENTS_KEY', 'production');
      // Rewritten in place (guards dropped, as only the owner could), still in the shape and hashing to its content.
      const row = await odb.selectFrom('audit_events').selectAll().where('seq', '=', attempt).executeTakeFirstOrThrow();
      const rewritten = { ...row, context: '{"reason":"UNSEAL_FAILED","sourceIp":"198.51.100.7"}' };
      rewritten.hash = chainHash(row.prev_hash, fromRow(rewritten));
      await dropAuditGuards(odb, dialect);
      await sql`update audit_events set context = ${rewritten.context}, hash = ${rewritten.hash} where seq = ${attempt}`.execute(odb);
      const signed = (await odb.selectFrom('audit_checkpoints').select('seq').execute()).length;
      await assert.rejects(own.services.checkpoints.checkpoint(), (err: unknown) => {
        assert.ok(err instanceof KeyholdError, String(err));
        assert.equal(err.code, 'AUDIT_TAMPERED');
        assert.match(err.message, new RegExp(`event ${attempt} is not the one this server's commit`));
        return true;
      });
      assert.equal((await odb.selectFrom('audit_checkpoints').select('seq').execute()).length, signed, 'no checkpoint was written');
    } finally {
      await own.close();
    }
  });

  test('an event recorded just before a seal is written with the key it was recorded under; after the seal, actions are refused, not written unkeyed', async () => {
    const before = (await db().selectFrom('audit_head').select('seq').executeTakeFirstOrThrow()).seq;
    const reveal = { tenantId: h.ctx.tenantId, actor: { type: 'root' as const, id: 'test-root' }, action: 'secret.reveal', resource: { type: 'secret', id: null, name: 'PAYMENTS_KEY' }, outcome: 'allowed' as const };
    const recorded = h.services.audit.record([reveal]);
    const sealed = h.services.system.seal({ type: 'root', id: 'test-root' });
    await recorded;
    await sealed;
    // Sealed: the group commit and a write's transaction both refuse rather than write an event without a MAC.
    await assert.rejects(h.services.audit.record([reveal]), /SEALED|sealed/);
    await assert.rejects(db().transaction().execute((trx) => h.services.audit.appendInTx(trx, [reveal])), /sealed/);
    assert.equal(h.services.audit.health().writable, true, 'a sealed refusal is not an audit failure');
    for (const share of h.shares.slice(0, 2)) await h.services.system.unseal(share);
    const rows = await db().selectFrom('audit_events').select(['seq', 'action', 'mac']).where('seq', '>', before).orderBy('seq').execute();
    // Recorded in one turn under one key: one commit, whose MAC (on the seal event) covers the reveal too.
    assert.deepEqual(rows.map((r) => [r.action, r.mac === null]), [['secret.reveal', true], ['system.seal', false], ['system.unseal', true], ['system.unseal', true]]);
    assert.equal(rows[1]!.mac!.split(':')[0], String(rows[0]!.seq));
    assert.equal((await verify()).ok, true);
    assert.ok(await h.services.checkpoints.checkpoint());
  });

  test('a checkpoint row forged as the starting point, or a head moved by hand, stops signing', async () => {
    await h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production');
    assert.ok(await h.services.checkpoints.checkpoint());
    const start = (await db().selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow());

    // The head row is the runtime role's to move: pointing it at another hash is caught before signing.
    await h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production');
    const head = await db().selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
    await db().updateTable('audit_head').set({ hash: 'f'.repeat(64) }).where('id', '=', 1).execute();
    await assert.rejects(h.services.checkpoints.checkpoint(), /AUDIT_TAMPERED|with another hash/);
    await db().updateTable('audit_head').set({ hash: head.hash }).where('id', '=', 1).execute();

    // A checkpoint row is the runtime role's to insert: an unsigned one must not become the proof's start.
    await db().insertInto('audit_checkpoints').values({ seq: head.seq, hash: head.hash, time: 1, signature: 'AAAA', public_key: publicKey, prev_seq: start.seq }).execute();
    await h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production');
    await assert.rejects(h.services.checkpoints.checkpoint(), /is not signed by this server's audit key/);
    await dropAuditGuards(db(), dialect);
    await sql`delete from audit_checkpoints where seq = ${head.seq}`.execute(db());
    assert.equal((await h.services.system.status()).auditTampered, true);
    assert.ok(await h.services.checkpoints.checkpoint(), 'signs again once the forged row is gone');
    assert.equal((await h.services.system.status()).auditTampered, false, 'and the status clears');
  });

  test('a checkpoint row forged past the head, or the head moved back behind a signed checkpoint, stops signing loudly, not silently', async () => {
    await h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production');
    assert.ok(await h.services.checkpoints.checkpoint());
    const head = await db().selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
    const tampered = async (problem: RegExp) => {
      await assert.rejects(h.services.checkpoints.checkpoint(), (err: unknown) => {
        assert.ok(err instanceof KeyholdError && err.code === 'AUDIT_TAMPERED', String(err));
        assert.match(err.message, problem);
        return true;
      });
      assert.equal((await h.services.system.status()).auditTampered, true);
    };

    // An unsigned row far ahead of the head would otherwise look like "nothing new to sign" forever.
    const far = head.seq + 1_000_000;
    await db().insertInto('audit_checkpoints').values({ seq: far, hash: head.hash, time: 1, signature: 'AAAA', public_key: publicKey, prev_seq: 0 }).execute();
    await h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production');
    await tampered(new RegExp(`checkpoint at ${far} is not signed by this server's audit key`));
    await dropAuditGuards(db(), dialect);
    await sql`delete from audit_checkpoints where seq = ${far}`.execute(db());
    assert.ok(await h.services.checkpoints.checkpoint(), 'signs again once the forged row is gone');

    // The head (the runtime role's to write) moved back behind the newest signed checkpoint: the tail was cut.
    const now = await db().selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
    await db().updateTable('audit_head').set({ seq: head.seq, hash: head.hash }).where('id', '=', 1).execute();
    await tampered(/covers events past the head/);
    await db().updateTable('audit_head').set({ seq: now.seq, hash: now.hash }).where('id', '=', 1).execute();
    await h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production');
    assert.ok(await h.services.checkpoints.checkpoint());
    assert.equal((await h.services.system.status()).auditTampered, false);
  });

  test('the checkpointer reads back only what its own group commits did not write, also after commits landed during a proof', async () => {
    await h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production');
    assert.ok(await h.services.checkpoints.checkpoint());
    // Reads are group commits of this process; a write appends in its own transaction.
    await Promise.all(Array.from({ length: 20 }, () => h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production')));
    await h.services.values.write(h.ctx, 'PAYMENTS_KEY', 'production', { value: 'mac-canary-4' });
    await Promise.all(Array.from({ length: 20 }, () => h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production')));
    // Reads land while the checkpoint is proving and signing: the next proof starts inside them.
    const reads = Promise.all(Array.from({ length: 20 }, () => h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production')));
    assert.ok(await h.services.checkpoints.checkpoint());
    const written = await db().selectFrom('audit_events').select('seq').where('action', '=', 'secret.write').orderBy('seq', 'desc').limit(1).executeTakeFirstOrThrow();
    assert.ok(written.seq > 0);
    const readBack = h.services.checkpoints.lastProofReads();
    assert.ok(readBack >= 1 && readBack <= 3, `read back the write's events only (and the last checkpoint's), not 40 reads: ${readBack}`);
    await reads;
    await Promise.all(Array.from({ length: 20 }, () => h.services.values.read(h.ctx, 'PAYMENTS_KEY', 'production')));
    assert.ok(await h.services.checkpoints.checkpoint());
    assert.ok(h.services.checkpoints.lastProofReads() <= 1, `nothing but the previous checkpoint's event, if that: ${h.services.checkpoints.lastProofReads()}`);
  });

  test('the record of where MACs start can be neither moved nor removed by the server\'s own connection', async () => {
    if (dialect === 'postgres') return; // privileges, not triggers: storage/postgres/runtime-role.test.ts
    await assert.rejects(sql`update audit_keyed_from set seq = 1000000`.execute(db()), /append-only/);
    await assert.rejects(sql`delete from audit_keyed_from`.execute(db()), /append-only/);
    await assert.rejects(sql`insert or replace into audit_keyed_from (id, seq) values (1, 1000000)`.execute(db()), /written once/);
    assert.equal((await db().selectFrom('audit_keyed_from').select('seq').executeTakeFirstOrThrow()).seq, 0);
  });
});

describeEachDialect('event MACs after an upgrade: the events before migration 019 are proved by the chain alone', (dialect) => {
  let fresh: Awaited<ReturnType<typeof createUnmigratedDatabase>>;
  before(async () => {
    fresh = await createUnmigratedDatabase(dialect);
  });
  after(() => fresh.close());

  test('old unkeyed events verify; an unkeyed event after the upgrade does not', async () => {
    const { db, upTo } = fresh;
    await upTo('018-run-token-environment');
    const clock = { now: () => Date.UTC(2026, 5, 1) };
    const event = { tenantId: null, actor: { type: 'system' as const, id: 'upgrade-test' }, action: 'test.event', resource: { type: 'tenant', id: null, name: null }, outcome: 'allowed' as const };
    const old = createAuditLog({ db, clock });
    await db.transaction().execute((trx) => old.appendInTx(trx, [event, event, event]));
    await upTo(null);
    assert.equal((await db.selectFrom('audit_keyed_from').select('seq').executeTakeFirstOrThrow()).seq, 3);

    const root = toKeyObject(randomKey());
    const macKeys = createEventMacKeys({ rootKey: () => root, isSealed: () => false, onSeal: () => undefined });
    const log = createAuditLog({ db, clock, macKeys });
    await db.transaction().execute((trx) => log.appendInTx(trx, [event]));
    const key = macKeys.current()!.key;
    const r = await log.verify({ macKey: key });
    assert.equal(r.ok, true, r.ok ? '' : r.problem);

    await db.transaction().execute((trx) => old.appendInTx(trx, [event]));
    const after = await log.verify({ macKey: key });
    assert.equal(!after.ok && after.firstBadSeq, 5);
  });

  test('an event recorded just after an unseal, while an unseal attempt recorded sealed still waits to be written, is written with its MAC, not in the unkeyed batch', async () => {
    const other = await createUnmigratedDatabase(dialect);
    try {
      await other.upTo(null);
      const key = { key: toKeyObject(randomKey()), generation: 1 };
      let current: typeof key | null = null; // sealed
      const log = createAuditLog({ db: other.db, clock: { now: () => Date.UTC(2026, 5, 1) }, macKeys: { current: () => current } });
      const attempt = { tenantId: null, actor: { type: 'system' as const, id: 'keyhold' }, action: 'system.unseal', resource: { type: 'system', id: null, name: null }, outcome: 'denied' as const, reason: 'UNSEAL_FAILED' };
      const reveal = { tenantId: 't1', actor: { type: 'user' as const, id: 'u1' }, action: 'secret.reveal', resource: { type: 'secret', id: 's1', name: 'PAYMENTS_KEY' }, outcome: 'allowed' as const };
      // Both recorded in one turn of the event loop, before either is written: the key goes live in between.
      const sealedWrite = log.record([attempt]);
      current = key;
      const keyedWrite = log.record([reveal]);
      await Promise.all([sealedWrite, keyedWrite]);
      const rows = await other.db.selectFrom('audit_events').select(['action', 'mac']).where('action', 'in', ['system.unseal', 'secret.reveal']).orderBy('seq').execute();
      assert.deepEqual(rows.map((r) => [r.action, r.mac === null]), [['system.unseal', true], ['secret.reveal', false]]);
    } finally {
      await other.close();
    }
  });

  test('the MAC start comes from the events, not the head the server\'s role can move: a moved head stops the upgrade', async () => {
    const other = await createUnmigratedDatabase(dialect);
    try {
      await other.upTo('018-run-token-environment');
      const old = createAuditLog({ db: other.db, clock: { now: () => Date.UTC(2026, 5, 1) } });
      const event = { tenantId: null, actor: { type: 'system' as const, id: 'upgrade-test' }, action: 'test.event', resource: { type: 'tenant', id: null, name: null }, outcome: 'allowed' as const };
      await other.db.transaction().execute((trx) => old.appendInTx(trx, [event, event]));
      const head = await other.db.selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
      // Whoever holds the runtime role's credentials pushes the head far ahead, hoping the MAC rule starts there.
      await other.db.updateTable('audit_head').set({ seq: 1_000_000_000 }).where('id', '=', 1).execute();
      await assert.rejects(other.upTo(null), /audit log is inconsistent/);
      await other.db.updateTable('audit_head').set({ seq: head.seq }).where('id', '=', 1).execute();
      await other.upTo(null);
      assert.equal((await other.db.selectFrom('audit_keyed_from').select('seq').executeTakeFirstOrThrow()).seq, 2);
    } finally {
      await other.close();
    }
  });
});

test('an unkeyed event slipped in just before a server commit is not vouched for by that commit\'s MAC, whose range starts after it', () => {
  const key = toKeyObject(randomKey());
  let prevHash = GENESIS_HASH;
  /** Event `seq`, chained to the one before; `macFrom` makes it the last of a server commit starting there. */
  const event = (seq: number, action: string, macFrom: number | null) => {
    const base = {
      seq, id: `e${seq}`, time: Date.UTC(2026, 5, 1), tenantId: 't1', actor: { type: 'user' as const, id: 'u1' }, action,
      resource: { type: 'secret', id: 's1', name: 'PAYMENTS_KEY' }, environment: 'production', secretVersion: 1,
      outcome: 'allowed' as const, reason: null, context: {},
    };
    const hash = chainHash(prevHash, base);
    const e = { ...base, prevHash, hash, mac: macFrom === null ? null : commitMac(key, macFrom, seq, hash) };
    prevHash = hash;
    return e;
  };
  // 1: the server's commit; 2: appended with the database's rights alone; 3: the server's next commit (3..3), hashed over 2.
  const events = [event(1, 'secret.write', 1), event(2, 'secret.reveal', null), event(3, 'secret.reveal', 3)];
  const verifier = createChainVerifier(undefined, { macs: { key, keyedFrom: 0 } });
  for (const e of events) verifier.push(e);
  const r = verifier.result();
  assert.equal(r.ok, false, 'the forged event is named');
  assert.equal(!r.ok && r.firstBadSeq, 2);
  assert.match(!r.ok ? r.problem : '', /event 2 carries no MAC/);
  // Control: the same three events with the middle one inside the server's commit (2..3) verify.
  prevHash = GENESIS_HASH;
  const genuine = [event(1, 'secret.write', 1), event(2, 'secret.reveal', null), event(3, 'secret.reveal', 2)];
  const control = createChainVerifier(undefined, { macs: { key, keyedFrom: 0 } });
  for (const e of genuine) control.push(e);
  assert.equal(control.result().ok, true);
});
