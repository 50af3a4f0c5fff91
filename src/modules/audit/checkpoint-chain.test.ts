import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sign, type KeyObject } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { dropAuditGuards, resignCheckpoints, rewriteChain, snapshotAudit } from '../../../test/helpers/audit-tampering.ts';
import { runCli } from '../../../test/helpers/cli.ts';
import { verifyExportFiles } from '../../cli/commands/audit-offline.ts';
import type { AuditCheckpointsTable } from '../../storage/schema.ts';
import { createAuditLog, fromRow } from './audit-log.ts';
import { CHECKPOINT_ACTION, checkpointEvent, checkpointMessage, checkpointValid } from './checkpoint-format.ts';
import { deriveSigningKey, publicKeyText } from './checkpoints.ts';
import { mergeCheckpoints } from './log-verifier.ts';
import { VERIFY_MAX_AGE_MS } from './verify-gate.ts';
import { toKeyObject } from '../../crypto/aead.ts';
import { randomKey } from '../../crypto/bytes.ts';

/**
 * The checkpoints form one chain: the first names 0, each later one the checkpoint just before it,
 * no two the same one, and every stored row is published by its `audit.checkpoint` event (and every
 * published checkpoint stored). A break is named on the server and offline, and a fork (two
 * checkpoints chaining from one, as two checkpointers signing at once once made) is named as a fork.
 */
