import type { KyselyPlugin, OperationNode, QueryResult, UnknownRow } from 'kysely';

/**
 * A Kysely plugin that, once, runs `meanwhile` after the first SELECT from `table` has returned and
 * before its caller sees the rows: another writer commits between a service's read and its write.
 * For race tests that must not depend on timing.
 */
export function pauseAfterRead(table: string, meanwhile: () => Promise<void>): KyselyPlugin & { fired: () => boolean } {
  const watched = new WeakSet<object>();
  let done = false;
  const readsTable = (node: OperationNode): boolean => {
    if (node.kind !== 'SelectQueryNode') return false;
    const froms = (node as { from?: { froms: Array<{ kind: string; table?: { identifier: { name: string } } }> } }).from?.froms ?? [];
    return froms.some((f) => f.kind === 'TableNode' && f.table?.identifier.name === table);
  };
  return {
    fired: () => done,
    transformQuery({ node, queryId }) {
      if (!done && readsTable(node)) watched.add(queryId);
      return node;
    },
    async transformResult({ result, queryId }): Promise<QueryResult<UnknownRow>> {
      if (!done && watched.has(queryId)) {
        done = true;
        await meanwhile();
      }
      return result;
    },
  };
}
