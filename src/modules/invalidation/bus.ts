import { randomUUID } from 'node:crypto';
import type { Notifications } from '../../storage/postgres/notifications.ts';

/**
 * What a node tells the others after a change commits, so they drop what they cached of it at once
 * rather than when the cache entry runs out (SPEC §13). Each names only ids, never a value.
 */
export type Invalidation =
  /** One token was revoked. */
  | { kind: 'token'; id: string }
  /** Every token of an identity was revoked (the identity was disabled). */
  | { kind: 'principal'; id: string }
  /** A tenant's grants, policies, identities or access rules changed (its authorization generation moved). */
  | { kind: 'authz'; tenantId: string }
  /** A tenant's secrets or values changed (its sealed rows, and the values its redactor masks). */
  | { kind: 'values'; tenantId: string }
  /** A tenant's keys changed (KEK rotated or rewrapped, versions destroyed): its unwrapped keys go. */
  | { kind: 'keys'; tenantId: string };

export interface InvalidationHandlers {
  /** Another node's message. */
  onMessage(message: Invalidation): void;
  /** Messages may have been missed (listening started or restarted): drop everything cached. */
  onGap(): void;
}

/**
 * Cache invalidation between nodes. Nothing depends on it for correctness: every cache keeps its
 * own time bound (tokens 5 s, authorization 2 s, sealed rows and redactors 1 s), which is what a node falls back to while a
 * message is lost or the bus is down. A message can only make a node read the database again, so
 * one forged by anyone who may NOTIFY on the database costs reads, never trust.
 */
export interface InvalidationBus {
  /** Tells the other nodes; never throws and never holds the caller up. Call after the change commits. */
  publish(message: Invalidation): void;
  subscribe(handlers: InvalidationHandlers): void;
  /** Starts listening (a no-op without a way to reach other nodes, as on SQLite). */
  start(): void;
}

const ID_KINDS = new Set(['token', 'principal']);
const TENANT_KINDS = new Set(['authz', 'values', 'keys']);
const MAX_ID_LENGTH = 200;

const isId = (v: unknown): v is string => typeof v === 'string' && v.length > 0 && v.length <= MAX_ID_LENGTH;

/** A payload as a message from another node, or null (this node's own, or not one of ours). */
export function parseInvalidation(payload: string, self: string): Invalidation | null {
  let m: unknown;
  try {
    m = JSON.parse(payload);
  } catch {
    return null;
  }
  if (typeof m !== 'object' || m === null) return null;
  const { node, kind, id, tenantId } = m as Record<string, unknown>;
  if (!isId(node) || node === self || typeof kind !== 'string') return null;
  if (TENANT_KINDS.has(kind)) return isId(tenantId) ? { kind: kind as 'authz' | 'values' | 'keys', tenantId } : null;
  if (ID_KINDS.has(kind)) return isId(id) ? { kind: kind as 'token' | 'principal', id } : null;
  return null;
}

/** The bus over the storage's notifications; without them (SQLite, one node) publishing goes nowhere. */
export function createInvalidationBus(deps: { notifications: Notifications | null; onError: (err: unknown) => void }): InvalidationBus {
  const { notifications, onError } = deps;
  const self = randomUUID();
  /** The adapter's error, saying what it means for this node (the original kept as the cause). */
  const report = (what: string) => (err: unknown) =>
    onError(new Error(`${what}: ${err instanceof Error ? err.message : String(err)}`, { cause: err }));
  const publishFailed = report('could not tell the other nodes of a change (they fall back to their caches\' time bounds)');
  const subscribers: InvalidationHandlers[] = [];
  /** Each subscriber on its own: one that throws must not keep the others from dropping their caches. */
  const each = (call: (s: InvalidationHandlers) => void) => {
    for (const s of subscribers) {
      try {
        call(s);
      } catch (err) {
        onError(new Error('a cache could not drop what another node changed', { cause: err }));
      }
    }
  };
  return {
    publish(message) {
      notifications?.publish(JSON.stringify({ node: self, ...message })).catch(publishFailed);
    },
    subscribe(handlers) {
      subscribers.push(handlers);
    },
    start() {
      notifications?.listen({
        onMessage(payload) {
          const message = parseInvalidation(payload, self);
          if (message) each((s) => s.onMessage(message));
        },
        onGap() {
          each((s) => s.onGap());
        },
        onError: report('not listening for the other nodes\' changes, reconnecting (this node\'s caches keep their time bounds meanwhile)'),
      });
    },
  };
}
