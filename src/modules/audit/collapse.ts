import type { AuditEvent } from './event.ts';

/**
 * A listed event; `repeat` > 1 when identical denials were collapsed into it (it is then the earliest
 * of them, and `lastSeq`/`lastTime` are the latest). Events keep their stored form (time in epoch
 * milliseconds), so what the API returns can be fed to the chain verifier as it is.
 */
export type AuditListItem = AuditEvent & { repeat: number; lastSeq: number; lastTime: number };

/** Identical denials at most this far from the first of their run are listed as one item. */
export const COLLAPSE_WINDOW_MS = 60_000;
function sameDenial(a: AuditEvent, b: AuditEvent): boolean {
  return a.outcome === 'denied' && b.outcome === 'denied' && a.tenantId === b.tenantId
    && a.actor.type === b.actor.type && a.actor.id === b.actor.id && a.action === b.action
    && a.resource.type === b.resource.type && a.resource.id === b.resource.id && a.resource.name === b.resource.name
    && a.environment === b.environment && a.reason === b.reason
    // Failed logins from many addresses are the story, not noise: never fold them into the first one's address.
    && a.context.sourceIp === b.context.sourceIp;
}

/**
 * Folds events, in listing order, into list items: consecutive identical denials (same actor,
 * action, resource, environment, reason, source address) within a minute of the first of them seen become one item
 * with `repeat: N`. Allowed and failed events are never collapsed.
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