describeEachDialect('the chain of signed checkpoints', (dialect) => {
  let h: Harness;
  let dir: string;
  let key: string;
  let signing: { privateKey: KeyObject; publicKey: string };
  /** The checkpoints as written: four rounds of a write and a checkpoint. */
  let cps: AuditCheckpointsTable[];
  /** The seq of the event that publishes each checkpoint, by the checkpoint's seq. */
  let publishedBy: Map<number, number>;

  const db = () => h.storage.db;
  const events = () => db().selectFrom('audit_events').selectAll().orderBy('seq').execute();
  /** The server that wrote the log, with what it remembers committing and signing. */
  const verify = () => h.services.audit.verify({ trustedPublicKey: key, checkpointFloor: h.services.checkpoints.highestSigned() });
  /** A server started again over the same database: it remembers nothing, so only the database can tell. */
  const restarted = () => createAuditLog({ db: db(), clock: h.clock }).verify({ trustedPublicKey: key });
  /** `keyhold audit verify --events [--checkpoints]` over the log as the database holds it now. */
  async function offline(withCheckpoints: boolean) {
    const paths = { events: join(dir, 'events.jsonl'), checkpoints: join(dir, 'checkpoints.jsonl') };
    await writeFile(paths.events, (await events()).map((r) => `${JSON.stringify(fromRow(r))}\n`).join(''));
    const rows = await db().selectFrom('audit_checkpoints').selectAll().orderBy('seq').execute();
    await writeFile(paths.checkpoints, rows.map((c) => `${JSON.stringify(c)}\n`).join(''));
    return verifyExportFiles({ events: paths.events, checkpoints: withCheckpoints ? paths.checkpoints : null }, key);
  }
  const verdict = (r: { ok: boolean; firstBadSeq?: number | null; problem?: string | null }) => (r.ok ? ['ok'] : [r.firstBadSeq, r.problem]);
  /** Asserts each answer is broken at `seq` with a problem matching `problem`. */
  function assertBroken(answers: Array<{ ok: boolean; firstBadSeq?: number | null; problem?: string | null }>, seq: number, problem: RegExp) {
    for (const [i, r] of answers.entries()) {
      assert.equal(r.ok, false, `answer ${i}: ${JSON.stringify(r)}`);
      assert.equal(r.firstBadSeq, seq, `answer ${i}: ${r.problem}`);
      assert.match(r.problem!, problem, `answer ${i}`);
    }
  }

  before(async () => {
    h = await createHarness(dialect);
    dir = await mkdtemp(join(tmpdir(), 'keyhold-checkpoint-chain-'));
    key = h.services.checkpoints.publicKey();
    const keys = deriveSigningKey(h.services.seal.rootKey());
    signing = { privateKey: keys.privateKey, publicKey: publicKeyText(keys.publicKey) };
    await h.services.secrets.create(h.ctx, { name: 'CHAIN', owner: 'ops' });
    for (let i = 0; i < 4; i++) {
      await h.services.values.write(h.ctx, 'CHAIN', 'production', { value: `chain-canary-${i}` });
      assert.ok(await h.services.checkpoints.checkpoint());
    }
    await h.services.values.read(h.ctx, 'CHAIN', 'production'); // the unsigned tail
    cps = await db().selectFrom('audit_checkpoints').selectAll().orderBy('seq').execute();
    publishedBy = new Map((await events()).filter((e) => e.action === CHECKPOINT_ACTION).map((e) => [Number(JSON.parse(e.context).seq), e.seq]));
    // Only to tamper (and to put everything back after each case).
    await dropAuditGuards(db(), dialect);
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
    await h.close();
  });

  test('the log as written is one chain: the first names 0, each the one before it; it verifies on the server and offline', async () => {
    assert.deepEqual(cps.map((c) => c.prev_seq), [0, ...cps.slice(0, -1).map((c) => c.seq)]);
    for (const r of [await verify(), await restarted(), await offline(true), await offline(false)]) assert.deepEqual(verdict(r), ['ok']);
  });

  test('a checkpoint row removed while its event remains is named, on the server and against a checkpoints export that holds later ones', async () => {
    const restore = await snapshotAudit(db());
    const [, second] = cps as [AuditCheckpointsTable, AuditCheckpointsTable];
    await sql`delete from audit_checkpoints where seq = ${second.seq}`.execute(db());
    const problem = new RegExp(`^the checkpoint at ${second.seq}, published by event ${publishedBy.get(second.seq)}, has no stored row: it was removed`);
    assertBroken([await verify(), await restarted(), await offline(true)], second.seq, problem);
    // Its event still carries it: an events file alone has nothing to compare with.
    assert.deepEqual(verdict(await offline(false)), ['ok']);

    // The newest row: the server stores each row with its event, so one missing is a removal (a restarted
    // server included); a checkpoints export may simply be older than the events file.
    await restore();
    const newest = cps.at(-1)!;
    await sql`delete from audit_checkpoints where seq = ${newest.seq}`.execute(db());
    assertBroken([await restarted()], newest.seq, new RegExp(`^the checkpoint at ${newest.seq}, published by event ${publishedBy.get(newest.seq)}, has no stored row`));
    assert.deepEqual(verdict(await offline(true)), ['ok']);
    await restore();
  });

  test('a checkpoint removed with its event, the log renumbered, is named by the signed link of the next one', async () => {
    const restore = await snapshotAudit(db());
    const [, second, third] = cps as [AuditCheckpointsTable, AuditCheckpointsTable, AuditCheckpointsTable];
    await rewriteChain(db(), (await events()).filter((e) => e.seq !== publishedBy.get(second.seq)));
    await sql`delete from audit_checkpoints where seq = ${second.seq}`.execute(db());
    const problem = new RegExp(`^the checkpoint at ${second.seq} \\(named by the signed checkpoint at ${third.seq}\\) was removed`);
    assertBroken([await verify(), await restarted(), await offline(true), await offline(false)], second.seq, problem);
    await restore();
  });

  test('the newest checkpoint\'s event cut off with the tail after it, on a restarted server: its row has no event', async () => {
    const restore = await snapshotAudit(db());
    const newest = cps.at(-1)!;
    await rewriteChain(db(), (await events()).filter((e) => e.seq <= newest.seq));
    assertBroken([await restarted()], newest.seq, new RegExp(`^the checkpoint at ${newest.seq} is stored, but no audit.checkpoint event publishes it: its event was removed`));
    await restore();
  });

  test('a validly signed checkpoint inserted as a row alone is named by the server: no event publishes it', async () => {
    const restore = await snapshotAudit(db());
    const [, second] = cps as [AuditCheckpointsTable, AuditCheckpointsTable];
    // Between the second checkpoint and the third, signed with the server's own key (as only its holder could).
    const at = (await events()).find((e) => e.seq === publishedBy.get(second.seq))!;
    const time = h.clock.now();
    const inserted = { seq: at.seq, hash: at.hash, time, prev_seq: second.seq, public_key: signing.publicKey, signature: sign(null, checkpointMessage(at.seq, at.hash, time, second.seq), signing.privateKey).toString('base64') };
    await db().insertInto('audit_checkpoints').values(inserted).execute();
    assertBroken([await verify(), await restarted()], at.seq, new RegExp(`^the checkpoint at ${at.seq} is stored, but no audit.checkpoint event publishes it`));
    await restore();
  });

  test('links re-signed out of order, or a first checkpoint that does not name 0, are named at the first checkpoint whose link is wrong', async () => {
    const [c0, c1, c2, c3] = cps.map((c) => c.seq) as [number, number, number, number];
    const cases: Array<[string, Record<number, number>, number, RegExp]> = [
      ['the second names the third', { [c1]: c2, [c2]: c0 }, c1, new RegExp(`^the checkpoint at ${c1} names the checkpoint at ${c2} as the one before it, but the one before it is at ${c0}: a checkpoint was inserted, or the links reordered`)],
      ['the first names a later one', { [c0]: c3 }, c0, new RegExp(`^the checkpoint at ${c0} names the checkpoint at ${c3} as the one before it, but none comes before it \\(the first names 0\\)`)],
      ['the fourth names itself', { [c3]: c3 }, c3, new RegExp(`^the checkpoint at ${c3} names the checkpoint at ${c3} as the one before it, but the one before it is at ${c2}`)],
      ['the first names one that never was', { [c0]: c0 - 1 }, c0 - 1, new RegExp(`^the checkpoint at ${c0 - 1} \\(named by the signed checkpoint at ${c0}\\) was removed`)],
    ];
    for (const [what, links, seq, problem] of cases) {
      const restore = await snapshotAudit(db());
      await resignCheckpoints(db(), signing, (c) => links[c.seq] ?? c.prev_seq);
      assertBroken([await restarted(), await offline(true), await offline(false)], seq, problem);
      await restore();
      assert.deepEqual(verdict(await verify()), ['ok'], what);
    }
  });

  test('two checkpoints naming the same one (a fork made with the key) are named as a fork once the events prove both', async () => {
    const [c0, c1, c2] = cps.map((c) => c.seq) as [number, number, number];
    const cases: Array<[string, Record<number, number>, RegExp]> = [
      ['the third chains from the first, as the second does', { [c2]: c0 }, new RegExp(`^a fork: the checkpoints at ${c1} and ${c2} both name the checkpoint at ${c0} as the one before them`)],
      ['the second says it is the first too', { [c1]: 0 }, new RegExp(`^a fork: the checkpoints at ${c0} and ${c1} both name none \\(each says it is the first\\) as the one before them`)],
    ];
    for (const [what, links, problem] of cases) {
      const restore = await snapshotAudit(db());
      const resigned = await resignCheckpoints(db(), signing, (c) => links[c.seq] ?? c.prev_seq);
      const second = Math.max(...Object.keys(links).map(Number));
      assertBroken([await restarted(), await offline(true), await offline(false)], second, problem);

      // A fork is named only once the events prove both checkpoints: with one of them no longer matching its event, that is named first.
      const altered = resigned.find((c) => c.seq === second)!;
      await rewriteChain(db(), (await events()).map((e) => (e.seq === altered.seq - 1 ? { ...e, outcome: 'denied' } : e)));
      const r = await restarted();
      assert.equal(r.ok, false, what);
      assert.match(r.ok ? '' : r.problem, /does not match the signed checkpoint/, what);
      await restore();
    }
  });

  test('a fork as the checkpoint race left it (the loser signed the head after the winner\'s event) is named as a fork by GET /v1/audit/verify, keyhold audit verify and offline', async () => {
    const before = cps.at(-1)!;
    await h.services.values.read(h.ctx, 'CHAIN', 'production');
    // The loser read the last checkpoint (`before`), then the winner signed and committed, then the loser read the head.
    const winner = await h.services.checkpoints.checkpoint();
    assert.ok(winner);
    const head = await db().selectFrom('audit_head').select(['seq', 'hash']).executeTakeFirstOrThrow();
    const time = h.clock.now();
    const loser = { seq: head.seq, hash: head.hash, time, prev_seq: before.seq, public_key: signing.publicKey, signature: sign(null, checkpointMessage(head.seq, head.hash, time, before.seq), signing.privateKey).toString('base64') };
    await db().insertInto('audit_checkpoints').values(loser).execute();
    await h.services.audit.record([checkpointEvent(loser)]);

    const problem = new RegExp(`^a fork: the checkpoints at ${winner.seq} and ${loser.seq} both name the checkpoint at ${before.seq} as the one before them.*two checkpointers signing at once`);
    h.clock.advance(VERIFY_MAX_AGE_MS + 1);
    const res = await h.app.inject({ method: 'GET', url: '/v1/audit/verify', headers: { authorization: `Bearer ${h.rootToken}` } });
    assert.equal(res.statusCode, 200, res.body);
    assertBroken([res.json(), await verify(), await offline(true), await offline(false)], loser.seq, problem);
    const cli = await runCli(h.app, ['audit', 'verify'], { token: h.rootToken });
    assert.equal(cli.code, 1);
    assert.match(cli.stdout, new RegExp(`BROKEN at event #${loser.seq}: a fork: `));
  });
});

