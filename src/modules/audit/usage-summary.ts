import { sql, type Kysely } from 'kysely';
import type { DialectName } from '../../storage/database.ts';
import type { Database } from '../../storage/schema.ts';

/** The events usage counts: allowed uses and reveals of a secret. */
const COUNTED = sql`resource_type = 'secret' and action in ('secret.use', 'secret.reveal') and outcome = 'allowed'`;

/** One actor's allowed uses (or reveals) of one secret. */
export interface UsageRow {
  actor_type: string;
  actor_id: string;
  action: string;
  first: number;
  last: number;
  count: number;
}

/**
 * First and last use per secret and actor (SPEC §7, for dormancy and forensics) without scanning
 * the tenant's whole history on every question. `fold` adds events to a summary table
 * (audit_usage) in seq order, a chunk per transaction, and moves a watermark in the same
 * transaction; `usage` answers from the summary plus the events past the watermark, read in one
 * snapshot, so a fold committing meanwhile is seen wholly or not at all and nothing is counted
 * twice or missed. Seq ranges up to the head are safe to fold: appenders take seq numbers under the
 * chain head's lock and commit in that order, so once seq n is visible every seq below it is too.
 *
 * @example
 * const summary = createUsageSummary({ db, dialect: 'sqlite' });
 * await summary.foldAll();                                 // a timer does this in the server
 * const rows = await summary.usage(tenantId, 'STRIPE_KEY'); // per actor and action
 */
export function createUsageSummary(deps: { db: Kysely<Database>; dialect: DialectName }) {
  const { db } = deps;
  const [least, greatest] = deps.dialect === 'postgres' ? [sql.raw('least'), sql.raw('greatest')] : [sql.raw('min'), sql.raw('max')];

  /** Folds up to `limit` events past the watermark; returns how many seq numbers it moved over (0: caught up). */
  async function fold(limit = 5_000): Promise<number> {
    return db.transaction().execute(async (trx) => {
      // Writing the row first takes its lock (PostgreSQL) or the write lock (SQLite): folders queue here.
      const head = await trx.updateTable('audit_usage_head').set((eb) => ({ seq: eb.ref('seq') })).where('id', '=', 1)
        .returning('seq').executeTakeFirstOrThrow();
      const from = Number(head.seq);
      // Never past the chain's head: a row inserted by hand beyond it would move the watermark over the
      // events the server writes up to it, which would then be counted nowhere.
      const top = await trx.selectFrom('audit_events').select((eb) => eb.fn.max('seq').as('seq'))
        .where('seq', '>', from).where('seq', '<=', from + limit)
        .where('seq', '<=', (eb) => eb.selectFrom('audit_head').select('seq').where('id', '=', 1)).executeTakeFirst();
      const to = top?.seq === null || top?.seq === undefined ? from : Number(top.seq);
      if (to === from) return 0;
      // "where true" is not needed: the SELECT has a WHERE, which keeps SQLite from reading ON CONFLICT as a join.
      await sql`insert into audit_usage (tenant_id, resource_name, actor_type, actor_id, action, first_time, last_time, count)
        select tenant_id, resource_name, actor_type, actor_id, action, min(time), max(time), count(*)
        from audit_events
        where seq > ${from} and seq <= ${to} and tenant_id is not null and resource_name is not null and ${COUNTED}
        group by tenant_id, resource_name, actor_type, actor_id, action
        on conflict (tenant_id, resource_name, actor_type, actor_id, action) do update set
          first_time = ${least}(audit_usage.first_time, excluded.first_time),
          last_time = ${greatest}(audit_usage.last_time, excluded.last_time),
          count = audit_usage.count + excluded.count`.execute(trx);
      await trx.updateTable('audit_usage_head').set({ seq: to }).where('id', '=', 1).execute();
      return to - from;
    });
  }

  return {
    fold,

    /** Folds until caught up with what was committed when it started; returns the events moved over. */
    async foldAll(chunk = 5_000): Promise<number> {
      let total = 0;
      for (let n = await fold(chunk); n > 0; n = await fold(chunk)) {
        total += n;
        // A chunk is one short transaction; let requests in between (node:sqlite runs on the event loop).
        await new Promise((resolve) => setImmediate(resolve));
      }
      return total;
    },

    /** Per actor and action: first and last time and count, from the summary and the unfolded tail. */
    async usage(tenantId: string, secretName: string): Promise<UsageRow[]> {
      // The watermark and both reads see one snapshot, so a fold committing meanwhile cannot count twice.
      const tx = deps.dialect === 'postgres' ? db.transaction().setIsolationLevel('repeatable read') : db.transaction();
      const rows = await tx.execute(async (trx) => {
        const head = await trx.selectFrom('audit_usage_head').select('seq').where('id', '=', 1).executeTakeFirstOrThrow();
        // The tail is found by seq, the primary key; "+" keeps SQLite from walking the tenant's whole
        // history through the (tenant_id, time) index instead. PostgreSQL plans with the watermark's value.
        const tenant = deps.dialect === 'sqlite' ? sql`+tenant_id` : sql`tenant_id`;
        return (await sql<UsageRow>`
          select actor_type, actor_id, action, min(first) as first, max(last) as last, sum(n) as count from (
            select actor_type, actor_id, action, first_time as first, last_time as last, count as n
              from audit_usage where tenant_id = ${tenantId} and resource_name = ${secretName}
            union all
            select actor_type, actor_id, action, time, time, 1
              from audit_events
              where seq > ${Number(head.seq)} and ${tenant} = ${tenantId} and resource_name = ${secretName} and ${COUNTED}
          ) u
          group by actor_type, actor_id, action`.execute(trx)).rows;
      });
      return rows.map((r) => ({ ...r, first: Number(r.first), last: Number(r.last), count: Number(r.count) }));
    },
  };
}

export type UsageSummary = ReturnType<typeof createUsageSummary>;
