import type { AuditCheckpointsTable } from '../../storage/schema.ts';
import { createChainVerifier, type VerifyResult } from './chain.ts';
import { checkpointValid } from './checkpoints.ts';
import type { AuditEvent } from './event.ts';

export type LogVerifyResult = VerifyResult & { headSeq: number | null; checkpoints: number };

/**
 * Proves a whole log: every checkpoint signed by the trusted key (when one is given), the chain
 * event by event, each checkpoint's hash at its seq, and that the log reaches the last checkpoint
 * and, when known, the head. The server runs it over its tables (`AuditLog.verify`); `keyhold audit
 * verify --events` runs it over an export, with no server (docs/audit.md, "Offline").
 *
 * `head` is null offline: an export carries no head row, so a cut tail is caught only up to the
 * last signed checkpoint, which is what a signature can vouch for.
 */
export async function verifyLog(input: {
  events: AsyncIterable<AuditEvent> | Iterable<AuditEvent>;
  checkpoints: readonly AuditCheckpointsTable[];
  head: { seq: number; hash: string } | null;
  trustedPublicKey: string | null;
}): Promise<LogVerifyResult> {
  const { checkpoints, head, trustedPublicKey } = input;
  const meta = { headSeq: head?.seq ?? null, checkpoints: checkpoints.length };
  const bad = (firstBadSeq: number, problem: string, events: number): LogVerifyResult => ({ ok: false, events, firstBadSeq, problem, ...meta });

  if (trustedPublicKey) {
    const forged = checkpoints.find((c) => !checkpointValid(c, trustedPublicKey));
    if (forged) return bad(forged.seq, `checkpoint at ${forged.seq} is not signed by the trusted audit key`, 0);
  }
  const expected = new Map(checkpoints.map((c) => [c.seq, c.hash]));
  const verifier = createChainVerifier();
  for await (const event of input.events) {
    if (!verifier.push(event)) break;
    const cp = expected.get(event.seq);
    if (cp !== undefined && cp !== event.hash) return bad(event.seq, `event ${event.seq} does not match the signed checkpoint at ${event.seq}`, verifier.result().events);
  }
  const result = verifier.result();
  if (!result.ok) return { ...result, ...meta };
  const lastCheckpoint = checkpoints.reduce<AuditCheckpointsTable | null>((last, c) => (last === null || c.seq > last.seq ? c : last), null);
  if (lastCheckpoint && lastCheckpoint.seq > result.lastSeq) {
    return bad(result.lastSeq + 1, `the log ends at ${result.lastSeq} but a signed checkpoint covers ${lastCheckpoint.seq}: events were removed from the end`, result.events);
  }
  if (head && (result.lastSeq !== head.seq || result.lastHash !== head.hash)) {
    return bad(result.lastSeq + 1, `the log ends at ${result.lastSeq} but its head says ${head.seq}: events were removed from the end`, result.events);
  }
  return { ...result, ...meta };
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
}

export function verifyAnswer<Head extends number | null>(r: VerifyResult & { headSeq: Head; checkpoints: number }): VerifyAnswer<Head> {
  const base = { events: r.events, headSeq: r.headSeq, checkpoints: r.checkpoints };
  return r.ok
    ? { ok: true, ...base, lastSeq: r.lastSeq, firstBadSeq: null, problem: null }
    : { ok: false, ...base, lastSeq: null, firstBadSeq: r.firstBadSeq, problem: r.problem };
}