test('a checkpoint published by two events is named at the later one; a line repeated exactly (one event) is not', () => {
  const cp = { seq: 4, hash: 'a'.repeat(64), time: 1, prev_seq: 0, signature: 'c2ln', public_key: 'a2V5' };
  const published = (seq: number) => ({ seq, action: CHECKPOINT_ACTION, context: checkpointEvent(cp).context });
  assert.deepEqual(mergeCheckpoints([cp], [published(9), published(5)], null), {
    ok: false, seq: 9, problem: 'event 9 publishes the checkpoint at 4 again (event 5 published it): each checkpoint is published once',
  });
  const once = mergeCheckpoints([], [published(5), published(5)], null);
  assert.ok(once.ok && once.checkpoints.length === 1 && once.checkpoints[0]!.publishedBy === 5 && once.checkpoints[0]!.stored === false);
});

test('the link to the checkpoint before is under the signature: a row relinked past a removed checkpoint, or stripped to v1, no longer verifies', () => {
  const { privateKey, publicKey } = deriveSigningKey(toKeyObject(randomKey()));
  const cp: AuditCheckpointsTable = { seq: 40, hash: 'a'.repeat(64), time: Date.UTC(2026, 5, 1), prev_seq: 30, public_key: publicKeyText(publicKey), signature: '' };
  cp.signature = sign(null, checkpointMessage(cp.seq, cp.hash, cp.time, cp.prev_seq ?? null), privateKey).toString('base64');
  assert.equal(checkpointValid(cp, cp.public_key), true);
  // Whoever removes the checkpoint at 30 would point this one at the one before it, or drop the link altogether.
  for (const prev_seq of [20, 0, null]) assert.equal(checkpointValid({ ...cp, prev_seq }, cp.public_key), false, `prev_seq ${prev_seq}`);
});
