import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sign } from 'node:crypto';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { dropAuditGuards, rewriteChain, snapshotAudit } from '../../../test/helpers/audit-tampering.ts';
import type { AuditEventsTable } from '../../storage/schema.ts';
import { fromRow } from './audit-log.ts';
import { chainHash } from './chain.ts';
import { CHECKPOINT_ACTION, checkpointMessage } from './checkpoint-format.ts';
import { deriveSigningKey } from './checkpoints.ts';
import { verifyLog } from './log-verifier.ts';
import { toKeyObject } from '../../crypto/aead.ts';
import { randomKey } from '../../crypto/bytes.ts';

/**
 * What someone who can write the database (the owner's rights: triggers can be dropped) can do to
 * the audit log, and what still gives them away: linked checkpoints, checkpoints published as
 * events, and what the running server remembers having written and signed.
 */
describeEachDialect('audit tamper evidence beyond the chain', (dialect) => {
  let h: Harness;
  let key: string;
  before(async () => {
    h = await createHarness(dialect);
    key = h.services.checkpoints.publicKey();
    await h.services.secrets.create(h.ctx, { name: 'TAMPER', owner: 'ops' });
    await h.services.values.write(h.ctx, 'TAMPER', 'production', { value: 'tamper-canary-1' });
  });
  after(() => h.close());

  const db = () => h.storage.db;
  const rows = () => db().selectFrom('audit_events').selectAll().orderBy('seq').execute();
  const verify = () => h.services.audit.verify({ trustedPublicKey: key, checkpointFloor: h.services.checkpoints.highestSigned() });
  const problem = (r: Awaited<ReturnType<typeof verify>>) => (r.ok ? 'ok' : r.problem);
  const refused = (q: { execute(d: typeof h.storage.db): Promise<unknown> }) =>
    q.execute(db()).then(() => 'done', (e: Error) => (/append-only/.test(e.message) ? 'refused' : e.message));

  const snapshot = () => snapshotAudit(db());

  const rewrite = (events: AuditEventsTable[]) => rewriteChain(db(), events);

  const dropGuards = () => dropAuditGuards(db(), dialect);

  test('each checkpoint names the one before it and is published as an event; an idle log signs nothing new', async () => {
    const first = await h.services.checkpoints.checkpoint();
    assert.ok(first);
    assert.equal(first.prev_seq, 0, 'the first checkpoint of this log');
    const published = (await rows()).at(-1)!;
    assert.equal(published.action, CHECKPOINT_ACTION);
    assert.equal(published.seq, first.seq + 1);
    assert.deepEqual(JSON.parse(published.context), {
      seq: String(first.seq), hash: first.hash, time: String(first.time), prevSeq: '0', signature: first.signature, publicKey: first.public_key,
    });
    assert.equal(await h.services.checkpoints.checkpoint(), null, 'only its own event came after it');

    await h.services.values.read(h.ctx, 'TAMPER', 'production');
    const second = await h.services.checkpoints.checkpoint();
    assert.equal(second?.prev_seq, first.seq);
    assert.equal(second?.seq, first.seq + 2, 'covers the first checkpoint event and the read');
    const r = await verify();
    assert.equal(r.ok, true, problem(r));
    assert.equal(r.ok && r.unsigned, 1, 'the second checkpoint event is not signed yet');
  });

  test('two checkpointers signing the same head at once: one checkpoint, one published event, no error', async () => {
    await h.services.values.read(h.ctx, 'TAMPER', 'production');
    const results = await Promise.all([h.services.checkpoints.checkpoint(), h.services.checkpoints.checkpoint()]);
    assert.equal(results.filter((r) => r !== null).length, 1, JSON.stringify(results));
    const published = (await rows()).filter((e) => e.action === CHECKPOINT_ACTION && JSON.parse(e.context).seq === String(results.find((r) => r)!.seq));
    assert.equal(published.length, 1);
  });

  test('the database refuses to replace, update, delete or truncate audit events and checkpoints', async () => {
    const cp = await db().selectFrom('audit_checkpoints').select('seq').orderBy('seq').executeTakeFirstOrThrow();
    const attempts = dialect === 'sqlite'
      ? [
        sql`insert or replace into audit_events select * from audit_events where seq = 1`,
        sql`replace into audit_checkpoints select * from audit_checkpoints where seq = ${cp.seq}`,
        sql`update audit_checkpoints set hash = 'x' where seq = ${cp.seq}`,
        sql`delete from audit_checkpoints where seq = ${cp.seq}`,
      ]
      : [
        sql`insert into audit_events select * from audit_events where seq = 1 on conflict (seq) do update set outcome = 'denied'`,
        sql`update audit_checkpoints set hash = 'x' where seq = ${cp.seq}`,
        sql`delete from audit_checkpoints where seq = ${cp.seq}`,
        sql`truncate audit_events`,
        sql`truncate audit_checkpoints`,
      ];
    for (const attempt of attempts) assert.equal(await refused(attempt), 'refused', attempt.compile(db()).sql);
    const r = await verify();
    assert.equal(r.ok, true, problem(r));
  });

  test('a forged signature under the trusted public key is refused', async () => {
    await dropGuards();
    const restore = await snapshot();
    const cp = await db().selectFrom('audit_checkpoints').selectAll().orderBy('seq', 'desc').executeTakeFirstOrThrow();
    const other = deriveSigningKey(toKeyObject(randomKey()));
    const forged = sign(null, checkpointMessage(cp.seq, cp.hash, cp.time, cp.prev_seq), other.privateKey).toString('base64');
    await sql`delete from audit_checkpoints where seq = ${cp.seq}`.execute(db());
    await db().insertInto('audit_checkpoints').values({ ...cp, signature: forged }).execute();
    const r = await verify();
    assert.equal(r.ok, false);
    assert.match(problem(r), new RegExp(`checkpoint at ${cp.seq} is not signed by the trusted audit key`));
    await restore();
  });

  test('a rewritten history with every checkpoint row deleted is still caught by the checkpoints its events published', async () => {
    const restore = await snapshot();
    const original = await rows();
    const victim = original.find((e) => e.action === 'secret.write')!;
    await rewrite(original.map((e) => (e.seq === victim.seq ? { ...e, outcome: 'denied' } : e)));
    await sql`delete from audit_checkpoints`.execute(db());
    const r = await verify();
    assert.equal(r.ok, false);
    assert.match(problem(r), /does not match the signed checkpoint/);
    await restore();
    assert.equal((await verify()).ok, true);
  });

  test('a history rebuilt without any checkpoint, rows or events, is refused by the server that signed them', async () => {
    const restore = await snapshot();
    const original = await rows();
    // Same length, so only the missing checkpoints can tell: each published checkpoint becomes an ordinary read.
    const read = original.find((e) => e.action === 'secret.reveal')!;
    await rewrite(original.map((e) => (e.action === CHECKPOINT_ACTION ? { ...read, seq: e.seq } : e)));
    await sql`delete from audit_checkpoints`.execute(db());
    const r = await verify();
    assert.equal(r.ok, false);
    assert.match(problem(r), /this server signed a checkpoint at \d+, but the newest stored is at 0: checkpoints were removed/);

    // A tail cut together with the checkpoints that covered it: what this process committed says otherwise.
    await restore();
    const cut = original.filter((e) => e.seq <= original.length - 2 && e.action !== CHECKPOINT_ACTION);
    await rewrite(cut);
    await sql`delete from audit_checkpoints`.execute(db());
    const c = await h.services.audit.verify({ trustedPublicKey: key });
    assert.equal(c.ok, false);
    assert.match(problem(c), /this server has written up to \d+: events were removed from the end/);
    await restore();
    assert.equal((await verify()).ok, true);
  });

  test('an audit.checkpoint event carrying a checkpoint nobody signed is named by its own seq, not by the seq it claims', async () => {
    await h.services.values.read(h.ctx, 'TAMPER', 'production');
    assert.ok(await h.services.checkpoints.checkpoint());
    const restore = await snapshot();
    // Appended as the runtime role could (insert, move the head): it claims to sign event 1.
    const head = await db().selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
    const genuine = (await rows()).findLast((e) => e.action === CHECKPOINT_ACTION)!;
    const claimed = { ...JSON.parse(genuine.context), seq: '1', prevSeq: '0' };
    const row: AuditEventsTable = { ...genuine, seq: head.seq + 1, prev_hash: head.hash, context: JSON.stringify(claimed), mac: null };
    row.hash = chainHash(head.hash, fromRow(row));
    await db().insertInto('audit_events').values(row).execute();
    await db().updateTable('audit_head').set({ seq: row.seq, hash: row.hash }).where('id', '=', 1).execute();

    const r = await verify();
    assert.equal(r.ok, false);
    assert.equal(!r.ok && r.firstBadSeq, row.seq, problem(r));
    assert.match(problem(r), new RegExp(`event ${row.seq} publishes a checkpoint at 1 that is not signed by the trusted audit key`));
    await dropGuards();
    await restore();
    assert.equal((await verify()).ok, true);
  });

  test('a checkpoint removed from the middle is named by the signed link of the one after it', async () => {
    await h.services.values.read(h.ctx, 'TAMPER', 'production');
    await h.services.checkpoints.checkpoint();
    const checkpoints = await db().selectFrom('audit_checkpoints').selectAll().orderBy('seq').execute();
    assert.ok(checkpoints.length >= 3);
    const middle = checkpoints[1]!;
    // Offline, from an export whose checkpoint events were left out and one checkpoint line deleted.
    const events = (await rows()).map(fromRow).filter((e) => e.action !== CHECKPOINT_ACTION);
    let prev = events[0]!.prevHash;
    const rechained = events.map((e, i) => {
      const x = { ...e, seq: i + 1, prevHash: prev };
      x.hash = chainHash(prev, x);
      prev = x.hash;
      return x;
    });
    const r = await verifyLog({ events: rechained, checkpoints: checkpoints.filter((c) => c.seq !== middle.seq), head: null, trustedPublicKey: key });
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : r.problem, new RegExp(`the checkpoint at ${middle.seq} \\(named by the signed checkpoint at ${checkpoints[2]!.seq}\\) was removed`));
  });
});
