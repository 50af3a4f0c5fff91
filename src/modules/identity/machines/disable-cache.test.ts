import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { KyselyPlugin, OperationNode } from 'kysely';
import { describeEachDialect } from '../../../../test/helpers/each-dialect.ts';
import { createHarness, type Harness } from '../../../../test/helpers/harness.ts';

/** True for an UPDATE of `table`. */
function updates(node: OperationNode, table: string): boolean {
  const target = (node as { table?: { table?: { identifier?: { name?: string } } } }).table;
  return node.kind === 'UpdateQueryNode' && target?.table?.identifier?.name === table;
}

/**
 * Disabling an identity revokes its tokens and clears them from the lookup cache inside its
 * transaction; a lookup on another connection before the commit still reads them live and caches
 * that answer. The pass after the commit clears it again, so the token is refused at once, not up
 * to the cache's lifetime later. PostgreSQL only: SQLite's one connection cannot read meanwhile.
 */
describeEachDialect('a token looked up while its identity is being disabled', (dialect) => {
  let h: Harness;
  let meanwhile: (() => Promise<void>) | null = null;
  const watched = new WeakSet<object>();
  const plugin: KyselyPlugin = {
    transformQuery({ node, queryId }) {
      if (meanwhile && updates(node, 'tenants')) watched.add(queryId);
      return node;
    },
    async transformResult({ result, queryId }) {
      if (watched.has(queryId) && meanwhile) {
        const run = meanwhile;
        meanwhile = null;
        await run();
      }
      return result;
    },
  };
  before(async () => {
    h = await createHarness(dialect, { plugins: [plugin] });
  });
  after(() => h.close());

  test('is not left cached as live once the disable commits', { skip: dialect === 'sqlite' && 'one connection: nothing reads inside another transaction' }, async () => {
    const m = await h.services.machines.create(h.ctx, { name: 'disabled-under-lookup', kind: 'client_secret' });
    const issued = await h.services.tokens.issue({ tenantId: h.ctx.tenantId, kind: 'machine', principalId: m.id, name: m.name, ttlMs: 900_000 });
    let seen: unknown = null;
    // Runs inside the disable's transaction, after its in-transaction revoke (the generation bump comes later).
    meanwhile = async () => {
      seen = await h.services.tokens.lookup(issued.token);
    };
    await h.services.machines.disable(h.ctx, m.id);
    assert.equal(meanwhile, null, 'the lookup ran inside the disable');
    assert.ok(seen !== null && typeof seen === 'object' && 'principal' in seen, 'and read the token live, before the commit');
    assert.equal(h.services.tokens.cached(issued.token), undefined);
    assert.equal(await h.services.tokens.authenticate(issued.token), null);
  });
});
