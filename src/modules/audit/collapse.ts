import type { AuditEvent } from './event.ts';

/**
 * A listed event; `repeat` > 1 when identical denials were collapsed into it (it is then the earliest
 * of them, and `lastSeq`/`lastTime` are the latest). Events keep their stored form (time in epoch
 * milliseconds), so what the API returns can be fed to the chain verifier as it is.
 */
export type AuditListItem = AuditEvent & { repeat: number; lastSeq: number; lastTime: number };

/** Identical denials at most this far from the first of their run are listed as one item. */
export const COLLAPSE_WINDOW_MS = 60_000;

/**
 * Denials that differ only where every request differs (seq, id, time, chain hashes, request id).
 * Anything else is a different story and must stay visible in a list: another address (failed logins
 * from many places), another revoked or expired credential tried from the same one (a second leaked
 * token), another user agent, another deciding policy.
 */
function sameDenial(a: AuditEvent, b: AuditEvent): boolean {
  return a.outcome === 'denied' && b.outcome === 'denied' && a.tenantId === b.tenantId
    && a.actor.type === b.actor.type && a.actor.id === b.actor.id && a.action === b.action
    && a.resource.type === b.resource.type && a.resource.id === b.resource.id && a.resource.name === b.resource.name
    && a.environment === b.environment && a.secretVersion === b.secretVersion && a.reason === b.reason
    && sameContext(a.context, b.context);
}

function sameContext(a: Record<string, string>, b: Record<string, string>): boolean {
  const keys = Object.keys(a).filter((k) => k !== 'requestId');
  if (keys.length !== Object.keys(b).filter((k) => k !== 'requestId').length) return false;
  return keys.every((k) => Object.hasOwn(b, k) && a[k] === b[k]);
}

/**
 * Folds events, in listing order, into list items: consecutive identical denials (the same but for
 * their request id, see sameDenial) within a minute of the first of them seen become one item with
 * `repeat: N`. Allowed and failed events are never collapsed.
 * @example
 * const c = createCollapser();
 * for (const e of events) { const done = c.push(e); if (done) items.push(done); }
 * const last = c.flush(); if (last) items.push(last);
 */
export function createCollapser() {
  let run: { anchor: AuditEvent; earliest: AuditEvent; latest: AuditEvent; count: number } | null = null;
  const close = (): AuditListItem | null => {
    if (!run) return null;
    const item = { ...run.earliest, repeat: run.count, lastSeq: run.latest.seq, lastTime: run.latest.time };
    run = null;
    return item;
  };
  return {
    /** Takes the next event; returns the item this event closed, if it closed one. */
    push(e: AuditEvent): AuditListItem | null {
      if (run && sameDenial(run.anchor, e) && Math.abs(e.time - run.anchor.time) <= COLLAPSE_WINDOW_MS) {
        run.count++;
        if (e.seq < run.earliest.seq) run.earliest = e;
        if (e.seq > run.latest.seq) run.latest = e;
        return null;
      }
      const closed = close();
      run = { anchor: e, earliest: e, latest: e, count: 1 };
      return closed;
    },
    /** Closes the open item, if any. */
    flush: close,
  };
}
