import { hash, type KeyObject } from 'node:crypto';
import type { AuditEvent } from './event.ts';
import { createMacWalk } from './event-mac.ts';

export const GENESIS_HASH = '0'.repeat(64);

/**
 * A run of events one commit appended: `first`..`last`, linked to `prevHash` (the head it read under
 * the write lock) and ending in `lastHash`.
 */
export interface ChainSegment {
  first: number;
  prevHash: string;
  last: number;
  lastHash: string;
}

/** The exact bytes an event's hash covers: every field but the hashes, in a fixed order. */
export function canonical(e: Omit<AuditEvent, 'hash' | 'prevHash'>): string {
  const context = Object.keys(e.context).sort().map((k) => [k, e.context[k]]);
  return JSON.stringify([
    e.seq, e.id, e.time, e.tenantId, e.actor.type, e.actor.id, e.action, e.resource.type, e.resource.id, e.resource.name,
    e.environment, e.secretVersion, e.outcome, e.reason, context,
  ]);
}

/** hash(n) = SHA-256(hash(n-1) || "\n" || canonical(n)), hex. */
export function chainHash(prevHash: string, e: Omit<AuditEvent, 'hash' | 'prevHash'>): string {
  // One-shot hash over the same bytes: no Hash object per event.
  return hash('sha256', `${prevHash}\n${canonical(e)}`, 'hex');
}

export type VerifyResult =
  | { ok: true; events: number; lastSeq: number; lastHash: string; duplicates?: number }
  | { ok: false; events: number; firstBadSeq: number; problem: string };

/** How far back an exact repeat is still recognised: a redelivered batch is at most a few hundred events behind. */
export const DUPLICATE_WINDOW = 65_536;

export interface ChainVerifierOptions {
  /**
   * Skip a line that repeats an event already accepted exactly (same seq, same hash, and content that
   * hashes to it), as an at-least-once sink may have written it; a repeat that differs is still
   * refused. For files only: a database cannot hold two rows with one seq.
   */
  skipExactDuplicates?: boolean;
  /**
   * Also prove the commit MACs (event-mac.ts) with the server's key: every event after `keyedFrom`
   * must be covered by a correct one, or be of an action recorded while sealed. Only the server has the key.
   */
  macs?: { key: KeyObject; keyedFrom: number };
}

/**
 * An event as the database holds it: with its MAC (null when recorded while sealed), and
 * `unreadable` saying why a stored row could not be read as an event (it was altered).
 */
export type StoredEvent = AuditEvent & { mac?: string | null; unreadable?: string };

/**
 * Walks events in stored order and proves each one: its sequence number follows the last, it
 * links to the previous hash, and its own hash matches its content. Names the first bad event.
 * `start` seeds the walk: genesis by default, or the event before a file that starts mid-chain.
 */
export function createChainVerifier(start: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH }, opts: ChainVerifierOptions = {}) {
  let lastSeq = start.seq;
  let lastHash = start.hash;
  let events = 0;
  let duplicates = 0;
  let failure: { firstBadSeq: number; problem: string } | null = null;
  const macs = opts.macs ? createMacWalk(opts.macs.key, opts.macs.keyedFrom) : null;
  // The hashes of the last DUPLICATE_WINDOW accepted events, oldest first, to recognise an exact repeat.
  const recent = opts.skipExactDuplicates ? new Map<number, string>() : null;

  function repeat(e: AuditEvent): boolean {
    const accepted = recent?.get(e.seq);
    if (accepted === undefined) return false;
    if (accepted === e.hash && chainHash(e.prevHash, e) === e.hash) return true;
    failure = { firstBadSeq: e.seq, problem: `event ${e.seq} appears twice with different content` };
    return false;
  }

  return {
    push(e: StoredEvent): boolean {
      if (failure) return false;
      if (e.seq <= lastSeq && repeat(e)) {
        duplicates++;
        return true;
      }
      events++;
      if (failure) return false;
      if (e.seq !== lastSeq + 1) {
        failure = { firstBadSeq: e.seq, problem: e.seq <= lastSeq ? `event ${e.seq} is out of order or duplicated (after ${lastSeq})` : `events ${lastSeq + 1}..${e.seq - 1} are missing` };
      } else if (e.unreadable !== undefined) {
        failure = { firstBadSeq: e.seq, problem: `event ${e.seq} was altered (${e.unreadable})` };
      } else if (e.prevHash !== lastHash) {
        failure = { firstBadSeq: e.seq, problem: `event ${e.seq} does not link to the event before it` };
      } else if (chainHash(e.prevHash, e) !== e.hash) {
        failure = { firstBadSeq: e.seq, problem: `event ${e.seq} was altered (its hash does not match its content)` };
      } else if (macs) {
        const finding = macs.push(e);
        if (finding) failure = { firstBadSeq: finding.seq, problem: finding.problem };
      }
      if (failure) return false;
      lastSeq = e.seq;
      lastHash = e.hash;
      if (recent) {
        recent.set(e.seq, e.hash);
        if (recent.size > DUPLICATE_WINDOW) recent.delete(recent.keys().next().value!);
      }
      return true;
    },
    /** The verdict so far; at the end of the log, an event no commit MAC covered fails it. */
    result(): VerifyResult {
      if (failure) return { ok: false, events, ...failure };
      const uncovered = macs?.end();
      if (uncovered) return { ok: false, events, firstBadSeq: uncovered.seq, problem: uncovered.problem };
      return recent ? { ok: true, events, lastSeq, lastHash, duplicates } : { ok: true, events, lastSeq, lastHash };
    },
  };
}
