import { hash } from 'node:crypto';
import type { AuditEvent } from './event.ts';

export const GENESIS_HASH = '0'.repeat(64);

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
  | { ok: true; events: number; lastSeq: number; lastHash: string }
  | { ok: false; events: number; firstBadSeq: number; problem: string };

/**
 * Walks events in stored order and proves each one: its sequence number follows the last, it
 * links to the previous hash, and its own hash matches its content. Names the first bad event.
 */
export function createChainVerifier(start: { seq: number; hash: string } = { seq: 0, hash: GENESIS_HASH }) {
  let lastSeq = start.seq;
  let lastHash = start.hash;
  let events = 0;
  let failure: { firstBadSeq: number; problem: string } | null = null;
  return {
    push(e: AuditEvent): boolean {
      if (failure) return false;
      events++;
      if (e.seq !== lastSeq + 1) {
        failure = { firstBadSeq: e.seq, problem: e.seq <= lastSeq ? `event ${e.seq} is out of order or duplicated (after ${lastSeq})` : `events ${lastSeq + 1}..${e.seq - 1} are missing` };
      } else if (e.prevHash !== lastHash) {
        failure = { firstBadSeq: e.seq, problem: `event ${e.seq} does not link to the event before it` };
      } else if (chainHash(e.prevHash, e) !== e.hash) {
        failure = { firstBadSeq: e.seq, problem: `event ${e.seq} was altered (its hash does not match its content)` };
      }
      if (failure) return false;
      lastSeq = e.seq;
      lastHash = e.hash;
      return true;
    },
    result(): VerifyResult {
      return failure ? { ok: false, events, ...failure } : { ok: true, events, lastSeq, lastHash };
    },
  };
}
