import type { KeyObject } from 'node:crypto';
import { sql, type Kysely } from 'kysely';
import { fail } from '../../errors/index.ts';
import type { Clock } from '../../platform/clock.ts';
import type { AuditEventsTable, Database } from '../../storage/schema.ts';
import type { Executor } from '../../storage/database.ts';
import { withoutStatementTimeout } from '../../storage/unbounded-read.ts';
import type { Authorizer } from '../policy/authorizer.ts';
import type { TenantContext } from '../shared/context.ts';
import { auditFrom, fromRow, type AuditLog } from './audit-log.ts';
import { AUDIT_CSV_HEADER, auditCsvRecord } from './csv.ts';
import { timeText, type AuditEvent } from './event.ts';
import type { IdentifierHasher } from './identifiers.ts';
import type { UsageSummary } from './usage-summary.ts';
import { createVerifyGate } from './verify-gate.ts';
import { verifyAnswer, type VerifyAnswer } from './log-verifier.ts';
import { createCollapser, type AuditListItem } from './collapse.ts';

/** Which events a query covers. Every field narrows; none widens beyond the caller's tenant but `allTenants`. */
export interface AuditFilter {
  /** ISO 8601: events at or after this time. */
  from?: string;
  /** ISO 8601: events before this time (exclusive). */
  to?: string;
  /** Actor id, exact. */
  actor?: string;
  /** Exact action, or a prefix when it ends in "." ("secret." matches secret.write, secret.reveal, ...). */
  action?: string;
  /** Secret name (the event's resource name, for secret resources). */
  secret?: string;
  outcome?: AuditEvent['outcome'];
  /** Root only: every tenant, and the system events that belong to none. */
  allTenants?: boolean;
}

export interface ListOptions extends AuditFilter {
  /** The `next` of the previous page: continue past this sequence number in the listing order. */
  after?: number;
  /** Items per page (a collapsed run of denials is one item); 1..1000, default 100. */
  limit?: number;
  /** Newest first (default) or oldest first. */
  order?: 'asc' | 'desc';
}

/** A listed event, identical denials collapsed into it (collapse.ts). */
export type { AuditListItem } from './collapse.ts';

/** Who used or revealed a secret, and when first and last: for dormancy and forensics. */
export interface SecretUsage {
  secret: string;
  actors: Array<{
    actor: AuditEvent['actor'];
    first: string;
    last: string;
    count: number;
    use: UsageSpan | null;
    reveal: UsageSpan | null;
  }>;
}
export interface UsageSpan { first: string; last: string; count: number }

/** What `verify` proves: `ok`, or the first bad event and what is wrong with it. */
export type AuditVerifyResult = VerifyAnswer<number>;

const MAX_PAGE = 1000;
/** Actor ids of Keyhold's own events (the system actor, and the seal manager's). */
const SYSTEM_ACTOR_IDS = new Set(['system', 'keyhold']);
/** The form identifiers.ts gives a sensitive identifier. */
const KEYED_IDENTIFIER = /^hmac-sha256:[0-9a-f]{32}$/;

/** The filters of an export, as event context (strings; absent filters left out). */
function filterContext(f: AuditFilter): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ['from', 'to', 'actor', 'action', 'secret', 'outcome'] as const) if (f[k] !== undefined) out[k] = String(f[k]);
  if (f.allTenants) out.allTenants = 'true';
  return out;
}

function pageSize(limit: number | undefined, fallback: number): number {
  const n = limit ?? fallback;
  if (!Number.isInteger(n) || n < 1 || n > MAX_PAGE) fail('VALIDATION_FAILED', `limit must be a whole number from 1 to ${MAX_PAGE}`);
  return n;
}

function timeOf(text: string, field: string): number {
  const ms = Date.parse(text);
  if (Number.isNaN(ms)) fail('VALIDATION_FAILED', `${field} must be an ISO 8601 date-time`);
  return ms;
}

/**
 * Reading the audit trail (SPEC §7). Every call needs `audit:read` on the tenant and sees only that
 * tenant's events; the root principal may ask for every tenant. Reads page through the database
 * by sequence number, so no call holds more than a page of events at once.
 */
