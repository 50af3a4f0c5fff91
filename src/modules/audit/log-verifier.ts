import type { AuditCheckpointsTable } from '../../storage/schema.ts';
import { createChainVerifier, GENESIS_HASH, type ChainVerifierOptions, type StoredEvent, type VerifyResult } from './chain.ts';
import { checkpointLinks, checkpointPublication, type ChainBreak } from './checkpoint-chain.ts';
import { checkpointFromEvent, checkpointValid } from './checkpoint-format.ts';

/**
 * `unsigned`: events after the last signed checkpoint, which only the chain (no signature) vouches for yet.
 * `checkpoints`: those checked against the events (for a file that starts mid-chain, only those at or
 * after the event before its first line; the ones before are checked for their signature alone).
 */
export type LogVerifyResult = VerifyResult & {
  headSeq: number | null; checkpoints: number; unsigned?: number;
  /** With `openEnd`: the newest signed checkpoint past the last event, whose events are not in this part (not compared). */
  checkpointBeyond?: number;
};

/**
 * What the verifier may not see less of: the highest seq and checkpoint the running server itself
 * appended and signed. Whoever can write the database can cut the tail and the checkpoints that
 * cover it together; the server's memory (and every sink's copy) still knows better.
 */
export interface VerifyFloors {
  headSeq?: number;
  checkpointSeq?: number;
  /** Events the server committed, by seq: the log must hold each there unchanged (a cut tail grown back does not). */
  committed?: ReadonlyArray<{ seq: number; hash: string }>;
}

/**
 * A checkpoint to prove. `publishedBy`: the seq of the `audit.checkpoint` event that publishes it, when
 * the log holds one. `stored`: false when no stored row (or export line) has it, only that event.
 */
export type MergedCheckpoint = AuditCheckpointsTable & { publishedBy?: number; stored?: boolean };

/**
 * The checkpoints to prove: the stored ones and those the log's own `audit.checkpoint` events
 * carry (so deleting checkpoint rows loses nothing while their events remain). The same seq with
 * two different checkpoints is itself proof of tampering, and so is one published by two events.
 */
export function mergeCheckpoints(stored: readonly AuditCheckpointsTable[], events: Iterable<{ seq?: number; action: string; context: Record<string, string> }>, trustedPublicKey: string | null):
  { ok: true; checkpoints: MergedCheckpoint[] } | { ok: false; seq: number; problem: string } {
  const bySeq = new Map<number, MergedCheckpoint>();
  for (const cp of stored) bySeq.set(cp.seq, { ...cp, prev_seq: cp.prev_seq ?? null, stored: true });
  for (const e of events) {
    const cp = checkpointFromEvent(e);
    if (!cp) continue;
    const known = bySeq.get(cp.seq);
    if (!known) {
      bySeq.set(cp.seq, e.seq === undefined ? { ...cp, stored: false } : { ...cp, stored: false, publishedBy: e.seq });
      continue;
    }
    if (known.hash !== cp.hash || known.signature !== cp.signature || known.time !== cp.time || known.prev_seq !== cp.prev_seq) {
      // Name the forgery when the key can tell which of the two it is.
      const forged = trustedPublicKey !== null && (!checkpointValid(known, trustedPublicKey) || !checkpointValid(cp, trustedPublicKey));
      return { ok: false, seq: cp.seq, problem: forged ? `checkpoint at ${cp.seq} is not signed by the trusted audit key` : `the checkpoint at ${cp.seq} differs from the one its audit.checkpoint event published` };
    }
    if (e.seq === undefined || known.publishedBy === e.seq) continue; // a line repeated exactly (a file)
    if (known.publishedBy === undefined) {
      known.publishedBy = e.seq;
      continue;
    }
    // The server publishes each checkpoint once, in the transaction that stores it. Named by the later of the two events.
    const [earlier, later] = [Math.min(known.publishedBy, e.seq), Math.max(known.publishedBy, e.seq)];
    return { ok: false, seq: later, problem: `event ${later} publishes the checkpoint at ${cp.seq} again (event ${earlier} published it): each checkpoint is published once` };
  }
  return { ok: true, checkpoints: [...bySeq.values()].sort((a, b) => a.seq - b.seq) };
}

