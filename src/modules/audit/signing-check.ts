import type { KeyObject } from 'node:crypto';
import type { Kysely } from 'kysely';
import { KeyholdError } from '../../errors/index.ts';
import type { Database } from '../../storage/schema.ts';
import { storedFromRow } from './audit-log.ts';
import { createChainVerifier, type ChainSegment } from './chain.ts';
import { macStart } from './keyed-from.ts';

const PAGE = 2000;
/** Commits remembered at most: past it the oldest are forgotten and read back instead (e.g. while signing keeps failing). */
const MAX_COMMITS = 200_000;


type Link = { seq: number; hash: string };

/**
 * What a checkpoint must know before it signs the head: that the chain it signs holds only the
 * server's own events. From the last signed checkpoint to the head, each event must link to the
 * one before it and carry a correct MAC (or be an action recorded while sealed). Otherwise someone
 * holding the database credentials, not the root key, appended it, and a signature would vouch
 * for it: AUDIT_TAMPERED, nothing signed. (A MAC is on the last event of each commit and vouches for
 * its range: event-mac.ts.)
 *
 * What this process committed by group commit (`owned`) it need not read back: the commit read its
 * head under the write lock and computed every hash, so a run that starts where the proof stands
 * (same seq, same hash) is proved by its last hash alone. Everything else (writes committed in
 * their callers' transactions, other nodes' events, anything forged) is read, seq, action, hashes
 * and content, page by page, each proved against its hash. (Its own commits' rows are not re-read: an
 * owner who rewrites them in place, triggers dropped, is verify's to find, with or without a checkpoint.)
 */
export function createSigningCheck(db: Kysely<Database>) {
  /** Proved through here by this process. */
  let proved: Link | null = null;
  /**
   * This process's group commits not yet proved, in commit (= seq) order. Kept one per commit, not
   * merged: a proof may start at any commit boundary (the last checkpoint, or where the last proof
   * ended while later commits were landing).
   */
  let commits: ChainSegment[] = [];

  const tampered = (problem: string) => new KeyholdError('AUDIT_TAMPERED', `no checkpoint signed: ${problem}`);
  const notMine = (seq: number) => `event ${seq} is not the event this server committed there: events were removed from the end and others appended`;

  /**
   * Reads and proves the events after `from` up to `to` (a commit boundary) as verify does (chain.ts:
   * order, links, content against its hash, commit MACs); returns the last one.
   */
  async function readThrough(key: KeyObject, macsFrom: number, from: Link, to: number, mine: ReadonlyMap<number, string>): Promise<Link> {
    const verifier = createChainVerifier(from, { macs: { key, keyedFrom: macsFrom } });
    // Pages may end inside a commit: only the verdict at `to` (a commit boundary) counts an uncovered event.
    for (let after = from.seq, proving = true; proving && after < to;) {
      const rows = await db.selectFrom('audit_events').selectAll()
        .where('seq', '>', after).where('seq', '<=', to).orderBy('seq').limit(PAGE).execute();
      for (const row of rows) {
        if (!(proving = verifier.push(storedFromRow(row)))) break;
        const committed = mine.get(row.seq);
        if (committed !== undefined && committed !== row.hash) throw tampered(notMine(row.seq));
      }
      if (rows.length === 0) break;
      after = rows[rows.length - 1]!.seq;
    }
    const result = verifier.result();
    if (!result.ok) throw tampered(result.problem);
    return { seq: result.lastSeq, hash: result.lastHash };
  }

  return {
    /** A group commit of this process is durable: `segment` is its own. */
    owned(segment: ChainSegment): void {
      const tail = commits[commits.length - 1];
      if (tail && segment.last <= tail.last) return; // the same commit, reported for another of its batches
      commits.push(segment);
      if (commits.length > MAX_COMMITS) commits = commits.slice(-MAX_COMMITS / 2);
    },

    /**
     * Proves the events after `from` (the last signed checkpoint, or genesis) up to `head`. Throws
     * AUDIT_TAMPERED naming the first event that is not the server's own, or not as this process
     * committed it (`committed`: AuditLog.committedEvents); returns how many events it had to read back.
     */
    async prove(key: KeyObject, from: Link, head: Link, committed: readonly Link[] = []): Promise<{ read: number }> {
      const expected = new Map(committed.map((e) => [e.seq, e.hash]));
      const start = await macStart(db, head.seq);
      if ('problem' in start) throw tampered(start.problem);
      const macsFrom = start.seq;
      let at = proved && proved.seq >= from.seq && proved.seq <= head.seq ? proved : from;
      const mine = commits;
      let i = 0;
      let read = 0;
      while (at.seq < head.seq) {
        while (i < mine.length && mine[i]!.first <= at.seq) i++;
        const next = mine[i];
        if (next && next.first === at.seq + 1 && next.last <= head.seq) {
          // Its own commit: it read this head under the write lock, so the link is all there is to check.
          if (next.prevHash !== at.hash) throw tampered(`event ${at.seq} is not the one this server's commit of ${next.first}..${next.last} followed`);
          // Two commits never share a seq: one this process made that lies inside this commit, or ends where it ends with another hash, was cut off.
          for (const [seq, hash] of expected) if (seq >= next.first && seq <= next.last && (seq < next.last || hash !== next.lastHash)) throw tampered(notMine(seq));
          at = { seq: next.last, hash: next.lastHash };
          i++;
          continue;
        }
        // Not its own (a write's transaction, another node, a forgery): read up to its next commit.
        const to = next && next.last <= head.seq ? next.first - 1 : head.seq;
        const reached = await readThrough(key, macsFrom, at, to, expected);
        if (reached.seq === at.seq) break; // rows missing: the check below names it
        read += reached.seq - at.seq;
        at = reached;
      }
      if (at.seq !== head.seq || at.hash !== head.hash) {
        throw tampered(`the head says event ${head.seq}, but the proved log ends at ${at.seq}${at.seq === head.seq ? ' with another hash' : ''}`);
      }
      proved = at;
      commits = commits.filter((c) => c.last > at.seq);
      return { read };
    },
  };
}
