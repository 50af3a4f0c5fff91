import { createHmac, createSecretKey, timingSafeEqual, type KeyObject } from 'node:crypto';
import { deriveFromRoot } from '../../crypto/root/root-key.ts';

/**
 * Commit MACs: what makes appended events provably the server's own. The chain hash is unkeyed, so
 * anyone with the server's database credentials could append events with correct hashes; a MAC
 * needs a key derived from the root key, which never leaves the unsealed server's memory.
 *
 * One MAC per commit, on its last event: `<first seq>:<hex>`, the HMAC of the commit's range and
 * its last hash. The hash commits to every event of the range (and the chain before it), and the
 * range says which events this commit vouches for, so an event appended by anyone else before it
 * is not covered. One HMAC per commit rather than per event: the audit appender's round time is
 * what every read waits on.
 */

/** What the rule below looks at in an event. */
export interface MacSubject {
  seq: number;
  action: string;
  hash: string;
  mac?: string | null;
  tenantId: string | null;
  actor: { type: string; id: string };
  resource: { type: string };
}

/**
 * The only event written with no key: an unseal attempt (a share given to the unauthenticated
 * unseal endpoint, or the dev key at start-up), recorded by the server itself while sealed, in
 * exactly this shape. It proves nothing about who wrote it, and anyone can cause one anyway. Any
 * other event the server writes carries a MAC; with no key it is refused (SEALED) rather than
 * written (audit-log.ts), and the seal event is recorded with the key taken before it was dropped.
 */
export function writtenWhileSealed(e: Omit<MacSubject, 'seq' | 'hash' | 'mac'>): boolean {
  return e.action === 'system.unseal' && e.tenantId === null && e.actor.type === 'system' && e.actor.id === 'keyhold' && e.resource.type === 'system';
}

/** The event MAC key while unsealed; `generation` changes whenever the key does (unseal after seal). */
export interface EventMacKey {
  readonly key: KeyObject;
  readonly generation: number;
}

export function deriveEventMacKey(root: KeyObject): KeyObject {
  const raw = deriveFromRoot(root, 'audit-event-mac');
  try {
    return createSecretKey(raw);
  } finally {
    raw.fill(0);
  }
}

function commitDigest(key: KeyObject, first: number, last: number, lastHash: string): Buffer {
  return createHmac('sha256', key).update(`keyhold-audit-commit-v1\n${first}\n${last}\n${lastHash}`).digest();
}

/** The MAC the last event (`last`, hash `lastHash`) of a commit of events `first`..`last` carries. */
export function commitMac(key: KeyObject, first: number, last: number, lastHash: string): string {
  return `${first}:${commitDigest(key, first, last, lastHash).toString('hex')}`;
}

export interface MacFinding {
  seq: number;
  problem: string;
}

const uncoveredAt = (seq: number): MacFinding => ({ seq, problem: `event ${seq} carries no MAC: a server holding the root key did not write it` });

/**
 * Proves, event by event in seq order, that every event after `keyedFrom` is covered by a correct
 * commit MAC or is an unseal attempt written while sealed. `push` returns the first problem it can
 * already name; `end` (the walk reached a commit boundary: the head, or where another proof takes
 * over) names an event left uncovered. The events must be proved against their hashes too (the
 * chain): the rule reads their content.
 */
export function createMacWalk(key: KeyObject, keyedFrom: number) {
  /** The first event since the last MAC that needs one. */
  let uncovered: number | null = null;
  return {
    push(e: MacSubject): MacFinding | null {
      if (e.seq <= keyedFrom) return null;
      if (e.mac === null || e.mac === undefined) {
        if (uncovered === null && !writtenWhileSealed(e)) uncovered = e.seq;
        return null;
      }
      const colon = e.mac.indexOf(':');
      const first = Number(e.mac.slice(0, colon));
      const stored = Buffer.from(e.mac.slice(colon + 1), 'hex');
      const expected = colon > 0 && Number.isSafeInteger(first) && first <= e.seq ? commitDigest(key, first, e.seq, e.hash) : null;
      if (!expected || stored.length !== expected.length || !timingSafeEqual(stored, expected)) {
        return { seq: e.seq, problem: `event ${e.seq} carries a wrong MAC: a server holding the root key did not write it` };
      }
      if (uncovered !== null && uncovered < first) return uncoveredAt(uncovered);
      uncovered = null;
      return null;
    },
    end(): MacFinding | null {
      return uncovered === null ? null : uncoveredAt(uncovered);
    },
  };
}

/** The root of trust, as the MAC key needs it. */
export interface MacRoot {
  rootKey(): KeyObject;
  isSealed(): boolean;
  onSeal(listener: () => void): void;
}

/** Derives the key once per unseal and forgets it on seal. */
export function createEventMacKeys(root: MacRoot) {
  let current: EventMacKey | null = null;
  let generation = 0;
  root.onSeal(() => {
    current = null;
  });
  return {
    /** The key, or null while sealed (then only `writtenWhileSealed` events may be written). */
    current(): EventMacKey | null {
      if (root.isSealed()) return null;
      current ??= { key: deriveEventMacKey(root.rootKey()), generation: ++generation };
      return current;
    },
  };
}

export type EventMacKeys = ReturnType<typeof createEventMacKeys>;