export function createAuditQueryService(deps: {
  db: Kysely<Database>;
  authz: Pick<Authorizer, 'require'>;
  log: Pick<AuditLog, 'verify' | 'fingerprint' | 'record'>;
  /** First and last use, folded from the log (usage-summary.ts). */
  usage: Pick<UsageSummary, 'usage'>;
  clock: Clock;
  /** The checkpoint key to trust (this server's, while unsealed); null verifies the chain without it. */
  trustedPublicKey?: () => string | null;
  /** The highest checkpoint this process signed: verify refuses stored checkpoints that end before it. */
  checkpointFloor?: () => number;
  /** The event MAC key while unsealed: verify then proves every event's MAC too (event-mac.ts). */
  macKey?: () => KeyObject | null;
  /** An export's `secret` or `actor` filter that names no secret or actor is recorded as its keyed HMAC (it may be a pasted value). */
  identifiers: Pick<IdentifierHasher, 'hash'>;
}) {
  const { db, authz, log } = deps;
  // Any tenant's auditor may ask to verify the one global chain: share walks rather than repeat them.
  const verifier = createVerifyGate({ walk: (trustedPublicKey) => log.verify({ trustedPublicKey, checkpointFloor: deps.checkpointFloor?.() ?? 0, macKey: deps.macKey?.() ?? null }), fingerprint: () => log.fingerprint(), clock: deps.clock });

  /**
   * Bulk reads of the trail leave a trace in it (who took a copy, of what), as any other egress
   * does; durable before the first byte, so an export the log cannot record is refused. Pages,
   * tails and verify are not recorded: an auditor polling would drown the log in its own reads.
   */
  async function recordEgress(ctx: TenantContext, action: string, context: Record<string, string>, allTenants: boolean): Promise<void> {
    const base = auditFrom(ctx);
    await deps.log.record([{
      ...base, tenantId: allTenants ? null : ctx.tenantId, action, resource: { type: 'audit', id: null, name: null }, outcome: 'allowed',
      context: { ...base.context, ...context },
    }]);
  }

  /**
   * The filters as the export's event records them. A secret name is kept as it is when a secret of
   * that name exists where the export looks; otherwise only its keyed HMAC, as for every read of a
   * name that does not exist (docs/audit.md): a person may have pasted a value into the filter.
   */
  async function recordedFilters(ctx: TenantContext, f: AuditFilter): Promise<Record<string, string>> {
    const out = filterContext(f);
    if (f.secret !== undefined) {
      let q = db.selectFrom('secrets').select('id').where('name', '=', f.secret);
      if (!f.allTenants) q = q.where('tenant_id', '=', ctx.tenantId);
      if (!(await q.limit(1).executeTakeFirst())) out.secret = deps.identifiers.hash(f.secret);
    }
    if (f.actor !== undefined && !(await isActorId(ctx, f.actor, f.allTenants === true))) out.actor = deps.identifiers.hash(f.actor);
    return out;
  }

  /**
   * Whether an actor filter names an actor events can carry: a user, machine identity or root token
   * (of this tenant unless every tenant is read), Keyhold itself, or an identifier already kept as
   * a keyed HMAC. Anything else is free text that may be a pasted value, recorded only as its HMAC.
   */
  async function isActorId(ctx: TenantContext, id: string, allTenants: boolean): Promise<boolean> {
    if (SYSTEM_ACTOR_IDS.has(id) || KEYED_IDENTIFIER.test(id)) return true;
    let users = db.selectFrom('users').select('id').where('id', '=', id);
    let machines = db.selectFrom('machine_identities').select('id').where('id', '=', id);
    if (!allTenants) {
      users = users.where('tenant_id', '=', ctx.tenantId);
      machines = machines.where('tenant_id', '=', ctx.tenantId);
    }
    const roots = db.selectFrom('tokens').select('id').where('id', '=', id).where('kind', '=', 'root');
    return (await users.executeTakeFirst()) !== undefined || (await machines.executeTakeFirst()) !== undefined
      || (await roots.executeTakeFirst()) !== undefined;
  }

  async function authorize(ctx: TenantContext, allTenants: boolean | undefined): Promise<void> {
    await authz.require(ctx, 'audit:read', { type: 'tenant' });
    if (allTenants && ctx.actor.type !== 'root') await refuseNonRoot(ctx, 'allTenants', 'only the root principal may read every tenant (allTenants)');
  }

  /** A root-only read asked for by anyone else: a denial decided here, not by Cedar, so recorded here (SPEC §7). */
  async function refuseNonRoot(ctx: TenantContext, what: string, message: string): Promise<never> {
    const base = auditFrom(ctx);
    await deps.log.record([{ ...base, action: 'authz.root', resource: { type: 'audit', id: null, name: what }, outcome: 'denied', reason: 'FORBIDDEN' }]);
    return fail('FORBIDDEN', message);
  }

  /** The filtered query, on `db` or the given connection; validates the filter at once, so an export fails before its first byte. */
  function selection(ctx: TenantContext, f: AuditFilter) {
    const from = f.from === undefined ? undefined : timeOf(f.from, 'from');
    const to = f.to === undefined ? undefined : timeOf(f.to, 'to');
    // An empty range is a mistake (dates swapped), not an answer: an empty page or export would read as "nothing happened".
    if (from !== undefined && to !== undefined && to <= from) fail('VALIDATION_FAILED', 'to must be later than from (to is exclusive)');
    return (on: Executor = db) => {
      let q = on.selectFrom('audit_events').selectAll();
      if (!f.allTenants) q = q.where('tenant_id', '=', ctx.tenantId);
      if (from !== undefined) q = q.where('time', '>=', from);
      if (to !== undefined) q = q.where('time', '<', to);
      if (f.actor !== undefined) q = q.where('actor_id', '=', f.actor);
      if (f.action !== undefined && f.action.endsWith('.')) {
        // substr, not LIKE: SQLite's LIKE ignores case and both treat _ and % as wildcards.
        q = q.where(sql<string>`substr(action, 1, ${sql.lit(Array.from(f.action).length)})`, '=', f.action);
      } else if (f.action !== undefined) {
        q = q.where('action', '=', f.action);
      }
      if (f.secret !== undefined) q = q.where('resource_type', '=', 'secret').where('resource_name', '=', f.secret);
      if (f.outcome !== undefined) q = q.where('outcome', '=', f.outcome);
      return q;
    };
  }

  /**
   * Pages of matching rows past `after` in `order`; the first page sized for the caller, later ones
   * full. `unbounded`: each page free of the statement timeout (an export: a narrow filter over a
   * large log may read far to fill one page, and every page must come).
   */
  async function* pages(query: ReturnType<typeof selection>, order: 'asc' | 'desc', after: number | undefined, first: number, unbounded = false): AsyncGenerator<AuditEventsTable[]> {
    let cursor = after;
    let size = first;
    for (;;) {
      const page = (on: Executor) => {
        let q = query(on);
        if (cursor !== undefined) q = q.where('seq', order === 'asc' ? '>' : '<', cursor);
        return q.orderBy('seq', order).limit(size).execute();
      };
      const rows = unbounded ? await withoutStatementTimeout(db, page) : await page(db);
      if (rows.length > 0) yield rows;
      if (rows.length < size) return;
      cursor = rows[rows.length - 1]!.seq;
      size = MAX_PAGE;
    }
  }

  return {
    /**
     * One page of events, identical denials collapsed. `next` is null on the last page, else the
     * `after` of the next one. A run of denials is never split across pages.
     */
    async list(ctx: TenantContext, opts: ListOptions = {}): Promise<{ items: AuditListItem[]; next: number | null }> {
      await authorize(ctx, opts.allTenants);
      const limit = pageSize(opts.limit, 100);
      const order = opts.order ?? 'desc';
      const items: AuditListItem[] = [];
      const collapser = createCollapser();
      let consumed: number | null = null;
      for await (const rows of pages(selection(ctx, opts), order, opts.after, limit + 1)) {
        for (const row of rows) {
          const closed = collapser.push(fromRow(row));
          if (closed) {
            items.push(closed);
            // The row that closed it starts the next page.
            if (items.length === limit) return { items, next: consumed };
          }
          consumed = row.seq;
        }
      }
      const last = collapser.flush();
      if (last) items.push(last);
      return { items, next: null };
    },

    /**
     * Events after `after`, oldest first, uncollapsed: poll with the returned `next` to follow the
     * log. Without `after`, the latest `limit` events.
     */
    async tail(ctx: TenantContext, opts: { after?: number; limit?: number; allTenants?: boolean } = {}): Promise<{ items: AuditEvent[]; next: number }> {
      await authorize(ctx, opts.allTenants);
      const limit = pageSize(opts.limit, 100);
      let q = selection(ctx, { allTenants: opts.allTenants })();
      q = opts.after === undefined ? q.orderBy('seq', 'desc') : q.where('seq', '>', opts.after).orderBy('seq', 'asc');
      const rows = await q.limit(limit).execute();
      if (opts.after === undefined) rows.reverse();
      const items = rows.map(fromRow);
      return { items, next: items.length > 0 ? items[items.length - 1]!.seq : (opts.after ?? 0) };
    },

    /**
     * Every matching event, oldest first and uncollapsed, as JSON lines (each the stored event, so
     * a whole-log export verifies offline) or CSV (a header record, then one record per event; time
     * in ISO 8601, context as JSON, text a spreadsheet would run behind a ': csv.ts). Authorizes and validates before it returns; the stream then
     * reads the database a page at a time as it is consumed.
     */
    async export(ctx: TenantContext, filter: AuditFilter, format: 'json' | 'csv'): Promise<AsyncIterable<string>> {
      await authorize(ctx, filter.allTenants);
      const query = selection(ctx, filter);
      await recordEgress(ctx, 'audit.export', { format, ...(await recordedFilters(ctx, filter)) }, filter.allTenants === true);
      return (async function* () {
        if (format === 'csv') yield AUDIT_CSV_HEADER;
        for await (const rows of pages(query, 'asc', undefined, MAX_PAGE, true)) {
          const events = rows.map(fromRow);
          yield format === 'csv' ? events.map(auditCsvRecord).join('') : events.map((e) => JSON.stringify(e) + '\n').join('');
        }
      })();
    },

    /**
     * Root only: every signed checkpoint, oldest first, one stored row per JSON line, for verifying
     * a whole-log export offline (checkpoints cover the one global chain, not one tenant's part).
     */
    async checkpoints(ctx: TenantContext): Promise<AsyncIterable<string>> {
      await authorize(ctx, false);
      if (ctx.actor.type !== 'root') await refuseNonRoot(ctx, 'checkpoints', 'checkpoints cover every tenant: only the root principal may export them');
      await recordEgress(ctx, 'audit.checkpoints-export', {}, true);
      return (async function* () {
        for (let after = 0; ;) {
          const rows = await db.selectFrom('audit_checkpoints').selectAll().where('seq', '>', after).orderBy('seq').limit(MAX_PAGE).execute();
          if (rows.length > 0) yield rows.map((r) => JSON.stringify(r) + '\n').join('');
          if (rows.length < MAX_PAGE) return;
          after = rows[rows.length - 1]!.seq;
        }
      })();
    },

    /** The key that signs checkpoints (SPKI DER, base64): pin it once, then verify exports offline against it. */
    async publicKey(ctx: TenantContext): Promise<{ publicKey: string }> {
      await authorize(ctx, false);
      const publicKey = deps.trustedPublicKey?.() ?? null;
      if (publicKey === null) fail('SEALED', 'the server is sealed; the audit key exists only while it is unsealed');
      return { publicKey };
    },

    /** Per actor: first and last allowed use and reveal of a secret in this tenant, with counts; most recent first. */
    async usage(ctx: TenantContext, secretName: string): Promise<SecretUsage> {
      await authorize(ctx, false);
      const rows = await deps.usage.usage(ctx.tenantId, secretName);
      const byActor = new Map<string, SecretUsage['actors'][number] & { firstMs: number; lastMs: number }>();
      for (const r of rows) {
        const { first, last, count } = r;
        const key = `${r.actor_type}:${r.actor_id}`;
        let a = byActor.get(key);
        if (!a) {
          a = { actor: { type: r.actor_type as AuditEvent['actor']['type'], id: r.actor_id }, first: '', last: '', count: 0, use: null, reveal: null, firstMs: first, lastMs: last };
          byActor.set(key, a);
        }
        a.firstMs = Math.min(a.firstMs, first);
        a.lastMs = Math.max(a.lastMs, last);
        a.count += count;
        a[r.action === 'secret.use' ? 'use' : 'reveal'] = { first: timeText(first), last: timeText(last), count };
      }
      const actors = [...byActor.values()].sort((x, y) => y.lastMs - x.lastMs)
        .map(({ firstMs, lastMs, ...a }) => ({ ...a, first: timeText(firstMs), last: timeText(lastMs) }));
      return { secret: secretName, actors };
    },

    /**
     * Proves the whole chain and its signed checkpoints; answers with the result only, never events.
     * Walks are shared (verify-gate.ts): the answer comes from a walk that started less than
     * VERIFY_MAX_AGE_MS before this call, or after it.
     */
    async verify(ctx: TenantContext): Promise<AuditVerifyResult> {
      await authorize(ctx, false);
      return verifyAnswer(await verifier.verify(deps.trustedPublicKey?.() ?? null));
    },
  };
}

export type AuditQueryService = ReturnType<typeof createAuditQueryService>;
