/**
 * One audit event (SPEC §7). Values, tokens, passwords and key material never enter an event;
 * an identifier that could itself be sensitive (a requested name that does not exist) is stored
 * as a keyed HMAC.
 */
export interface AuditEvent {
  /** Position in the log: 1, 2, 3, ... with no gaps. */
  seq: number;
  id: string;
  /** Epoch milliseconds. */
  time: number;
  /** Null for system-wide events (init, seal, unseal). */
  tenantId: string | null;
  actor: { type: 'root' | 'user' | 'machine' | 'system' | 'anonymous'; id: string };
  /** e.g. secret.read, secret.write, auth.login, policy.update, key.rotate, system.unseal. */
  action: string;
  resource: { type: string; id: string | null; name: string | null };
  environment: string | null;
  secretVersion: number | null;
  outcome: 'allowed' | 'denied' | 'failed';
  /** Error code for denied/failed outcomes, null when allowed. */
  reason: string | null;
  /** Source IP, user agent, request id, automation/run/connector id, justification. */
  context: Record<string, string>;
  /** Hash chain: SHA-256 over the previous hash and this event's canonical form (hex). */
  prevHash: string;
  hash: string;
}

/**
 * The event with exactly the fields an export or a sink's file holds, in the order written: the
 * hashed fields and the two hashes, nothing else, so `JSON.stringify` of it is the line. Events read
 * from the log are built through it (`fromRow`); offline verify holds each line to it.
 */
export function asWritten(e: AuditEvent): AuditEvent {
  return {
    seq: e.seq, id: e.id, time: e.time, tenantId: e.tenantId, actor: { type: e.actor.type, id: e.actor.id },
    action: e.action, resource: { type: e.resource.type, id: e.resource.id, name: e.resource.name }, environment: e.environment,
    secretVersion: e.secretVersion, outcome: e.outcome, reason: e.reason, context: e.context, prevHash: e.prevHash, hash: e.hash,
  };
}

/** A destination events are streamed to from the durable log (file, syslog, webhook). */
export interface AuditSink {
  /** Shown in status and logs; also the cursor key when `cursorKey` is absent. */
  readonly name: string;
  /**
   * Keys the sink's delivery cursor (default: `name`). A network sink (syslog, webhook) is one
   * destination for every node, so its cursor is shared; a node-local sink (the JSON lines file)
   * names its node and path here, so nodes sharing a database never resume from each other's cursor.
   */
  readonly cursorKey?: string;
  /**
   * The last event the sink's own storage already holds (its seq and hash), read from that storage;
   * null when it holds nothing or cannot tell (a network sink). Delivery resumes after it instead of
   * the stored cursor, once the log's event at that seq proves to be the same one (delivery.ts).
   */
  resumePoint?(): Promise<{ seq: number; hash: string } | null>;
  /**
   * Delivers a batch in order. Resolves once the sink has accepted every event; rejects (or times
   * out) otherwise, and the same batch is offered again later: delivery is at least once.
   */
  deliver(events: readonly AuditEvent[], signal: AbortSignal): Promise<void>;
  close?(): Promise<void>;
}

/**
 * An event's time as ISO 8601 UTC, or null when no date can hold it: only a row written by hand can
 * carry such a time (the column is a bigint, a date ends at ±8.64e15 ms). Sinks and exports show
 * that row rather than fail on it, as they show an unreadable context: one forged row must not stop
 * a sink or an export for good (verify names it).
 */
export function isoTime(time: number): string | null {
  const date = new Date(time);
  return Number.isNaN(date.getTime()) ? null : date.toISOString();
}

/** An event's time as ISO 8601 UTC, or the stored number as text when no date can hold it (see isoTime). */
export function timeText(time: number): string {
  return isoTime(time) ?? String(time);
}
