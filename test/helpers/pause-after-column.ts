import type { KyselyPlugin, QueryResult, UnknownRow } from 'kysely';

/**
 * Once, runs `meanwhile` after the first query whose rows carry a non-null `column` (a wrapped data
 * key, a sealed TOTP secret) has answered, before its caller sees them (raw SQL included, which
 * pauseAfterRead cannot see): for instance, a KEK rewrap commits between a reader's load of a
 * sealed row and its decryption. For race tests that must not depend on timing.
 */
export function pauseAfterColumn(column: string, meanwhile: () => Promise<void>): KyselyPlugin & { fired: () => boolean } {
  let done = false;
  return {
    fired: () => done,
    transformQuery: ({ node }) => node,
    async transformResult({ result }): Promise<QueryResult<UnknownRow>> {
      if (!done && result.rows.some((r) => r[column] !== null && r[column] !== undefined)) {
        done = true;
        await meanwhile();
      }
      return result;
    },
  };
}
