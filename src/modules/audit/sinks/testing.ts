// Shared by the sink and delivery tests: event fixtures and an in-memory audit log. Not used by `src/`.
import type { AuditEventSource } from '../delivery-ports.ts';
import type { AuditEvent } from '../event.ts';

/** A plausible event at `seq`; hashes are placeholders (the sinks do not verify the chain). */
export function auditEvent(seq: number, over: Partial<AuditEvent> = {}): AuditEvent {
  return {
    seq,
    id: `evt_${String(seq).padStart(6, '0')}`,
    time: Date.UTC(2026, 0, 1) + seq * 1000,
    tenantId: 'ten_acme',
    actor: { type: 'user', id: 'usr_alice' },
    action: 'secret.read',
    resource: { type: 'secret', id: `sec_${seq}`, name: 'stripe-key' },
    environment: 'production',
    secretVersion: 3,
    outcome: 'allowed',
    reason: null,
    context: { ip: '127.0.0.1', requestId: `req_${seq}` },
    prevHash: '0'.repeat(64),
    hash: seq.toString(16).padStart(64, '0'),
    ...over,
  };
}

/** The durable log as an array; `append` adds events with the next seqs. */
export function createMemoryAuditLog(): AuditEventSource & { events: AuditEvent[]; append(count: number, over?: Partial<AuditEvent>): AuditEvent[] } {
  const events: AuditEvent[] = [];
  return {
    events,
    append(count, over = {}) {
      const added: AuditEvent[] = [];
      for (let i = 0; i < count; i++) added.push(auditEvent(events.length + 1 + i, over));
      events.push(...added);
      return added;
    },
    async readAfter(afterSeq, limit) {
      return events.filter((e) => e.seq > afterSeq).slice(0, limit);
    },
  };
}

/** Polls `check` until it holds; fails the test with `what` after `timeoutMs`. */
export async function waitFor(what: string, check: () => boolean, timeoutMs = 3000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** The seqs 1..n, for comparing what a sink received. */
export function seqs(n: number, from = 1): number[] {
  return Array.from({ length: n - from + 1 }, (_, i) => from + i);
}
