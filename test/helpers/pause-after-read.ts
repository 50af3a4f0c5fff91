import type { KyselyPlugin, OperationNode } from 'kysely';

/** True for a SELECT whose FROM names `table`. */
function readsTable(node: OperationNode, table: string): boolean {
  if (node.kind !== 'SelectQueryNode') return false;
  const froms = (node as { from?: { froms: Array<{ kind: string; table?: { identifier: { name: string } } }> } }).from?.froms ?? [];
  return froms.some((f) => f.kind === 'TableNode' && f.table?.identifier.name === table);
}

/**
 * A Kysely plugin that runs `after[n]` once the n-th SELECT from `table` (counting from 1) has
 * returned and before its caller sees the rows: other writers commit between a service's reads
 * and its writes, at the read the test names. For race tests that must not depend on timing.
 */
export function afterReads(table: string, after: Record<number, () => Promise<void>>): KyselyPlugin & { reads: () => number } {
  let reads = 0;
  const watched = new WeakMap<object, number>();
  return {
    reads: () => reads,
    transformQuery({ node, queryId }) {
      if (readsTable(node, table)) watched.set(queryId, ++reads);
      return node;
    },
    async transformResult({ result, queryId }) {
      const n = watched.get(queryId);
      if (n !== undefined) await after[n]?.();
      return result;
    },
  };
}

/**
 * A Kysely plugin that, once, runs `meanwhile` after the first SELECT from `table` has returned and
 * before its caller sees the rows: another writer commits between a service's read and its write.
 */
export function pauseAfterRead(table: string, meanwhile: () => Promise<void>): KyselyPlugin & { fired: () => boolean } {
  const plugin = afterReads(table, { 1: meanwhile });
  return { ...plugin, fired: () => plugin.reads() >= 1 };
}
