import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { dropAuditGuards } from '../../../test/helpers/audit-tampering.ts';
import { rejects as rejectsWithCode } from '../../../test/helpers/rejects.ts';
import { runCli } from '../../../test/helpers/cli.ts';

/**
 * Events appended in a write's own transaction (appendInTx) are part of what this server committed:
 * a tail cut off right after a write, head rewound to match, must not verify, and no checkpoint
 * may sign the cut log (offline, a signed checkpoint is what proves a tail). A transaction that
 * rolls back after appending commits nothing, and must not be taken for one cut off.
 */
describeEachDialect('audit events appended in a write transaction count as committed', (dialect) => {
  let h: Harness;
  let key: string;
  before(async () => {
    h = await createHarness(dialect);
    key = h.services.checkpoints.publicKey();
    await h.services.secrets.create(h.ctx, { name: 'IN_TX', owner: 'ops' });
  });
  after(() => h.close());

  const db = () => h.storage.db;
  const verify = () => h.services.audit.verify({ trustedPublicKey: key, checkpointFloor: h.services.checkpoints.highestSigned() });
  const problem = (r: Awaited<ReturnType<typeof verify>>) => (r.ok ? 'ok' : r.problem);

  /** Removes every event after `seq` and moves the head back onto it, as a database owner could. */
  async function cutAfter(seq: number): Promise<void> {
    const last = await db().selectFrom('audit_events').select(['seq', 'hash']).where('seq', '=', seq).executeTakeFirstOrThrow();
    await sql`delete from audit_events where seq > ${seq}`.execute(db());
    await db().updateTable('audit_head').set({ seq: last.seq, hash: last.hash }).where('id', '=', 1).execute();
  }

  test('a transaction that appended and then rolled back leaves verify and checkpoints as they were', async () => {
    await assert.rejects(db().transaction().execute(async (trx) => {
      await h.services.audit.appendInTx(trx, [{ tenantId: null, actor: { type: 'system', id: 'keyhold' }, action: 'system.self-test', resource: { type: 'system', id: null, name: null }, outcome: 'allowed' }]);
      throw new Error('the rest of the write failed');
    }), /the rest of the write failed/);
    const r = await verify();
    assert.equal(r.ok, true, problem(r));
    assert.ok(await h.services.checkpoints.checkpoint());
  });

  test('a transaction that appended twice and then rolled back is not taken for a cut log when others append in its place', async () => {
    const selfTest = { tenantId: null, actor: { type: 'system' as const, id: 'keyhold' }, action: 'system.self-test', resource: { type: 'system', id: null, name: null }, outcome: 'allowed' as const };
    // The second append reads the head the first one moved, inside the same (uncommitted) transaction.
    await assert.rejects(db().transaction().execute(async (trx) => {
      await h.services.audit.appendInTx(trx, [selfTest]);
      await h.services.audit.appendInTx(trx, [selfTest]);
      throw new Error('the rest of the write failed');
    }), /the rest of the write failed/);
    // Other events take the places the rolled-back ones had.
    await h.services.audit.record([selfTest, selfTest]);
    const r = await verify();
    assert.equal(r.ok, true, problem(r));
    assert.ok(await h.services.checkpoints.checkpoint());
    assert.equal(h.services.checkpoints.tampered(), false);
  });

  test('the events of the last write, cut off with the head rewound, are named as removed and no checkpoint signs the cut log', async () => {
    const before = await db().selectFrom('audit_head').select('seq').executeTakeFirstOrThrow();
    await h.services.values.write(h.ctx, 'IN_TX', 'production', { value: 'in-tx-canary-1' });
    const written = await db().selectFrom('audit_events').select(['seq', 'action']).where('seq', '>', before.seq).orderBy('seq').execute();
    assert.deepEqual(written.map((e) => e.action), ['secret.write'], 'the write appended its event in its own transaction, and nothing came after it');
    const ok = await verify();
    assert.equal(ok.ok, true, problem(ok));

    await dropAuditGuards(db(), dialect);
    await cutAfter(before.seq);
    const r = await verify();
    assert.equal(r.ok, false, 'the cut tail verified');
    assert.equal(!r.ok && r.firstBadSeq, before.seq + 1);
    assert.match(problem(r), new RegExp(`this server has written up to ${written.at(-1)!.seq}: events were removed from the end`));
    // What an operator runs: `keyhold audit verify` (GET /v1/audit/verify, through its gate) says the same.
    const cli = await runCli(h.app, ['audit', 'verify'], { token: h.rootToken });
    assert.equal(cli.code, 1, cli.stdout + cli.stderr);
    assert.match(cli.stdout, new RegExp(`BROKEN at event #${before.seq + 1}\\b`));
    // Signing now would vouch for the cut log wherever the checkpoint is copied (sinks, exports).
    await rejectsWithCode(h.services.checkpoints.checkpoint(), 'AUDIT_TAMPERED');
    assert.equal(h.services.checkpoints.tampered(), true);

    // Grown back over the cut (reads appended in its place): the event there is not the one this server committed.
    for (let i = 0; i < written.length + 1; i++) await h.services.values.read(h.ctx, 'IN_TX', 'production').catch(() => null);
    const grown = await verify();
    assert.equal(grown.ok, false, 'the log grown back past the cut verified');
    assert.equal(!grown.ok && grown.firstBadSeq, written.at(-1)!.seq, problem(grown));
    await rejectsWithCode(h.services.checkpoints.checkpoint(), 'AUDIT_TAMPERED');
  });
});