/**
 * Proves a whole log: every checkpoint signed by the trusted key (when one is given), the checkpoints
 * linked into one chain, the chain event by event, each checkpoint's hash at its seq, that the log
 * reaches the last checkpoint and, when known, the head; then each stored checkpoint against the event
 * that publishes it, and last a fork (checkpoint-chain.ts). The server runs it over its tables (`AuditLog.verify`); `keyhold audit
 * verify --events` runs it over an export, with no server (docs/audit.md, "Offline").
 *
 * `head` is null offline: an export carries no head row, so a cut tail is caught only up to the
 * last signed checkpoint, which is what a signature can vouch for.
 */
export async function verifyLog(input: {
  events: AsyncIterable<StoredEvent> | Iterable<StoredEvent>;
  checkpoints: readonly MergedCheckpoint[];
  head: { seq: number; hash: string } | null;
  trustedPublicKey: string | null;
  floors?: VerifyFloors;
  /**
   * Offline, for a file that starts mid-chain (a rotated sink file): the event just before its first
   * line, taken from that line's `prevHash`. The walk starts there instead of at genesis; a signed
   * checkpoint at that seq must match it, and links to checkpoints before it are not required.
   */
  from?: { seq: number; hash: string };
  /** Offline: a line that repeats an accepted event exactly is skipped (chain.ts). */
  skipExactDuplicates?: boolean;
  /**
   * Offline, for a part of the log (a rotated sink file, `--partial`): it may end before the log
   * does. Checkpoints past its last event cover events it does not hold: they are not compared, and
   * the answer names the newest (`checkpointBeyond`) instead of calling the tail cut.
   */
  openEnd?: boolean;
  /** The server only: prove every event's MAC too (chain.ts). Offline there is no key. */
  macs?: ChainVerifierOptions['macs'];
  /**
   * Where the stored checkpoints come from (checkpoint-chain.ts, `checkpointPublication`): `table`, the
   * server's, where each row commits with its event; `export` (the default), a checkpoints export or none.
   */
  rows?: 'table' | 'export';
}): Promise<LogVerifyResult> {
  const { head, trustedPublicKey, floors = {} } = input;
  const from = input.from ?? { seq: 0, hash: GENESIS_HASH };
  // Checkpoints before the file's range are proved by their signature only: no event here to compare.
  const checkpoints = input.checkpoints.filter((c) => c.seq >= from.seq);
  const meta = { headSeq: head?.seq ?? null, checkpoints: checkpoints.length };
  const bad = (firstBadSeq: number, problem: string, events: number): LogVerifyResult => ({ ok: false, events, firstBadSeq, problem, ...meta });

  if (trustedPublicKey) {
    const forged = input.checkpoints.find((c) => !checkpointValid(c, trustedPublicKey));
    // One only an event carries: that event is the bad one, not the event it claims to sign.
    if (forged?.stored === false && forged.publishedBy !== undefined) return bad(forged.publishedBy, `event ${forged.publishedBy} publishes a checkpoint at ${forged.seq} that is not signed by the trusted audit key`, 0);
    if (forged) return bad(forged.seq, `checkpoint at ${forged.seq} is not signed by the trusted audit key`, 0);
  }
  // Each checkpoint since v2 names the one before it, under its signature: a removal, insertion or reordering breaks a link.
  const links = checkpointLinks(checkpoints, from.seq);
  if (links.broken) return bad(links.broken.seq, links.broken.problem, 0);
  const newest = checkpoints.reduce((max, c) => Math.max(max, c.seq), 0);
  if (floors.checkpointSeq !== undefined && newest < floors.checkpointSeq) {
    return bad(newest + 1, `this server signed a checkpoint at ${floors.checkpointSeq}, but the newest stored is at ${newest}: checkpoints were removed`, 0);
  }
  const expected = new Map(checkpoints.map((c) => [c.seq, c.hash]));
  const committed = new Map((floors.committed ?? []).map((e) => [e.seq, e.hash]));
  const seed = expected.get(from.seq);
  if (from.seq > 0 && seed !== undefined && seed !== from.hash) {
    return bad(from.seq + 1, `event ${from.seq + 1} does not link to the signed checkpoint at ${from.seq}`, 0);
  }
  const verifier = createChainVerifier(from, { skipExactDuplicates: input.skipExactDuplicates ?? false, ...(input.macs ? { macs: input.macs } : {}) });
  for await (const event of input.events) {
    if (!verifier.push(event)) break;
    const cp = expected.get(event.seq);
    if (cp !== undefined && cp !== event.hash) return bad(event.seq, `event ${event.seq} does not match the signed checkpoint at ${event.seq}`, verifier.result().events);
    const mine = committed.get(event.seq);
    if (mine !== undefined && mine !== event.hash) {
      return bad(event.seq, `event ${event.seq} is not the event this server committed there: events were removed from the end and others appended in their place`, verifier.result().events);
    }
  }
  const result = verifier.result();
  if (!result.ok) return { ...result, ...meta };
  const newestOf = (list: AuditCheckpointsTable[]) => list.reduce<AuditCheckpointsTable | null>((last, c) => (last === null || c.seq > last.seq ? c : last), null);
  // Last, once the events prove every checkpoint: rows against their events, then a fork, which the server made itself.
  const bookkeeping = (): ChainBreak | null => checkpointPublication(input.checkpoints, input.rows ?? 'export') ?? links.fork;
  if (input.openEnd) {
    const broken = bookkeeping();
    if (broken) return bad(broken.seq, broken.problem, result.events);
    const within = checkpoints.filter((c) => c.seq <= result.lastSeq);
    const beyond = newestOf(checkpoints.filter((c) => c.seq > result.lastSeq));
    return {
      ...result, ...meta, checkpoints: within.length, unsigned: result.lastSeq - Math.max(newestOf(within)?.seq ?? 0, from.seq),
      ...(beyond ? { checkpointBeyond: beyond.seq } : {}),
    };
  }
  const lastCheckpoint = newestOf(checkpoints);
  if (lastCheckpoint && lastCheckpoint.seq > result.lastSeq) {
    return bad(result.lastSeq + 1, `the log ends at ${result.lastSeq} but a signed checkpoint covers ${lastCheckpoint.seq}: events were removed from the end`, result.events);
  }
  if (head && (result.lastSeq !== head.seq || result.lastHash !== head.hash)) {
    return bad(result.lastSeq + 1, `the log ends at ${result.lastSeq} but its head says ${head.seq}: events were removed from the end`, result.events);
  }
  if (floors.headSeq !== undefined && result.lastSeq < floors.headSeq) {
    return bad(result.lastSeq + 1, `the log ends at ${result.lastSeq} but this server has written up to ${floors.headSeq}: events were removed from the end`, result.events);
  }
  const broken = bookkeeping();
  if (broken) return bad(broken.seq, broken.problem, result.events);
  return { ...result, ...meta, unsigned: result.lastSeq - Math.max(lastCheckpoint?.seq ?? 0, from.seq) };
}

/** A proof's result as `GET /v1/audit/verify` and `keyhold audit verify --events` answer it: every field present, null where it does not apply. */
export interface VerifyAnswer<Head extends number | null = number | null> {
  ok: boolean;
  /** Events checked (up to and including the first bad one). */
  events: number;
  headSeq: Head;
  checkpoints: number;
  lastSeq: number | null;
  firstBadSeq: number | null;
  problem: string | null;
  /** Events after the newest signed checkpoint (null when the proof failed): the chain holds them, no signature yet. */
  unsigned: number | null;
}

export function verifyAnswer<Head extends number | null>(r: VerifyResult & { headSeq: Head; checkpoints: number; unsigned?: number }): VerifyAnswer<Head> {
  const base = { events: r.events, headSeq: r.headSeq, checkpoints: r.checkpoints };
  return r.ok
    ? { ok: true, ...base, lastSeq: r.lastSeq, firstBadSeq: null, problem: null, unsigned: r.unsigned ?? null }
    : { ok: false, ...base, lastSeq: null, firstBadSeq: r.firstBadSeq, problem: r.problem, unsigned: null };
}
