import type { Clock } from '../../platform/clock.ts';

/** A table of bearer credentials (sessions, machine tokens) whose dead rows can be deleted a batch at a time. */
export interface PurgeableCredentials {
  /**
   * Deletes up to `limit` credentials that expired or were revoked at or before `deadBefore`,
   * each batch its own short transaction, and returns how many went. Never a live credential.
   */
  purgeDead(deadBefore: number, limit: number): Promise<number>;
}

/** How many rows one sweep deleted, per table. */
export interface SweepResult {
  sessions: number;
  tokens: number;
}

/**
 * Deletes sessions and machine tokens that have been dead (expired or revoked) for longer than
 * `graceMs`, so the tables stop growing forever while a recent logout or revocation stays
 * readable by its id. Audit events name credentials by id only, so they outlive the rows.
 *
 * The cutoff is fixed when a sweep starts: rows that die meanwhile wait for the next sweep, so a
 * sweep always ends. Several processes may sweep at once (one PostgreSQL, several servers): each
 * batch is one guarded DELETE that skips rows another sweeper holds, and a row deleted by one is
 * simply not there for the other.
 *
 * @example
 * const sweep = createCredentialSweep({ tables: { sessions, tokens }, clock, graceMs: 86_400_000 });
 * const { sessions: s, tokens: t } = await sweep.sweep();
 */
export function createCredentialSweep(deps: { tables: Record<keyof SweepResult, PurgeableCredentials>; clock: Clock; graceMs: number }) {
  const { tables, clock, graceMs } = deps;
  // A cutoff in the future would take live credentials with the dead.
  if (!(graceMs >= 0)) throw new RangeError(`credential grace must be zero or more milliseconds (got ${graceMs})`);
  return {
    async sweep(batchSize = 500): Promise<SweepResult> {
      const deadBefore = clock.now() - graceMs;
      const deleted: SweepResult = { sessions: 0, tokens: 0 };
      for (const name of ['sessions', 'tokens'] as const) {
        for (;;) {
          const n = await tables[name].purgeDead(deadBefore, batchSize);
          deleted[name] += n;
          // A short batch means nothing is left, or another sweeper holds the rest (it deletes them).
          if (n < batchSize) break;
        }
      }
      return deleted;
    },
  };
}

export type CredentialSweep = ReturnType<typeof createCredentialSweep>;
