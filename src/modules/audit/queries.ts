import type { Kysely } from 'kysely';
import { fail } from '../../errors/index.ts';
import type { AuditEventsTable, Database } from '../../storage/schema.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import type { TenantContext } from '../shared/context.ts';
import { fromRow, type AuditLog } from './audit-log.ts';
import type { AuditEvent } from './event.ts';

export interface AuditFilter {
  from?: string;
  to?: string;
  actor?: string;
  /** Exact action, or a prefix ending in "." (e.g. "secret."). */
  action?: string;
  secret?: string;
  outcome?: 'allowed' | 'denied' | 'failed';
  after?: number;
  limit?: number;
  order?: 'asc' | 'desc';
  /** Root only: every tenant, and system events. */
  allTenants?: boolean;
}

export type ListedEvent = AuditEvent & { repeat?: number; lastSeq?: number; lastTime?: number };

const COLLAPSE_WINDOW_MS = 60_000;
const CSV_COLUMNS = ['seq', 'id', 'time', 'tenantId', 'actorType', 'actorId', 'action', 'resourceType', 'resourceId', 'resourceName', 'environment', 'secretVersion', 'outcome', 'reason', 'context', 'prevHash', 'hash'] as const;

/** RFC 4180: quote when needed, double inner quotes. */
function csvCell(value: unknown): string {
  const text = value === null || value === undefined ? '' : String(value);
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

export function toCsvRow(e: AuditEvent): string {
  return [e.seq, e.id, new Date(e.time).toISOString(), e.tenantId, e.actor.type, e.actor.id, e.action, e.resource.type, e.resource.id,
    e.resource.name, e.environment, e.secretVersion, e.outcome, e.reason, JSON.stringify(e.context), e.prevHash, e.hash].map(csvCell).join(',');
}

export const CSV_HEADER = CSV_COLUMNS.join(',');

/**
 * Collapses runs of identical denials (same actor, action, resource, environment, reason) within
 * a minute of the run's first event into one item with a repeat count. Allowed events never collapse.
 */
export function collapseDenials(events: AuditEvent[]): ListedEvent[] {
  const out: ListedEvent[] = [];
  for (const e of events) {
    const prev = out[out.length - 1];
    const same = prev && e.outcome === 'denied' && prev.outcome === 'denied' && prev.actor.id === e.actor.id && prev.action === e.action
      && prev.resource.id === e.resource.id && prev.resource.name === e.resource.name && prev.environment === e.environment && prev.reason === e.reason
      && Math.abs(e.time - prev.time) <= COLLAPSE_WINDOW_MS;
    if (same) {
      prev.repeat = (prev.repeat ?? 1) + 1;
      prev.lastSeq = e.seq;
      prev.lastTime = e.time;
    } else {
      out.push({ ...e });
    }
  }
  return out;
}

/** Reading the audit trail (SPEC §7): `audit:read`, scoped to the caller's tenant. */
export function createAuditQueries(deps: { db: Kysely<Database>; authz: Authorizer; log: Pick<AuditLog, 'verify'>; trustedPublicKey: () => string | null }) {
  const { db, authz, log } = deps;

  async function query(ctx: TenantContext, f: AuditFilter, limit: number) {
    await authz.require(ctx, 'audit:read', { type: 'tenant' });
    if (f.allTenants && ctx.actor.type !== 'root') fail('FORBIDDEN', 'only the root token reads every tenant');
    let q = db.selectFrom('audit_events').selectAll();
    if (!f.allTenants) q = q.where('tenant_id', '=', ctx.tenantId);
    const time = (s: string, which: string) => {
      const ms = Date.parse(s);
      if (Number.isNaN(ms)) fail('VALIDATION_FAILED', `${which} must be an ISO 8601 time`);
      return ms;
    };
    if (f.from) q = q.where('time', '>=', time(f.from, 'from'));
    if (f.to) q = q.where('time', '<=', time(f.to, 'to'));
    if (f.actor) q = q.where('actor_id', '=', f.actor);
    if (f.action) q = f.action.endsWith('.') ? q.where('action', 'like', `${f.action.replace(/[%_]/g, '')}%`) : q.where('action', '=', f.action);
    if (f.secret) q = q.where('resource_type', '=', 'secret').where('resource_name', '=', f.secret);
    if (f.outcome) q = q.where('outcome', '=', f.outcome);
    const desc = f.order === 'desc';
    if (f.after !== undefined) q = q.where('seq', desc ? '<' : '>', f.after);
    return (await q.orderBy('seq', desc ? 'desc' : 'asc').limit(limit).execute()).map((r: AuditEventsTable) => fromRow(r));
  }

  return {
    async list(ctx: TenantContext, f: AuditFilter = {}) {
      const limit = Math.min(Math.max(f.limit ?? 100, 1), 1000);
      const events = await query(ctx, f, limit);
      return { items: collapseDenials(events), next: events.length === limit ? events[events.length - 1]!.seq : null };
    },

    /** Events after a sequence number, oldest first (for `tail --follow`). */
    tail: (ctx: TenantContext, after: number) => query(ctx, { after, order: 'asc' }, 500),

    /** Every matching event, uncollapsed, page by page. */
    async *export(ctx: TenantContext, f: AuditFilter, format: 'json' | 'csv'): AsyncGenerator<string> {
      if (format === 'csv') yield CSV_HEADER + '\r\n';
      let after = 0;
      for (;;) {
        const page = await query(ctx, { ...f, after, order: 'asc' }, 1000);
        for (const e of page) yield format === 'csv' ? toCsvRow(e) + '\r\n' : JSON.stringify(e) + '\n';
        if (page.length < 1000) return;
        after = page[page.length - 1]!.seq;
      }
    },

    /** First and last use/reveal of a secret per actor: dormancy and forensics. */
    async usage(ctx: TenantContext, secret: string) {
      await authz.require(ctx, 'audit:read', { type: 'tenant' });
      const rows = await db.selectFrom('audit_events')
        .select(['actor_type', 'actor_id', 'action', (eb) => eb.fn.min('time').as('first'), (eb) => eb.fn.max('time').as('last'), (eb) => eb.fn.countAll<number>().as('count')])
        .where('tenant_id', '=', ctx.tenantId).where('resource_type', '=', 'secret').where('resource_name', '=', secret)
        .where('action', 'in', ['secret.use', 'secret.reveal']).where('outcome', '=', 'allowed')
        .groupBy(['actor_type', 'actor_id', 'action']).orderBy('actor_id').execute();
      return {
        secret,
        actors: rows.map((r) => ({
          actorType: r.actor_type, actorId: r.actor_id, action: r.action, count: Number(r.count),
          firstAt: new Date(Number(r.first)).toISOString(), lastAt: new Date(Number(r.last)).toISOString(),
        })),
      };
    },

    /** The chain and its checkpoints, proven; the answer only, never other tenants' events. */
    async verify(ctx: TenantContext) {
      await authz.require(ctx, 'audit:read', { type: 'tenant' });
      const r = await log.verify({ trustedPublicKey: deps.trustedPublicKey() });
      return r.ok
        ? { ok: true, events: r.events, lastSeq: r.lastSeq, checkpoints: r.checkpoints, firstBadSeq: null, problem: null }
        : { ok: false, events: r.events, lastSeq: null, checkpoints: r.checkpoints, firstBadSeq: r.firstBadSeq, problem: r.problem };
    },
  };
}

export type AuditQueries = ReturnType<typeof createAuditQueries>;
