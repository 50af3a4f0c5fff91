import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { sql, type KyselyPlugin, type OperationNode } from 'kysely';
import { describeEachDialect } from '../../../test/helpers/each-dialect.ts';
import { ESCROW_POLICY, setUpEscrow, type EscrowCast } from '../../../test/helpers/escrow.ts';
import { codeOf } from '../../../test/helpers/rejects.ts';
import { createHarness, type Harness } from '../../../test/helpers/harness.ts';
import { waitUntilBlockedBy } from '../../../test/helpers/pg-lock-waits.ts';
import { PASSWORD } from '../../../test/helpers/users.ts';
import type { AccessPolicyDocument } from '../escrow/access-policy.ts';

/**
 * Writes that lock the tenant row (a KEK rotation updates it, a secret write reads it FOR SHARE)
 * take it before the audit head; changes of who may do what take it to move the authz generation.
 * Taken in the other order by one of them, PostgreSQL finds a deadlock and one request fails
 * (docs/architecture.md, "Lock order").
 */
describeEachDialect('audited writes of one tenant at once never deadlock', (dialect) => {
  let h: Harness;
  let c: EscrowCast;
  /** Armed, it runs once after the next UPDATE of the audit head, before its caller goes on. */
  let afterHeadMoved: (() => Promise<void>) | null = null;
  const trapped = new WeakMap<object, () => Promise<void>>();
  const trap: KyselyPlugin = {
    transformQuery: ({ node, queryId }) => {
      if (afterHeadMoved && movesHead(node)) {
        trapped.set(queryId, afterHeadMoved);
        afterHeadMoved = null;
      }
      return node;
    },
    async transformResult({ result, queryId }) {
      await trapped.get(queryId)?.();
      return result;
    },
  };
  const stricter: AccessPolicyDocument = {
    ...ESCROW_POLICY, rules: ESCROW_POLICY.rules.map((r) => (r.id === 'prod-reveal' ? { ...r, steps: [{ groups: ['leads', 'security'], approvals: 3 }] } : r)),
  };
  const file = () => h.services.escrow.requests.file(c.builder.ctx(), { secrets: ['STRIPE_LOCK'], environment: 'production', action: 'reveal', justification: 'CHG-1: lock order test' });
  const applyPolicy = (document: AccessPolicyDocument) => h.services.escrow.accessPolicies.put(h.ctx, { document, comment: 'lock order' });
  const state = async (id: string) => (await h.services.escrow.requests.show(h.ctx, id)).state;

  before(async () => {
    h = await createHarness(dialect, { plugins: [trap] });
    await h.services.secrets.create(h.ctx, { name: 'LOCK_ORDER', owner: 'ops' });
    c = await setUpEscrow(h, ['STRIPE_LOCK']);
  });
  after(() => h.close());

  test('machine, user and grant changes beside KEK rotations and secret writes all succeed', async () => {
    const machine = await h.services.machines.create(h.ctx, { name: 'lock-order-base', kind: 'client_secret' });
    const work: Array<() => Promise<unknown>> = [];
    for (let i = 0; i < 12; i++) {
      work.push(() => h.services.machines.create(h.ctx, { name: `lock-order-${i}`, kind: 'client_secret' }));
      work.push(() => h.services.keys.rotate(h.ctx));
      work.push(() => h.services.values.write(h.ctx, 'LOCK_ORDER', 'production', { value: `lock-order-value-${i}` }));
      work.push(() => h.services.grants.create(h.ctx, { principalType: 'machine', principalId: machine.id, role: 'builder' }));
      if (i % 4 === 0) work.push(() => h.services.users.create(h.ctx, { username: `lock-order-${i}`, password: PASSWORD }));
    }
    const results = await Promise.allSettled(work.map((w) => w()));
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [String((r.reason as Error).message)] : []));
    assert.deepEqual(failures, []);
  });

  test('access policy changes that supersede waiting requests, beside KEK rotations, all succeed', async () => {
    // One policy change at a time (two at once are CAS_MISMATCH by design), each racing two rotations.
    const failures: string[] = [];
    for (let i = 0; i < 8; i++) {
      const waiting = await file();
      const results = await Promise.allSettled([applyPolicy(i % 2 === 0 ? stricter : ESCROW_POLICY), h.services.keys.rotate(h.ctx), h.services.keys.rotate(h.ctx)]);
      failures.push(...results.flatMap((r) => (r.status === 'rejected' ? [`round ${i}: ${String((r.reason as Error).message)}`] : [])));
      if (results[0].status === 'fulfilled') assert.equal(await state(waiting.id), 'superseded');
    }
    assert.deepEqual(failures, []);
  });

  test('an access policy change holding the audit head while a KEK rotation takes the tenant row: both commit, no deadlock (40P01)', { skip: dialect === 'sqlite' && 'SQLite runs one write transaction at a time: no order of row locks to get wrong' }, async () => {
    for (const document of [stricter, ESCROW_POLICY]) {
      const waiting = await file();
      let rotation: Promise<string> | null = null;
      // Once the policy change has moved the head (so holds its lock), the rotation starts and runs until it waits
      // for a lock the policy change holds; then the policy change goes on and takes its remaining locks.
      afterHeadMoved = async () => {
        const holder = await headLockHolder(h);
        rotation = codeOf(h.services.keys.rotate(h.ctx));
        await waitUntilBlockedBy(h.storage.db, [holder]);
      };
      const applied = await codeOf(applyPolicy(document));
      assert.ok(rotation, 'the policy change moved the audit head');
      assert.deepEqual([applied, await rotation], ['ok', 'ok']);
      assert.equal(await state(waiting.id), 'superseded');
    }
  });
});

/** True for an UPDATE of `audit_head` (every append moves it first: its row lock orders appenders). */
function movesHead(node: OperationNode): boolean {
  const table = (node as { table?: { kind: string; table?: { identifier: { name: string } } } }).table;
  return node.kind === 'UpdateQueryNode' && table?.kind === 'TableNode' && table.table?.identifier.name === 'audit_head';
}

/** The PostgreSQL backend that holds a lock on the harness's `audit_head` (the one transaction that moved it). */
async function headLockHolder(h: Harness): Promise<number> {
  const { rows } = await sql<{ pid: number }>`
    select distinct l.pid from pg_locks l join pg_class c on c.oid = l.relation join pg_namespace n on n.oid = c.relnamespace
    where n.nspname = ${h.database.schema!} and c.relname = 'audit_head' and l.granted and l.pid <> pg_backend_pid()`.execute(h.storage.db);
  assert.equal(rows.length, 1, `one backend holds the audit head: ${JSON.stringify(rows)}`);
  return rows[0]!.pid;
}
